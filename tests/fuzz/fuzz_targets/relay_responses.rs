//! What comes back from the network while relays are being delivered:
//! bounces, presence, answers to probes and to the server query, privilege
//! announcements, receipts. Each input is a script, one step per line, run
//! against the router and the delivery task exactly as the component link
//! drives them (bytes through the stream reader, stanzas through
//! `Router::handle`), on a clock that only moves when the script waits:
//!
//! - `wait N`: N seconds pass (at most an hour), so windows, backoffs and
//!   probe timeouts run out;
//! - `down` / `up`: the link drops / comes back;
//! - anything else: bytes from the server. `$IQ` and `$MSG` stand for the id
//!   of the last IQ and message Satchel sent, `$TO` for where it went, so a
//!   script can answer Satchel without guessing random ids.
//!
//! Three relays wait in the outbox at the start (one of them already
//! expired). Nothing may panic, whatever the order of events.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use minidom::Element;
use satchel::config::Config;
use satchel::relay::outbox::Outbox;
use satchel::relay::record::{DeliveryStatus, FileFacts, Recipient, RelayId, RelayRecord};
use satchel::relay::Relay;
use satchel::Component;
use satchel::slots::SlotService;
use satchel::storage::{FileId, Store, StoreOptions, Tree};
use satchel::xmpp::router::Router;
use satchel::xmpp::stream::{Incoming, StanzaReader};
use tokio::sync::mpsc;

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
xmlns:stream='http://etherx.jabber.org/streams' from='upload.example.org' id='fuzz'>";
const MAX_STEPS: usize = 64;
const MAX_WAIT_SECS: u64 = 3600;
const MAX_STANZA_BYTES: usize = 64 * 1024;

/// Opened once: a store per input would cost more than the input.
struct Fixture {
    _dir: tempfile::TempDir,
    config: Config,
    store: Store,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // On tmpfs where there is one: the outbox syncs every relay it stores.
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let mut config = Config::parse(include_str!("../../minimal-config.toml")).unwrap();
        config.storage.path = dir.path().join("store");
        let store = Store::open(StoreOptions::new(
            config.storage.path.clone(),
            dir.path().join("master.key"),
            1 << 20,
        ))
        .unwrap();
        Fixture {
            _dir: dir,
            config,
            store,
        }
    })
}

fn relay(id: u8, recipients: &[(&str, Option<&str>)], expires: u64) -> RelayRecord {
    let url = format!("https://upload.example.org/file/{}/a.jpg", FileId([id; 16]));
    RelayRecord {
        id: RelayId([id; 16]),
        sender: "alice@example.org".into(),
        sender_full: "alice@example.org/phone".into(),
        request_id: format!("request-{id}"),
        file: FileId([id; 16]),
        url,
        caption: None,
        facts: FileFacts::default(),
        expires,
        recipients: recipients
            .iter()
            .map(|(jid, token)| Recipient {
                jid: (*jid).into(),
                status: DeliveryStatus::Pending,
                download_token: token.map(str::to_owned),
            })
            .collect(),
    }
}

/// What Satchel sent last, for the script's placeholders.
#[derive(Default)]
struct LastSent {
    iq: String,
    message: String,
    to: String,
}

impl LastSent {
    fn record(&mut self, stanza: &Element) {
        let id = stanza.attr("id").unwrap_or_default().to_owned();
        match stanza.name() {
            "iq" => self.iq = id,
            "message" => self.message = id,
            _ => {}
        }
        self.to = stanza.attr("to").unwrap_or_default().to_owned();
    }

    fn fill_in(&self, line: &str) -> String {
        line.replace("$IQ", &self.iq)
            .replace("$MSG", &self.message)
            .replace("$TO", &self.to)
    }
}

/// Feeds `text` to the router as the server's stream would carry it.
async fn feed(router: &Router<Component>, text: &str) {
    let bytes = [HEADER, text.as_bytes()].concat();
    let mut reader = StanzaReader::new(bytes.as_slice(), MAX_STANZA_BYTES);
    if reader.read_header().await.is_err() {
        return;
    }
    while let Ok(Some(incoming)) = reader.next().await {
        match incoming {
            Incoming::Stanza(stanza) => {
                router.handle(stanza).await;
            }
            Incoming::Oversized(head) => {
                router.refuse_oversized(&head);
            }
        }
    }
}

async fn run(fixture: &Fixture, script: &str) {
    let tree = fixture.store.open_tree(Tree::Relays).unwrap();
    for (key, _) in tree.entries().unwrap() {
        tree.remove(&key).unwrap();
    }
    let outbox = Outbox::new(tree);
    for record in [
        relay(
            1,
            &[("bob@example.org", None), ("carol@example.org", None)],
            u64::MAX,
        ),
        relay(2, &[("dave@example.org", Some("t0k3n"))], u64::MAX),
        relay(3, &[("erin@example.org", None)], 0),
    ] {
        outbox.insert(&record).unwrap();
    }
    let (outgoing, mut sent) = mpsc::channel(1024);
    let relay = Relay::start(&fixture.config, fixture.store.clone(), outgoing, None).unwrap();
    let slots = SlotService::new(&fixture.config, fixture.store.clone());
    let component = Component::new(&fixture.config, fixture.store.clone(), slots.clone(), relay);
    let router = Router::new(
        fixture.config.component.jid.clone(),
        slots,
        std::sync::Arc::new(component),
    );
    let mut last = LastSent::default();
    router.link_up().iter().for_each(|s| last.record(s));
    for line in script.lines().take(MAX_STEPS) {
        match line {
            "up" => router.link_up().iter().for_each(|s| last.record(s)),
            "down" => router.link_down(),
            _ => match line.strip_prefix("wait ").map(str::parse::<u64>) {
                Some(Ok(secs)) => {
                    tokio::time::sleep(Duration::from_secs(secs.min(MAX_WAIT_SECS))).await
                }
                _ => feed(&router, &last.fill_in(line)).await,
            },
        }
        // The delivery task acts on what it learned before the next step.
        tokio::time::sleep(Duration::from_millis(1)).await;
        while let Ok(stanza) = sent.try_recv() {
            last.record(&stanza);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(script) = std::str::from_utf8(data) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(run(fixture(), script));
});
