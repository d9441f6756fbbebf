//! The blob store in an S3 bucket (`storage.backend = "s3"`): Garage,
//! SeaweedFS, MinIO or AWS, through the `object_store` crate.
//!
//! ```text
//! content/ab/abcdef…         the object of a published blob (its id in hex)
//! ```
//!
//! Only sealed chunks leave Satchel: the bucket never sees a plaintext byte
//! or a key. Nothing relies on conditional writes (Garage ignores them):
//! ids are 128 random bits and one writer holds an id at a time (`claims`).
//!
//! **Writing.** A pending blob is memory, then a multipart upload. Sealed
//! chunks collect into parts of [`PART_BYTES`]; the first full part starts
//! the multipart upload, and parts are sent while the next one fills (at
//! most [`PARTS_IN_FLIGHT`] sent and one filling, 24 MiB, per upload;
//! [`PART_BUFFERS`] across all of them). A blob that never fills a part (most photos) is sent with one
//! plain PUT when it is published.
//! Either way the object appears whole or not at all: S3 shows a multipart
//! object only once it is completed, and completing it is the publish. A
//! multipart upload, once started, gets a marker object
//! (`uploads/ab/<id>`, holding its upload id) that the publish deletes:
//! `object_store` cannot list multipart uploads, so the marker is how the
//! collector finds one cut off by a crash and aborts it. A pending blob
//! that is dropped unpublished aborts its upload at once.
//!
//! **Reading.** A download reads its object through one streaming GET
//! from where it starts to the object's end, opened with the download (its
//! answer also tells the size, so no HEAD), and cut into blocks of
//! [`READ_BLOCK_BYTES`]; the next [`READ_AHEAD_BLOCKS`] are taken from the
//! stream while one is being read. One GET per block would wait for an
//! answer per block: a replicated Garage answers each request late, and
//! ranged GETs per block read at 0.40-0.49x of boto3's single GET there,
//! the stream at 1.09-1.14x of a file at rest with the store on a core of
//! its own (README). A read elsewhere (a
//! Range request, a block asked again) opens a new GET where it starts.
//! [`READ_AHEAD_CAP`] bounds the blocks taken ahead across all downloads;
//! a download's block buffers are filled again once read
//! ([`BlockBuffers`]).
//!
//! **Blocking.** The store's callers block (the writer's thread, the
//! blocking pool, rayon's pool), and `object_store` is async: each call is
//! driven to completion on the runtime Satchel started with, from the
//! calling thread (`block_in_place` lets an async worker do it too).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, GetOptions, GetRange, MultipartId, ObjectStore, PutPayload, PutResult,
    RetryConfig,
};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{BlobState, FoundBlob, S3Bucket};
use crate::storage::crypto::TAG_LEN;
use crate::storage::error::StorageError;
use crate::storage::records::{FileId, MAX_CHUNK_SIZE};

/// Bytes per part of a multipart upload: above S3's 5 MiB minimum, and a
/// part size every S3 implementation takes.
const PART_BYTES: usize = 8 << 20;

/// A part's buffer: the part and the sealed chunk that ends it, so that it
/// never grows.
const PART_CAPACITY: usize = PART_BYTES + MAX_CHUNK_SIZE as usize + TAG_LEN;

/// Part buffers at once, filling or being sent, across all uploads: 128 MiB.
/// An upload holds at most one filling and [`PARTS_IN_FLIGHT`] being sent;
/// past the cap, uploads wait for a buffer, and their clients for TCP's
/// window.
const PART_BUFFERS: usize = 16;

/// Parts of one upload being sent at once. A store whose every request
/// waits (a replicated Garage) is latency-bound with one: a 128 MiB PUT into
/// a 3-node Garage ran at 0.41-0.50x of boto3's with one, 0.76-0.95x with
/// two (examples/throughput.py --cluster, A/B, README).
const PARTS_IN_FLIGHT: usize = 2;

/// Bytes of a download taken from its stream as one block: the unit of
/// read-ahead and of the memory a download holds. Ranged GETs of 2 MiB read
/// at 490-520 MiB/s from SeaweedFS, 4 MiB at 610-625 and 8 MiB at 630-660
/// (A/B, README), when each block was a GET; with one stream per download
/// the size only sets how much is held.
const READ_BLOCK_BYTES: u64 = 4 << 20;
/// Blocks taken from the stream ahead of the one being read, so that the
/// stream flows while a block is decrypted (within [`READ_AHEAD_CAP`]).
/// With one stream per download, one, two and four ahead read alike on a
/// 3-node Garage (453, 480 and 454 MiB/s, medians of 7, A/B): two is kept.
const READ_AHEAD_BLOCKS: u64 = 2;
/// Blocks fetched ahead at once across all downloads (128 MiB); past that,
/// downloads fetch each block when they need it. A download also holds the
/// block it reads and the one before (still read by a window in flight).
const READ_AHEAD_CAP: usize = 32;

/// How long a request may wait for a connection, take in all (a part of
/// [`PART_BYTES`] included), and be retried: a store that is down is
/// reported (503) within seconds, not after object_store's default three
/// minutes of retries.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const RETRY_TIMEOUT: Duration = Duration::from_secs(10);

/// The prefix of every file's object.
const PREFIX: &str = "content";
/// The prefix of the markers of multipart uploads in progress: one object
/// per upload, named like its file's, holding its upload id.
const UPLOADS_PREFIX: &str = "uploads";

/// The bucket, shared by every clone.
#[derive(Clone)]
pub(crate) struct S3Blobs {
    bucket: Arc<Bucket>,
}

struct Bucket {
    store: AmazonS3,
    /// The runtime the calls run on.
    runtime: Handle,
    /// One permit per part buffer, filling or in flight, across uploads.
    part_buffers: Arc<Semaphore>,
    /// One permit per block fetched ahead of need, across downloads.
    read_ahead: Arc<Semaphore>,
}

/// A part being filled, and its share of the memory for parts.
struct Filling {
    bytes: Vec<u8>,
    permit: OwnedSemaphorePermit,
}

/// A blob being written: parts filling and in flight.
pub(crate) struct S3Pending {
    bucket: Arc<Bucket>,
    path: ObjectPath,
    /// Sealed bytes not sent yet, less than a part once `append` returns.
    filling: Option<Filling>,
    /// Started with the first full part.
    upload: Option<MultipartId>,
    /// Writing the upload's marker, started with the upload and waited for
    /// before its completion: the first part is sent meanwhile.
    marker: Option<JoinHandle<object_store::Result<PutResult>>>,
    /// The parts sent, in order.
    parts: Vec<PartId>,
    /// The parts being sent, oldest first.
    in_flight: VecDeque<JoinHandle<object_store::Result<PartId>>>,
    published: bool,
}

/// A published blob: its object, its size, and the blocks of it fetched or
/// being fetched.
pub(crate) struct S3Published {
    bucket: Arc<Bucket>,
    size: u64,
    blocks: Mutex<BTreeMap<u64, HeldBlock>>,
    /// The task serving the blocks from a streaming GET.
    stream: mpsc::UnboundedSender<BlockRequest>,
}

/// A block fetched or being fetched; one fetched ahead of need holds its
/// share of [`READ_AHEAD_CAP`] until it is dropped.
struct HeldBlock {
    fetched: FetchedBlock,
    _ahead: Option<OwnedSemaphorePermit>,
}

/// A block of [`READ_BLOCK_BYTES`] as a GET brings it; cloned by every read
/// that needs it.
type FetchedBlock = Shared<BoxFuture<'static, Result<Bytes, Arc<object_store::Error>>>>;

impl S3Blobs {
    /// Connects to `bucket` and checks that it answers (one listing
    /// request), so that a wrong endpoint, bucket or key stops the start.
    ///
    /// Must run inside Satchel's runtime (on any of its threads).
    pub fn open(bucket: &S3Bucket) -> Result<S3Blobs, StorageError> {
        return_large_buffers_on_free();
        let runtime = Handle::try_current().map_err(|_| {
            StorageError::Options("the S3 blob store needs a tokio runtime".to_owned())
        })?;
        let store = AmazonS3Builder::new()
            .with_endpoint(&bucket.endpoint)
            .with_region(&bucket.region)
            .with_bucket_name(&bucket.bucket)
            .with_access_key_id(&bucket.access_key_id)
            .with_secret_access_key(&bucket.secret_access_key)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(bucket.endpoint.starts_with("http://"))
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_timeout(REQUEST_TIMEOUT),
            )
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: RETRY_TIMEOUT,
                ..RetryConfig::default()
            })
            .build()
            .map_err(|source| {
                unavailable(format!("configuring bucket {}", bucket.bucket), source)
            })?;
        let blobs = S3Blobs {
            bucket: Arc::new(Bucket {
                store,
                runtime,
                part_buffers: Arc::new(Semaphore::new(PART_BUFFERS)),
                read_ahead: Arc::new(Semaphore::new(READ_AHEAD_CAP)),
            }),
        };
        let prefix = ObjectPath::from(PREFIX);
        blobs
            .bucket
            .wait(blobs.bucket.store.list_with_delimiter(Some(&prefix)))
            .map_err(|source| {
                unavailable(
                    format!(
                        "bucket {} at {} ([storage.s3]) does not answer",
                        bucket.bucket, bucket.endpoint
                    ),
                    source,
                )
            })?;
        Ok(blobs)
    }

    pub fn create_pending(&self, id: &FileId) -> S3Pending {
        S3Pending {
            bucket: self.bucket.clone(),
            path: object_path(id),
            filling: None,
            upload: None,
            marker: None,
            parts: Vec::new(),
            in_flight: VecDeque::new(),
            published: false,
        }
    }

    /// Opens the object of `id` with a streaming GET from the block that
    /// holds byte `from`, where the download will start reading: its
    /// answer tells the object's size and brings its first bytes in one
    /// round trip, where a HEAD and then a GET took two.
    pub fn open_published(
        &self,
        id: &FileId,
        from: u64,
    ) -> Result<Option<S3Published>, StorageError> {
        let path = object_path(id);
        let start = from / READ_BLOCK_BYTES * READ_BLOCK_BYTES;
        let opened = match self.bucket.wait(open_body(&self.bucket, &path, start)) {
            Ok(opened) => Some(opened),
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            // A start past the end of an object shorter than its record
            // says is refused: the HEAD below tells that case (the reader
            // then reports the chunk it lacks) from a store that is down.
            Err(_) if start > 0 => None,
            Err(source) => return Err(unavailable(format!("reading {path}"), source)),
        };
        let size = match &opened {
            Some((_, size)) => *size,
            None => match self.bucket.wait(self.bucket.store.head(&path)) {
                Ok(meta) => meta.size,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(source) => return Err(unavailable(format!("looking up {path}"), source)),
            },
        };
        let (stream, requests) = mpsc::unbounded_channel();
        let open = opened.map(|(open, _)| open);
        let served = serve_blocks(self.bucket.clone(), path, size, open, requests);
        self.bucket.runtime.spawn(served.in_current_span());
        Ok(Some(S3Published {
            bucket: self.bucket.clone(),
            stream,
            size,
            blocks: Mutex::new(BTreeMap::new()),
        }))
    }

    /// A published blob is its object; a pending one is a multipart upload
    /// (invisible), found through its marker: it is aborted, then the
    /// marker deleted.
    pub fn delete_one(&self, id: &FileId, state: BlobState) -> Result<(), StorageError> {
        match state {
            BlobState::Published => self.bucket.delete_object(&object_path(id)),
            BlobState::Pending => {
                let marker = marker_path(id);
                let upload = match self.bucket.wait(self.bucket.store.get(&marker)) {
                    Ok(found) => self
                        .bucket
                        .wait(found.bytes())
                        .map_err(|source| unavailable(format!("reading {marker}"), source))?,
                    Err(object_store::Error::NotFound { .. }) => return Ok(()),
                    Err(source) => return Err(unavailable(format!("reading {marker}"), source)),
                };
                let upload = MultipartId::from(String::from_utf8_lossy(&upload).into_owned());
                let path = object_path(id);
                match self
                    .bucket
                    .wait(self.bucket.store.abort_multipart(&path, &upload))
                {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(source) => {
                        return Err(unavailable(
                            format!("aborting the upload of {path}"),
                            source,
                        ))
                    }
                }
                self.bucket.delete_object(&marker)
            }
        }
    }

    /// Lists the objects under `content/` (published blobs) and the markers
    /// under `uploads/` (pending ones), a page at a time; `visit` runs
    /// between the waits (it may call the bucket itself).
    pub fn walk(
        &self,
        mut visit: impl FnMut(FoundBlob) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        for (prefix, state) in [
            (PREFIX, BlobState::Published),
            (UPLOADS_PREFIX, BlobState::Pending),
        ] {
            let prefix = ObjectPath::from(prefix);
            let mut listing = self.bucket.store.list(Some(&prefix));
            while let Some(meta) = self.bucket.wait(listing.next()) {
                let meta =
                    meta.map_err(|source| unavailable("listing the bucket".into(), source))?;
                if let Some(id) = id_of(&meta.location, &prefix) {
                    visit(FoundBlob {
                        id,
                        state,
                        modified: u64::try_from(meta.last_modified.timestamp()).unwrap_or(0),
                    })?;
                }
            }
        }
        Ok(())
    }
}

impl S3Pending {
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let filling = match &mut self.filling {
            Some(filling) => filling,
            None => {
                let buffers = self.bucket.part_buffers.clone();
                let permit = self
                    .bucket
                    .wait(buffers.acquire_owned())
                    .expect("the semaphore is never closed");
                self.filling.insert(Filling {
                    bytes: Vec::with_capacity(PART_CAPACITY),
                    permit,
                })
            }
        };
        filling.bytes.extend_from_slice(bytes);
        if filling.bytes.len() >= PART_BYTES {
            self.send_part()?;
        }
        Ok(())
    }

    /// Sends what is filled as the next part, once fewer than
    /// [`PARTS_IN_FLIGHT`] are being sent. The first starts the multipart
    /// upload and the writing of its marker, so that the upload can be
    /// found and aborted if Satchel stops before it ends.
    fn send_part(&mut self) -> Result<(), StorageError> {
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.wait_oldest_part()?;
        }
        let upload = match &self.upload {
            Some(upload) => upload.clone(),
            None => self.start_upload()?,
        };
        let Some(Filling { bytes, permit }) = self.filling.take() else {
            return Ok(());
        };
        let index = self.parts.len() + self.in_flight.len();
        let (bucket, path) = (self.bucket.clone(), self.path.clone());
        self.in_flight
            .push_back(self.bucket.runtime.spawn(async move {
                let payload = PutPayload::from(Bytes::from(bytes));
                let sent = bucket.store.put_part(&path, &upload, index, payload).await;
                drop(permit);
                sent
            }));
        Ok(())
    }

    /// Starts the multipart upload, and the writing of its marker (each
    /// small request to a Garage costs tens of milliseconds, so the marker
    /// goes beside the first part, not before it).
    fn start_upload(&mut self) -> Result<MultipartId, StorageError> {
        let path = &self.path;
        let upload = self
            .bucket
            .wait(self.bucket.store.create_multipart(path))
            .map_err(|source| unavailable(format!("starting the upload of {path}"), source))?;
        let body = PutPayload::from(Bytes::from(upload.clone().into_bytes()));
        let (bucket, marker) = (self.bucket.clone(), marker_of(path));
        self.marker = Some(
            self.bucket
                .runtime
                .spawn(async move { bucket.store.put(&marker, body).await }),
        );
        self.upload = Some(upload.clone());
        Ok(upload)
    }

    /// Waits for the marker to be written.
    fn wait_marker(&mut self) -> Result<(), StorageError> {
        let Some(writing) = self.marker.take() else {
            return Ok(());
        };
        let context = || format!("writing {}", marker_of(&self.path));
        match self.bucket.wait(writing) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(unavailable(context(), source)),
            Err(_) => Err(StorageError::Io {
                context: context(),
                source: io::Error::other("the marker's task stopped"),
            }),
        }
    }

    fn wait_in_flight(&mut self) -> Result<(), StorageError> {
        while !self.in_flight.is_empty() {
            self.wait_oldest_part()?;
        }
        Ok(())
    }

    fn wait_oldest_part(&mut self) -> Result<(), StorageError> {
        let Some(part) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match self.bucket.wait(part) {
            Ok(Ok(part)) => {
                self.parts.push(part);
                Ok(())
            }
            Ok(Err(source)) => Err(unavailable(
                format!("sending a part of {}", self.path),
                source,
            )),
            Err(_) => Err(StorageError::Io {
                context: format!("sending a part of {}", self.path),
                source: io::Error::other("the part's task stopped"),
            }),
        }
    }

    /// Sends the rest and completes the object: one PUT if it never filled
    /// a part, else the last part and the completion.
    pub fn publish(&mut self) -> Result<(), StorageError> {
        if self.upload.is_none() {
            let path = &self.path;
            let filled = self.filling.take().map(|filling| filling.bytes);
            let body = PutPayload::from(Bytes::from(filled.unwrap_or_default()));
            self.bucket
                .wait(self.bucket.store.put(path, body))
                .map_err(|source| unavailable(format!("writing {path}"), source))?;
        } else {
            self.send_part()?;
            self.wait_in_flight()?;
            self.wait_marker()?;
            let path = &self.path;
            let upload = self.upload.as_ref().expect("checked above");
            let parts = std::mem::take(&mut self.parts);
            self.bucket
                .wait(self.bucket.store.complete_multipart(path, upload, parts))
                .map_err(|source| unavailable(format!("completing {path}"), source))?;
            // Deleted without waiting, so the file is committed and its 201
            // sent meanwhile. Left behind, the marker is harmless: the
            // collector finds the upload gone and deletes it.
            let (bucket, marker) = (self.bucket.clone(), marker_of(path));
            self.bucket.runtime.spawn(
                async move {
                    if let Err(error) = bucket.delete_if_there(&marker).await {
                        tracing::warn!(%error, "could not delete the marker of a completed upload");
                    }
                }
                .in_current_span(),
            );
        }
        self.published = true;
        Ok(())
    }
}

impl Drop for S3Pending {
    /// Aborts an unpublished multipart upload, without waiting: the drop may
    /// happen anywhere, and the bucket's lifecycle rule catches what fails.
    fn drop(&mut self) {
        for part in self.in_flight.drain(..) {
            part.abort();
        }
        if let (Some(upload), false) = (self.upload.take(), self.published) {
            let (bucket, path) = (self.bucket.clone(), self.path.clone());
            let marker = self.marker.take();
            self.bucket.runtime.spawn(async move {
                // The marker is deleted below: not before it is written.
                if let Some(writing) = marker {
                    let _ = writing.await;
                }
                if let Err(error) = bucket.store.abort_multipart(&path, &upload).await {
                    tracing::warn!(%error, "could not abort an unfinished multipart upload");
                    return;
                }
                if let Err(error) = bucket.delete_if_there(&marker_of(&path)).await {
                    tracing::warn!(%error, "could not delete the marker of an aborted upload");
                }
            });
        }
    }
}

impl S3Published {
    /// Copies from the blocks that hold `offset..`, asking the stream for
    /// each (and the next ones, ahead of need).
    pub fn read_at_most(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            let at = offset + filled as u64;
            if at >= self.size {
                break;
            }
            let index = at / READ_BLOCK_BYTES;
            let block = self
                .bucket
                .wait(self.block(index))
                .map_err(|error| io::Error::other(error.to_string()))?;
            let start = (at - index * READ_BLOCK_BYTES) as usize;
            let len = (block.len().saturating_sub(start)).min(buf.len() - filled);
            if len == 0 {
                // The object is shorter than its size said: stop, the
                // reader reports the chunk it cuts.
                break;
            }
            buf[filled..filled + len].copy_from_slice(&block[start..start + len]);
            filled += len;
        }
        Ok(filled)
    }

    /// Block `index`, and the next ones started: a sequential read finds
    /// each block fetched or on its way. Blocks before `index - 1` are
    /// dropped (the reader's windows in flight never reach further back).
    fn block(&self, index: u64) -> FetchedBlock {
        let mut blocks = self.blocks.lock().unwrap_or_else(PoisonError::into_inner);
        blocks.retain(|&kept, _| kept + 1 >= index);
        let wanted = blocks
            .entry(index)
            .or_insert_with(|| HeldBlock {
                fetched: self.fetch(index),
                _ahead: None,
            })
            .fetched
            .clone();
        for ahead in index + 1..=index + READ_AHEAD_BLOCKS {
            if ahead * READ_BLOCK_BYTES >= self.size || blocks.contains_key(&ahead) {
                continue;
            }
            let Ok(permit) = self.bucket.read_ahead.clone().try_acquire_owned() else {
                break;
            };
            // Started on the runtime at once, kept for the read that wants it.
            let fetched = self.fetch(ahead);
            blocks.insert(
                ahead,
                HeldBlock {
                    fetched,
                    _ahead: Some(permit),
                },
            );
        }
        wanted
    }

    /// Asks the download's stream for block `index`.
    fn fetch(&self, index: u64) -> FetchedBlock {
        let (reply, fetched) = oneshot::channel();
        // The stream is gone only if its task panicked: the receiver then
        // reports it.
        let _ = self.stream.send(BlockRequest { index, reply });
        async move {
            fetched.await.unwrap_or_else(|_| {
                Err(Arc::new(object_store::Error::Generic {
                    store: "S3",
                    source: "the download's stream stopped".into(),
                }))
            })
        }
        .boxed()
        .shared()
    }
}

/// A block asked of a download's stream, and where to send it.
struct BlockRequest {
    index: u64,
    reply: oneshot::Sender<Result<Bytes, Arc<object_store::Error>>>,
}

/// The GET a download reads its blocks from, and where it stands.
struct OpenBody {
    body: BoxStream<'static, object_store::Result<Bytes>>,
    /// Bytes received past the last block taken.
    carry: Bytes,
    /// The offset of the next byte the body yields.
    next: u64,
    /// No byte received yet: an error now is the store's answer, not a cut.
    fresh: bool,
}

impl OpenBody {
    /// The offset of the first byte not taken yet.
    fn position(&self) -> u64 {
        self.next - self.carry.len() as u64
    }
}

/// Serves a download's blocks, in the order they are asked for, from one
/// streaming GET of the rest of the object; a block that does not follow
/// the last one (a Range request, a block dropped and asked again) opens a
/// new GET where it starts. Ends when the download is dropped.
async fn serve_blocks(
    bucket: Arc<Bucket>,
    path: ObjectPath,
    size: u64,
    mut open: Option<OpenBody>,
    mut requests: mpsc::UnboundedReceiver<BlockRequest>,
) {
    let mut buffers = BlockBuffers::default();
    while let Some(BlockRequest { index, reply }) = requests.recv().await {
        let start = index * READ_BLOCK_BYTES;
        let end = size.min(start + READ_BLOCK_BYTES);
        let (bucket, path) = (&bucket, &path);
        let open_at = |at| async move { Ok(open_body(bucket, path, at).await?.0) };
        let buffer = buffers.take((end - start) as usize);
        let block = read_block(start..end, buffer, &mut open, open_at).await;
        if let Ok(block) = &block {
            buffers.lend(block);
        }
        // A block nobody waits for any more (the download moved on) is
        // simply dropped.
        let _ = reply.send(block.map_err(Arc::new));
    }
}

/// Bytes `range` of the object, into `block` (empty), from `open` if it
/// stands at their start, else from a body `open_at` opens there. A body
/// cut off after it brought bytes (the request's time limit, a store
/// restarting) is opened again where it stopped; a body that fails before
/// bringing any is an error.
async fn read_block<Opening>(
    range: Range<u64>,
    mut block: BytesMut,
    open: &mut Option<OpenBody>,
    mut open_at: impl FnMut(u64) -> Opening,
) -> object_store::Result<Bytes>
where
    Opening: Future<Output = object_store::Result<OpenBody>>,
{
    let mut body = match open.take() {
        Some(body) if body.position() == range.start => body,
        _ => open_at(range.start).await?,
    };
    let len = (range.end - range.start) as usize;
    while block.len() < len {
        if body.carry.is_empty() {
            match body.body.next().await {
                Some(Ok(bytes)) => {
                    body.next += bytes.len() as u64;
                    body.carry = bytes;
                    body.fresh = false;
                }
                // The object is shorter than its size said: the reader
                // reports the chunk it cuts.
                None => break,
                Some(Err(error)) if body.fresh => return Err(error),
                Some(Err(error)) => {
                    let at = range.start + block.len() as u64;
                    tracing::debug!(%error, at, "a download's GET was cut off, opening another");
                    body = open_at(at).await?;
                }
            }
            continue;
        }
        let take = body.carry.len().min(len - block.len());
        block.extend_from_slice(&body.carry.split_to(take));
    }
    *open = Some(body);
    Ok(block.freeze())
}

/// The buffers of a download's blocks, used again once its reader is done
/// with them: a fresh 4 MiB buffer is mapped by the kernel page by page as
/// it is filled (glibc maps buffers this large; see
/// [`return_large_buffers_on_free`]), which cost about a tenth of the
/// download's CPU. The body's pieces are copied into them: keeping the
/// pieces instead read no faster (A/B) and left more memory in the
/// allocator's arenas (twenty downloads peaked at 370-400 MiB instead of
/// 285-305).
#[derive(Default)]
struct BlockBuffers {
    /// The last blocks handed out, oldest first.
    lent: VecDeque<Bytes>,
}

impl BlockBuffers {
    /// A download holds the block it reads, the one before and those
    /// fetched ahead: the block before those is the one filled again.
    const KEPT: usize = READ_AHEAD_BLOCKS as usize + 2;

    /// An empty buffer for `len` bytes: a block nobody reads any more, or
    /// a new one.
    fn take(&mut self, len: usize) -> BytesMut {
        let free = self
            .lent
            .iter()
            .position(|block| block.is_unique() && block.len() >= len);
        if let Some(mut buffer) = free
            .and_then(|at| self.lent.remove(at))
            .and_then(|block| block.try_into_mut().ok())
        {
            buffer.clear();
            return buffer;
        }
        BytesMut::with_capacity(len)
    }

    /// Keeps `block` to be used again once its readers let go.
    fn lend(&mut self, block: &Bytes) {
        if self.lent.len() == Self::KEPT {
            self.lent.pop_front();
        }
        self.lent.push_back(block.clone());
    }
}

/// A streaming GET of the object from byte `from` to its end, and the
/// object's size.
async fn open_body(
    bucket: &Bucket,
    path: &ObjectPath,
    from: u64,
) -> object_store::Result<(OpenBody, u64)> {
    let options = GetOptions {
        range: (from > 0).then_some(GetRange::Offset(from)),
        ..GetOptions::default()
    };
    let result = bucket.store.get_opts(path, options).await?;
    let size = result.meta.size;
    let open = OpenBody {
        body: result.into_stream(),
        carry: Bytes::new(),
        next: from,
        fresh: true,
    };
    Ok((open, size))
}

impl Bucket {
    /// Deletes the object at `path`, if there is one.
    fn delete_object(&self, path: &ObjectPath) -> Result<(), StorageError> {
        self.wait(self.delete_if_there(path))
            .map_err(|source| unavailable(format!("deleting {path}"), source))
    }

    async fn delete_if_there(&self, path: &ObjectPath) -> object_store::Result<()> {
        match self.store.delete(path).await {
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            deleted => deleted,
        }
    }

    /// Runs `call` to completion from a thread that may block.
    fn wait<F: std::future::Future>(&self, call: F) -> F::Output {
        tokio::task::block_in_place(|| self.runtime.block_on(call))
    }
}

/// Part buffers (9 MiB) and read blocks (4 MiB) are allocated and freed on
/// many threads. glibc raises its mmap threshold to the largest block freed,
/// after which such buffers come from per-thread arenas that keep them when
/// freed: 20 concurrent uploads then held 330 MiB for 128 MiB of parts. A
/// fixed threshold keeps them mapped, and unmapped when freed.
fn return_large_buffers_on_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before
    // any part buffer exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// `content/ab/<id>`, sharded like local blobs so listings can be split.
fn object_path(id: &FileId) -> ObjectPath {
    ObjectPath::from(format!("{PREFIX}/{}/{id}", hex::encode(&id.0[..1])))
}

/// Where the marker of the multipart upload of `id` is.
fn marker_path(id: &FileId) -> ObjectPath {
    ObjectPath::from(format!("{UPLOADS_PREFIX}/{}/{id}", hex::encode(&id.0[..1])))
}

/// The marker of the upload of the object at `path` (one of ours).
fn marker_of(path: &ObjectPath) -> ObjectPath {
    let name: Vec<_> = path
        .parts()
        .skip(1)
        .map(|part| part.as_ref().to_owned())
        .collect();
    ObjectPath::from(format!("{UPLOADS_PREFIX}/{}", name.join("/")))
}

/// The id an object of ours under `prefix` is named after; `None` for any
/// other name.
fn id_of(path: &ObjectPath, prefix: &ObjectPath) -> Option<FileId> {
    let mut parts = path.parts();
    let (first, shard, name) = (parts.next()?, parts.next()?, parts.next()?);
    if first.as_ref() != prefix.as_ref() || parts.next().is_some() {
        return None;
    }
    let id: FileId = name.as_ref().parse().ok()?;
    (shard.as_ref() == hex::encode(&id.0[..1])).then_some(id)
}

fn unavailable(context: String, source: object_store::Error) -> StorageError {
    StorageError::ObjectStore {
        context,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_named_after_their_id_and_only_those_are_ours() {
        let id = FileId([0xab; 16]);
        let path = object_path(&id);
        assert_eq!(path.as_ref(), format!("content/ab/{id}"));
        let (content, uploads) = (ObjectPath::from(PREFIX), ObjectPath::from(UPLOADS_PREFIX));
        assert_eq!(id_of(&path, &content), Some(id));
        assert_eq!(id_of(&path, &uploads), None);
        let marker = marker_path(&id);
        assert_eq!(marker.as_ref(), format!("uploads/ab/{id}"));
        assert_eq!(marker_of(&path), marker);
        assert_eq!(id_of(&marker, &uploads), Some(id));
        for stranger in [
            format!("content/ac/{id}"),
            format!("other/ab/{id}"),
            format!("content/ab/{id}/x"),
            "content/ab/notanid".to_owned(),
            "content/ab".to_owned(),
        ] {
            assert_eq!(
                id_of(&ObjectPath::from(stranger.as_str()), &content),
                None,
                "{stranger}"
            );
        }
    }

    /// An object of `len` bytes (byte i is i mod 251), streamed from `at` in
    /// pieces of 3 bytes; the body fails after `fail_after` pieces, if set.
    fn body_of(len: u64, at: u64, fail_after: Option<usize>) -> OpenBody {
        let bytes: Vec<u8> = (at..len).map(|i| (i % 251) as u8).collect();
        let mut pieces: Vec<object_store::Result<Bytes>> = bytes
            .chunks(3)
            .map(|piece| Ok(Bytes::copy_from_slice(piece)))
            .collect();
        if let Some(after) = fail_after {
            pieces.truncate(after);
            pieces.push(Err(object_store::Error::Generic {
                store: "test",
                source: "connection reset".into(),
            }));
        }
        OpenBody {
            body: futures_util::stream::iter(pieces).boxed(),
            carry: Bytes::new(),
            next: at,
            fresh: true,
        }
    }

    fn expected(range: Range<u64>) -> Vec<u8> {
        range.map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn blocks_in_order_come_from_one_body() {
        let opened = std::cell::RefCell::new(Vec::new());
        let open_at = |at| {
            opened.borrow_mut().push(at);
            async move { Ok(body_of(20, at, None)) }
        };
        let mut open = None;
        for range in [0..5, 5..10, 10..15, 15..20] {
            let block = read_block(range.clone(), BytesMut::new(), &mut open, &open_at)
                .await
                .unwrap();
            assert_eq!(block, expected(range));
        }
        assert_eq!(*opened.borrow(), [0]);
        // A block elsewhere opens a body where it starts.
        let block = read_block(5..10, BytesMut::new(), &mut open, &open_at)
            .await
            .unwrap();
        assert_eq!(block, expected(5..10));
        assert_eq!(*opened.borrow(), [0, 5]);
    }

    #[tokio::test]
    async fn a_body_cut_off_is_opened_again_where_it_stopped() {
        let opened = std::cell::RefCell::new(Vec::new());
        let open_at = |at| {
            let first = opened.borrow().is_empty();
            opened.borrow_mut().push(at);
            // The first body is cut after 2 pieces (6 bytes).
            async move { Ok(body_of(20, at, first.then_some(2))) }
        };
        let mut open = None;
        let block = read_block(0..10, BytesMut::new(), &mut open, &open_at)
            .await
            .unwrap();
        assert_eq!(block, expected(0..10));
        assert_eq!(*opened.borrow(), [0, 6]);
        let block = read_block(10..20, BytesMut::new(), &mut open, &open_at)
            .await
            .unwrap();
        assert_eq!(block, expected(10..20));
        assert_eq!(opened.borrow().len(), 2);
    }

    #[test]
    fn a_block_buffer_is_used_again_only_once_nobody_reads_it() {
        let mut buffers = BlockBuffers::default();
        let mut filled = buffers.take(10);
        filled.extend_from_slice(&[7; 10]);
        let block = filled.freeze();
        buffers.lend(&block);
        let address = block.as_ptr();

        // A reader still holds the block: a new buffer.
        let other = buffers.take(10);
        assert_ne!(other.as_ptr(), address);
        assert!(other.is_empty() && other.capacity() >= 10);

        // Let go of, it is used again, emptied.
        drop(block);
        let again = buffers.take(10);
        assert_eq!(again.as_ptr(), address);
        assert!(again.is_empty() && again.capacity() >= 10);
    }

    #[test]
    fn a_block_too_small_is_not_used_again_and_only_the_last_blocks_are_kept() {
        let mut buffers = BlockBuffers::default();
        let short = Bytes::from(vec![1; 4]);
        buffers.lend(&short);
        drop(short);
        assert!(buffers.take(10).capacity() >= 10);

        for _ in 0..2 * BlockBuffers::KEPT {
            buffers.lend(&Bytes::from(vec![0; 10]));
        }
        assert_eq!(buffers.lent.len(), BlockBuffers::KEPT);
    }

    #[tokio::test]
    async fn a_body_that_fails_at_once_is_an_error_and_a_short_one_a_short_block() {
        let failing = |at| async move { Ok(body_of(20, at, Some(0))) };
        assert!(read_block(0..10, BytesMut::new(), &mut None, failing)
            .await
            .is_err());
        let short = |at| async move { Ok(body_of(7, at, None)) };
        let block = read_block(0..10, BytesMut::new(), &mut None, short)
            .await
            .unwrap();
        assert_eq!(block, expected(0..7));
    }
}
