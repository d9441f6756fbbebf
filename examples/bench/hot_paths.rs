//! Microbenchmarks of Satchel's hot paths, without the network:
//!
//! * a slot request, from the IQ's XML to the serialized answer (parse,
//!   policy and quota checks, sealing the slot into its PUT URL), and the
//!   same without the XML text (the handler between stream reader and writer);
//! * a slot request over the component link: a stand-in XMPP server on
//!   loopback writes the IQ and reads the answer (what Satchel adds to a
//!   client's wait: the link's reading, routing and writing as well);
//! * sealing and opening one 64 KiB chunk (ChaCha20-Poly1305, STREAM);
//! * writing a 64 MiB file into the store (sealing, both hashes, the blob
//!   written and synced, the record committed);
//! * reading a 16 MiB file back (positioned reads, parallel chunk opening);
//! * parsing `Range` headers;
//! * a thumbnail of a 12-megapixel camera-like JPEG, and of a PNG.
//!
//! `cargo bench --bench hot_paths` (criterion; `-- <filter>` for one). The
//! figures the issue tracker asks about are throughput (MiB/s) for the
//! crypto and the read, and time per call for the rest.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use minidom::Element;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use satchel::config::Config;
use satchel::http::range::parse_range;
use satchel::relay::thumbnail::{make_thumbnail, ThumbnailLimits};
use satchel::slots::SlotService;
use satchel::storage::cipher::Cipher;
use satchel::storage::crypto::{open_chunk, seal_chunk};
use satchel::storage::master_key::MasterKey;
use satchel::storage::{FileId, NewUpload, Purpose, Store, StoreOptions};
use satchel::xmpp::connection;
use satchel::xmpp::delegate::Delegate;
use satchel::xmpp::http_upload::{parse_request, slot_result};
use satchel::xmpp::router::Router;

const CHUNK: usize = 64 * 1024;
const MIB: usize = 1 << 20;

fn slot_requests(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = generous_config(dir.path());
    let store = open_store(dir.path());
    let slots = SlotService::new(&config, store);
    let requester: jid::BareJid = "juliet@example.org".parse().expect("JID");
    let iq = "<iq xmlns='jabber:component:accept' from='juliet@example.org/balcony' \
              to='upload.example.org' id='step_03' type='get'>\
              <request xmlns='urn:xmpp:http:upload:0' filename='très cool.jpg' \
              size='23456' content-type='image/jpeg'/></iq>";

    c.bench_function("slot request: XML in, slot sealed, XML out", |b| {
        b.iter(|| {
            let stanza: Element = iq.parse().expect("IQ parses");
            let payload = stanza.children().next().expect("one child");
            let request = parse_request(payload).expect("valid request");
            let slot = slots
                .grant(&requester, request, satchel::clock::unix_now())
                .expect("slot granted");
            String::from(&Element::from(slot_result(&slot)))
        })
    });
    // What the component does per request once its stream reader has parsed
    // the stanza, and before its writer serializes the answer.
    let stanza: Element = iq.parse().expect("IQ parses");
    let payload = stanza.children().next().expect("one child");
    c.bench_function(
        "slot handler: request element in, answer element out",
        |b| {
            b.iter(|| {
                let request = parse_request(payload).expect("valid request");
                let slot = slots
                    .grant(&requester, request, satchel::clock::unix_now())
                    .expect("slot granted");
                Element::from(slot_result(&slot))
            })
        },
    );
}

/// A delegate with nothing to do: the link benchmark sends IQ requests only.
struct NoDelegate;

impl Delegate for NoDelegate {
    async fn handle_message(&self, _: Element) -> Option<Element> {
        None
    }
    async fn handle_presence(&self, _: &Element) {}
    async fn handle_iq_response(&self, _: &Element) -> bool {
        false
    }
    fn link_up(&self) -> Vec<Element> {
        Vec::new()
    }
    fn link_down(&self) {}
}

fn slot_requests_over_the_link(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = generous_config(dir.path());
    let slots = SlotService::new(&config, open_store(dir.path()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (mut to_satchel, mut from_satchel) = runtime.block_on(async {
        let server = TcpListener::bind("127.0.0.1:0").await.expect("listener");
        let mut component = config.component.clone();
        component.server = server.local_addr().expect("address").to_string();
        let router = Router::new(component.jid.clone(), slots, Arc::new(NoDelegate));
        let (outgoing, outgoing_rx) = mpsc::channel(connection::OUTGOING_QUEUE);
        // A single instance: always allowed to hold the link.
        let (_, may_link) = tokio::sync::watch::channel(true);
        tokio::spawn(connection::run(
            component,
            Arc::new(router),
            outgoing,
            outgoing_rx,
            may_link,
        ));
        let (mut link, _) = server.accept().await.expect("Satchel connects");
        link.set_nodelay(true).expect("TCP_NODELAY");
        read_until(&mut link, b">").await;
        link.write_all(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
              xmlns:stream='http://etherx.jabber.org/streams' id='bench'>",
        )
        .await
        .expect("stream header");
        read_until(&mut link, b"</handshake>").await;
        link.write_all(b"<handshake/>").await.expect("handshake");
        link.into_split()
    });
    let iq = "<iq from='juliet@example.org/balcony' to='upload.example.org' id='step_03' \
              type='get'><request xmlns='urn:xmpp:http:upload:0' filename='très cool.jpg' \
              size='23456' content-type='image/jpeg'/></iq>";
    c.bench_function("slot request over the link: IQ written, answer read", |b| {
        b.iter(|| {
            runtime.block_on(async {
                from_satchel
                    .write_all(iq.as_bytes())
                    .await
                    .expect("IQ sent");
                read_until(&mut to_satchel, b"</iq>").await;
            })
        })
    });
}

/// Reads from `stream` until what was read ends with `end`.
async fn read_until(stream: &mut (impl AsyncRead + Unpin), end: &[u8]) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.ends_with(end) {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "the link closed");
        seen.extend_from_slice(&buf[..n]);
    }
}

fn chunk_crypto(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    // The key must live outside the store, which must exist for that check.
    std::fs::create_dir(dir.path().join("store")).expect("store dir");
    let master = MasterKey::load_or_create(&dir.path().join("key"), &dir.path().join("store"))
        .expect("master key");
    let prefix = [1u8; 7];
    let plain = vec![0x5au8; CHUNK];

    // Both ciphers in one group, so that their ratio comes from one run.
    let mut group = c.benchmark_group("64 KiB chunk");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    for cipher in Cipher::ALL {
        let key = master.file_key(&FileId([7; 16]), cipher);
        let mut sealed = plain.clone();
        seal_chunk(&key, &prefix, 3, false, &mut sealed).expect("seals");
        group.bench_function(format!("seal {cipher}"), |b| {
            b.iter_batched_ref(
                || plain.clone(),
                |buf| seal_chunk(&key, &prefix, 3, false, buf).expect("seals"),
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("open {cipher}"), |b| {
            b.iter_batched_ref(
                || sealed.clone(),
                |buf| open_chunk(&key, &prefix, 3, false, buf).expect("opens"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A new upload of `size` bytes, as the PUT handler begins it.
fn new_upload(size: usize) -> NewUpload {
    NewUpload {
        id: FileId::random(),
        uploader: "juliet@example.org".into(),
        filename: "movie.mp4".into(),
        size: size as u64,
        content_type: "video/mp4".into(),
        purpose: Purpose::Message,
        expires: u64::MAX,
    }
}

/// `size` bytes in 1 MiB pieces, as the PUT handler hands them on.
fn payload(size: usize) -> Vec<bytes::Bytes> {
    (0..size / MIB)
        .map(|i| bytes::Bytes::from(vec![i as u8; MIB]))
        .collect()
}

fn file_writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path());
    let size = 64 * MIB;
    let pieces = payload(size);
    let mut group = c.benchmark_group("write 64 MiB file");
    group.throughput(Throughput::Bytes(size as u64));
    group.sample_size(10);
    group.bench_function("sealed, hashed, synced", |b| {
        b.iter(|| {
            let mut writer = store
                .begin_upload(&new_upload(size), None)
                .expect("upload starts");
            writer.write_pieces(&pieces).expect("written");
            let file = writer.finish(0).expect("finished");
            store.delete_file(&file.id).expect("deleted")
        })
    });
    group.finish();
}

fn file_reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path());
    let size = 16 * MIB;
    let mut writer = store
        .begin_upload(&new_upload(size), None)
        .expect("upload starts");
    writer.write_pieces(&payload(size)).expect("written");
    let file = writer.finish(0).expect("finished");

    let mut group = c.benchmark_group("read 16 MiB file");
    group.throughput(Throughput::Bytes(size as u64));
    group.sample_size(20);
    group.bench_function("whole, decrypted", |b| {
        b.iter(|| {
            store
                .read_range(&file, 0..file.size)
                .expect("reader")
                .map(|piece| piece.expect("authentic").len())
                .sum::<usize>()
        })
    });
    group.finish();
}

fn range_headers(c: &mut Criterion) {
    let size = 128 * MIB as u64;
    c.bench_function("Range header: 4 forms", |b| {
        b.iter(|| {
            [
                "bytes=0-1023",
                "bytes=1048576-",
                "bytes=-500",
                "bytes=99999999999-",
            ]
            .map(|header| parse_range(Some(std::hint::black_box(header)), size))
        })
    });
}

fn thumbnails(c: &mut Criterion) {
    let photo = photo_like(4000, 3000);
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&photo)
        .expect("JPEG encodes");
    let mut png = Vec::new();
    DynamicImage::ImageRgb8(photo_like(2000, 1500))
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .expect("PNG encodes");
    let limits = ThumbnailLimits::default();

    let mut group = c.benchmark_group("thumbnail");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("4000x3000 JPEG q90 (12 MP)", |b| {
        b.iter(|| make_thumbnail(&jpeg, "image/jpeg", &limits).expect("thumbnail"))
    });
    group.bench_function("2000x1500 PNG (3 MP)", |b| {
        b.iter(|| make_thumbnail(&png, "image/png", &limits).expect("thumbnail"))
    });
    group.finish();
}

/// The shared test configuration, with limits that a benchmark granting
/// slots in a loop never reaches.
fn generous_config(dir: &std::path::Path) -> Config {
    let mut config = Config::parse(include_str!("../../tests/minimal-config.toml"))
        .expect("the shared test configuration");
    config.storage.path = dir.join("store");
    config.limits.max_file_size = 100 * MIB as u64;
    config.limits.daily_upload_bytes = 1_000_000_000_000_000;
    config.limits.user_storage_bytes = 20 * 100 * MIB as u64;
    config.limits.slot_requests_per_minute = 1_000_000_000;
    config
}

fn open_store(dir: &std::path::Path) -> Store {
    Store::open(StoreOptions::new(
        dir.join("store"),
        dir.join("master.key"),
        16 * MIB as u64,
    ))
    .expect("store opens")
}

/// A smooth gradient with per-pixel grain: about as hard to decode as a
/// camera photo (a plain gradient decodes unrealistically fast, noise
/// unrealistically slowly).
fn photo_like(width: u32, height: u32) -> RgbImage {
    let mut state: u32 = 0x2545_F491;
    RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let grain = (state % 48) as i32 - 24;
        let channel = |base: u32| (base as i32 + grain).clamp(0, 255) as u8;
        Rgb([
            channel(x * 255 / width),
            channel(y * 255 / height),
            channel((x + y) * 255 / (width + height)),
        ])
    })
}

criterion_group!(
    hot_paths,
    slot_requests,
    slot_requests_over_the_link,
    chunk_crypto,
    file_writes,
    file_reads,
    range_headers,
    thumbnails
);
criterion_main!(hot_paths);
