//! Relay: Satchel delivers the media message for the sender.
//!
//! After an upload, the recipients get a small message carrying the URL, the
//! file's metadata and a server-made thumbnail, so the media previews before
//! it is downloaded, and they get it durably: also when they were offline.
//!
//! [`Relay`] is the front: it checks a request (`request`), makes the
//! thumbnail (`thumbnail`), builds the common part of the message
//! (`message`), stores the relay (`outbox`) and only then acknowledges it;
//! the delivery task (`delivery`) does the rest. It also keeps what Satchel
//! learns of its server on each link: the XEP-0356 privileges the server
//! announces, whether it stores offline messages, who is online.

pub mod delivery;
pub mod message;
pub mod outbox;
pub mod request;
pub mod thumbnail;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jid::{BareJid, Jid};
use minidom::Element;
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, info, warn, Instrument};
use xmpp_parsers::disco::DiscoInfoQuery;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::ns;

use crate::clock::unix_now;
use crate::config::Config;
use crate::logging::LoggedJid;
use crate::rate_limit::RateLimiter;
use crate::storage::downloads::{new_token, DownloadTracker};
use crate::storage::{FileRecord, Store, Tree};
use crate::xmpp::privilege::{PresencePermission, Privileges, NS_V1, NS_V2};
use delivery::{Capabilities, DeliveryEvent, DeliverySettings, DeliveryTask};
use message::{common_payload, payload_to_text, FileFacts, RelayComposer};
use outbox::{DeliveryStatus, Outbox, Recipient, RelayId, RelayRecord};
use request::{Refusal, RelayRequest};
use thumbnail::{make_thumbnail, ThumbnailLimits};

/// Largest file Satchel decrypts whole to make a thumbnail.
const MAX_THUMBNAIL_SOURCE_BYTES: u64 = 64 * 1024 * 1024;
/// Thumbnails made at once: each holds a decoded image in memory.
const THUMBNAILS_AT_ONCE: usize = 2;
/// Prefix of the ids of Satchel's disco#info queries to its server.
const SERVER_INFO_ID: &str = "satchel-server-info-";

/// What Satchel learned of its server on the current link.
#[derive(Debug, Default)]
struct ServerState {
    privileges: Option<Privileges>,
    /// `None` until the server answered the disco#info query.
    stores_offline: Option<bool>,
    queries_sent: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayStartError {
    #[error("cannot open the outbox: {0}")]
    Outbox(String),
}

pub struct Relay {
    component: BareJid,
    server: BareJid,
    store: Store,
    outbox: Outbox,
    file_url_prefix: String,
    allowed_domains: Vec<String>,
    max_recipients: usize,
    limiter: RateLimiter,
    thumbnail_limits: ThumbnailLimits,
    thumbnail_permits: Semaphore,
    events: mpsc::Sender<DeliveryEvent>,
    server_state: Mutex<ServerState>,
    /// Set when relayed files are deleted once downloaded.
    downloads: Option<DownloadTracker>,
}

impl Relay {
    /// Opens the outbox and starts the delivery task, which sends through `outgoing`.
    pub fn start(
        config: &Config,
        store: Store,
        outgoing: mpsc::Sender<Element>,
        downloads: Option<DownloadTracker>,
    ) -> Result<Arc<Relay>, RelayStartError> {
        let tree = store
            .open_tree(Tree::Relays)
            .map_err(|e| RelayStartError::Outbox(e.to_string()))?;
        let outbox = Outbox::new(tree);
        let component = config.component.jid.clone();
        let server = crate::domains::server_of(&component);
        let (events, events_rx) = mpsc::channel(1024);
        let composer = Arc::new(RelayComposer {
            component: component.clone(),
            server: server.clone(),
        });
        let settings = DeliverySettings {
            bounce_window: config.relay.bounce_window,
            first_retry: Duration::from_secs(1),
            max_retry: config.relay.retry_max_delay,
            settle_time: Duration::from_secs(3),
        };
        let task = DeliveryTask::new(outbox.clone(), composer, outgoing, settings);
        tokio::spawn(
            task.run(events_rx)
                .instrument(tracing::info_span!("delivery")),
        );
        let public = config
            .http
            .public_url
            .split_once("://")
            .map_or("", |(_, rest)| rest);
        Ok(Arc::new(Relay {
            component,
            server,
            store,
            outbox,
            file_url_prefix: format!("{public}/file/"),
            allowed_domains: config.limits.allowed_domains.clone(),
            max_recipients: config.relay.max_recipients,
            limiter: RateLimiter::new(config.relay.relays_per_minute, Duration::from_secs(60)),
            thumbnail_limits: ThumbnailLimits {
                max_side: config.relay.thumbnail_max_side,
                ..ThumbnailLimits::default()
            },
            thumbnail_permits: Semaphore::new(THUMBNAILS_AT_ONCE),
            events,
            server_state: Mutex::new(ServerState::default()),
            downloads,
        }))
    }

    /// A message addressed to the component: a relay request, a bounce of one
    /// of ours, or the server's privilege announcement. Returns the answer.
    pub async fn handle_message(&self, message: Element) -> Option<Element> {
        let from: Jid = message.attr("from")?.parse().ok()?;
        if message.attr("type") == Some("error") {
            self.bounced(&message, from).await;
            return None;
        }
        if from.node().is_none() && from.to_bare() == self.server {
            self.privileges_announced(&message).await;
            return None;
        }
        if !request::is_relay_request(&message) {
            debug!(from = %LoggedJid(from.as_str()), "ignoring a message that asks for no relay");
            return None;
        }
        let request_id = message.attr("id").unwrap_or_default().to_owned();
        let span = tracing::info_span!("relay", id = %request_id, from = %LoggedJid(from.as_str()));
        match self
            .accept(&message, from.clone())
            .instrument(span.clone())
            .await
        {
            Ok(Some(receipt)) => Some(receipt),
            Ok(None) => None,
            Err(refusal) => {
                span.in_scope(|| info!(%refusal, "relay refused"));
                Some(message::refusal(
                    &self.component,
                    from.as_str(),
                    &request_id,
                    &refusal,
                ))
            }
        }
    }

    async fn accept(&self, message: &Element, from: Jid) -> Result<Option<Element>, Refusal> {
        let sender = from.to_bare();
        if !self.is_allowed_domain(sender.domain().as_str()) || sender.node().is_none() {
            return Err(Refusal::SenderNotAllowed);
        }
        if !self.limiter.allow(sender.as_str(), Instant::now()) {
            return Err(Refusal::RateLimited);
        }
        let mut request =
            request::parse(message, from, self.max_recipients, &self.file_url_prefix)?;
        // Passed on only if it keeps the recipients' message small (a few KiB).
        if request
            .sender_thumbnail
            .as_ref()
            .is_some_and(|t| t.data.data.len() > self.thumbnail_limits.max_bytes)
        {
            info!(
                limit = self.thumbnail_limits.max_bytes,
                "the sender's thumbnail is too large to pass on; dropped"
            );
            request.sender_thumbnail = None;
        }
        if let Some(foreign) = request
            .recipients
            .iter()
            .find(|jid| !self.is_allowed_domain(jid.domain().as_str()))
        {
            return Err(Refusal::RecipientNotAllowed(foreign.to_string()));
        }
        let store = self.store.clone();
        let id = request.file;
        let file = tokio::task::spawn_blocking(move || store.file(&id))
            .await
            .map_err(|_| Refusal::Internal)?
            .map_err(|error| {
                warn!(%error, "cannot read the file record");
                Refusal::Internal
            })?
            .filter(|file| file.expires >= unix_now())
            .ok_or(Refusal::ItemNotFound)?;
        if file.uploader != sender.as_str() {
            return Err(Refusal::Forbidden);
        }

        let facts = self.file_facts(&file, &request).await;
        let recipients: Vec<Recipient> = request
            .recipients
            .iter()
            .map(|jid| Recipient {
                jid: jid.to_string(),
                status: DeliveryStatus::Pending,
                download_token: self.downloads.as_ref().map(|_| new_token()),
            })
            .collect();
        if let Some(tracker) = &self.downloads {
            let tracker = tracker.clone();
            let file = file.id;
            let tokens: Vec<String> = recipients
                .iter()
                .filter_map(|r| r.download_token.clone())
                .collect();
            tokio::task::spawn_blocking(move || tracker.expect(&file, &tokens))
                .await
                .map_err(|_| Refusal::Internal)?
                .map_err(|error| {
                    warn!(%error, "cannot record the awaited downloads");
                    Refusal::Internal
                })?;
        }
        let record = RelayRecord {
            id: RelayId::random(),
            sender: sender.to_string(),
            sender_full: request.from.to_string(),
            request_id: request.id.clone(),
            file: file.id,
            url: request.url.clone(),
            expires: file.expires,
            payload: payload_to_text(&common_payload(&request, &facts)),
            recipients,
        };
        let outbox = self.outbox.clone();
        let stored = record.clone();
        tokio::task::spawn_blocking(move || outbox.insert(&stored))
            .await
            .map_err(|_| Refusal::Internal)?
            .map_err(|error| {
                warn!(%error, "cannot store the relay");
                Refusal::Internal
            })?;
        info!(relay = %record.id, file = %file.id, recipients = record.recipients.len(), "relay accepted");
        if self
            .events
            .send(DeliveryEvent::Accepted(record))
            .await
            .is_err()
        {
            warn!("the delivery task is gone; the relay waits for the next start");
        }
        Ok(request
            .wants_receipt
            .then(|| message::receipt(&self.component, request.from.as_str(), &request.id)))
    }

    fn is_allowed_domain(&self, domain: &str) -> bool {
        crate::domains::is_allowed(&self.allowed_domains, domain)
    }

    /// Metadata and thumbnail; what cannot be known is left out, never guessed.
    async fn file_facts(&self, file: &FileRecord, request: &RelayRequest) -> FileFacts {
        let mut facts = FileFacts {
            name: Some(file.filename.clone()),
            ..FileFacts::default()
        };
        if request.client_encrypted {
            // The stored bytes are ciphertext: their type, hash and pixels say nothing.
            return facts;
        }
        facts.media_type = Some(file.content_type.clone());
        facts.size = Some(file.size);
        facts.sha256 = Some(file.sha256);
        let looks_like_image = file.content_type.starts_with("image/")
            || file.content_type == "application/octet-stream";
        if !looks_like_image || file.size > MAX_THUMBNAIL_SOURCE_BYTES {
            return facts;
        }
        let Ok(_permit) = self.thumbnail_permits.acquire().await else {
            return facts;
        };
        let store = self.store.clone();
        let record = file.clone();
        let limits = self.thumbnail_limits.clone();
        let made = tokio::task::spawn_blocking(move || {
            let mut bytes = Vec::with_capacity(record.size as usize);
            for chunk in store
                .read_range(&record, 0..record.size)
                .map_err(|e| e.to_string())?
            {
                bytes.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
            }
            make_thumbnail(&bytes, &record.content_type, &limits).map_err(|e| e.to_string())
        })
        .await;
        match made {
            Ok(Ok((info, thumbnail))) => {
                debug!(
                    width = info.width,
                    height = info.height,
                    bytes = thumbnail.bytes.len(),
                    "thumbnail made"
                );
                facts.width = Some(info.width);
                facts.height = Some(info.height);
                facts.thumbnail = Some(thumbnail);
            }
            Ok(Err(reason)) => info!(%reason, "no thumbnail"),
            Err(_) => warn!("thumbnail task panicked"),
        }
        facts
    }

    async fn bounced(&self, message: &Element, from: Jid) {
        let Some(message_id) = message.attr("id") else {
            debug!(from = %LoggedJid(from.as_str()), "error message without an id; ignored");
            return;
        };
        let condition = message
            .get_child("error", ns::DEFAULT_NS)
            .and_then(|error| {
                error
                    .children()
                    .find(|c| c.ns() == ns::XMPP_STANZAS && c.name() != "text")
                    .map(|c| c.name().to_owned())
            })
            .unwrap_or_else(|| "undefined-condition".to_owned());
        self.tell(DeliveryEvent::Bounce {
            message_id: message_id.to_owned(),
            from,
            condition,
        })
        .await;
    }

    /// Hands `event` to the delivery task, waiting while it is busy.
    ///
    /// What the network says about deliveries is never dropped: a bounce
    /// lost here would make its message count as delivered. The wait holds up
    /// only this stanza's handler; the link goes on sending meanwhile, which
    /// is what the delivery task may be waiting for.
    async fn tell(&self, event: DeliveryEvent) {
        if self.events.send(event).await.is_err() {
            warn!("the delivery task is gone; what the server said about a delivery is lost");
        }
    }

    async fn privileges_announced(&self, message: &Element) {
        let Some(announcement) = message
            .children()
            .find(|c| c.name() == "privilege" && (c.ns() == NS_V1 || c.ns() == NS_V2))
        else {
            return;
        };
        match Privileges::try_from(announcement.clone()) {
            Ok(privileges) => {
                info!(?privileges, "the server grants privileges");
                self.update_server_state(|state| state.privileges = Some(privileges))
                    .await;
            }
            Err(error) => warn!(%error, "unreadable privilege announcement"),
        }
    }

    /// A presence forwarded by the server (XEP-0356 presence permission).
    pub async fn handle_presence(&self, presence: &Element) {
        let Some(from) = presence.attr("from").and_then(|f| f.parse::<Jid>().ok()) else {
            return;
        };
        let (Some(_), Some(resource)) = (from.node(), from.resource()) else {
            return;
        };
        // Only users of the served domains can be recipients: nobody else's
        // comings and goings are worth memory.
        if !self.is_allowed_domain(from.domain().as_str()) {
            debug!(from = %LoggedJid(from.as_str()), "presence from another domain; ignored");
            return;
        }
        let available = match presence.attr("type") {
            None => true,
            Some("unavailable") => false,
            Some(_) => return,
        };
        debug!(from = %LoggedJid(from.as_str()), available, "presence");
        self.tell(DeliveryEvent::Presence {
            jid: from.to_bare().to_string(),
            resource: resource.to_string(),
            available,
        })
        .await;
    }

    /// An IQ result or error addressed to the component; true if it was ours.
    ///
    /// The ids of Satchel's queries are no secret (the server's is a counter),
    /// so who answers counts: a user answering the server's disco#info query
    /// could make Satchel believe the server keeps offline messages.
    pub async fn handle_iq_response(&self, iq: &Element) -> bool {
        let Some(id) = iq.attr("id") else {
            return false;
        };
        let from = iq.attr("from").and_then(|from| from.parse::<Jid>().ok());
        if id.starts_with(delivery::PROBE_ID_PREFIX) {
            let Some(from) = from else {
                debug!(id, "probe answer without a usable 'from'; ignored");
                return true;
            };
            self.tell(DeliveryEvent::ProbeAnswer {
                query_id: id.to_owned(),
                from,
                reachable: iq.attr("type") == Some("result"),
            })
            .await;
            return true;
        }
        if !id.starts_with(SERVER_INFO_ID) {
            return false;
        }
        if from.as_ref() != Some(&Jid::from(self.server.clone())) {
            warn!(id, from = %LoggedJid(iq.attr("from").unwrap_or_default()), "answer to the server's disco#info query from someone else; ignored");
            return true;
        }
        let stores_offline = iq.get_child("query", ns::DISCO_INFO).is_some_and(|query| {
            query
                .children()
                .any(|f| f.name() == "feature" && f.attr("var") == Some("msgoffline"))
        });
        info!(stores_offline, "server features known");
        self.update_server_state(|state| state.stores_offline = Some(stores_offline))
            .await;
        true
    }

    /// The link is up: ask the server what it does. Returns the stanzas to send.
    pub fn link_up(&self) -> Vec<Element> {
        let id = {
            let mut state = self.server_state.lock().unwrap_or_else(|p| p.into_inner());
            state.privileges = None;
            state.stores_offline = None;
            state.queries_sent += 1;
            format!("{SERVER_INFO_ID}{}", state.queries_sent)
        };
        let _ = self.events.try_send(DeliveryEvent::LinkUp);
        let query = Iq::from_get(id, DiscoInfoQuery { node: None })
            .with_from(self.component.clone().into())
            .with_to(self.server.clone().into());
        vec![query.into()]
    }

    pub fn link_down(&self) {
        let _ = self.events.try_send(DeliveryEvent::LinkDown);
    }

    async fn update_server_state(&self, change: impl FnOnce(&mut ServerState)) {
        let capabilities = {
            let mut state = self.server_state.lock().unwrap_or_else(|p| p.into_inner());
            change(&mut state);
            // Nothing is decided before the disco answer: privileges come first.
            let Some(stores_offline) = state.stores_offline else {
                return;
            };
            Capabilities {
                send_as: state
                    .privileges
                    .filter(|p| p.message_outgoing)
                    .map(|p| p.version),
                sees_presence: state
                    .privileges
                    .is_some_and(|p| p.presence != PresencePermission::None),
                stores_offline,
            }
        };
        self.tell(DeliveryEvent::ServerCapabilities(capabilities))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::service_store_in;

    /// A relay for `upload.example.org` whose delivery task starts with
    /// `stored` in its outbox and sends into a queue of `queue` stanzas.
    fn relay(
        dir: &std::path::Path,
        stored: &[RelayRecord],
        queue: usize,
    ) -> (Arc<Relay>, mpsc::Receiver<Element>) {
        let config = Config::for_tests(dir);
        let store = service_store_in(dir);
        let outbox = Outbox::new(store.open_tree(Tree::Relays).unwrap());
        for record in stored {
            outbox.insert(record).unwrap();
        }
        let (outgoing, sent) = mpsc::channel(queue);
        (Relay::start(&config, store, outgoing, None).unwrap(), sent)
    }

    fn answer_from(from: &str, id: &str, features: &str) -> Element {
        format!(
            "<iq xmlns='jabber:component:accept' type='result' id='{id}' from='{from}' to='upload.example.org'>\
             <query xmlns='http://jabber.org/protocol/disco#info'>{features}</query></iq>"
        )
        .parse()
        .unwrap()
    }

    #[tokio::test]
    async fn only_the_server_answers_the_query_about_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let (relay, _sent) = relay(dir.path(), &[], 16);
        let query = relay.link_up().remove(0);
        let id = query.attr("id").unwrap();
        let answer = |from: &str| answer_from(from, id, "<feature var='msgoffline'/>");
        let stores_offline = || relay.server_state.lock().unwrap().stores_offline;
        for spoofer in ["mallory@example.org/x", "example.org/x", "evil.example"] {
            assert!(
                relay.handle_iq_response(&answer(spoofer)).await,
                "{spoofer}"
            );
            assert_eq!(stores_offline(), None, "believed {spoofer}");
        }
        assert!(relay.handle_iq_response(&answer("example.org")).await);
        assert_eq!(stores_offline(), Some(true));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounce_waits_for_a_busy_delivery_task_rather_than_being_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let stored = RelayRecord {
            id: RelayId([7; 16]),
            sender: "alice@example.org".into(),
            sender_full: "alice@example.org/phone".into(),
            request_id: "m1".into(),
            file: crate::storage::FileId([7; 16]),
            url: "https://upload.example.org/file/x/a.jpg".into(),
            expires: u64::MAX,
            payload: "<body xmlns='jabber:component:accept'>u</body>".into(),
            recipients: ["bob@example.org", "carol@example.org"]
                .iter()
                .map(|jid| Recipient {
                    jid: (*jid).into(),
                    status: DeliveryStatus::Pending,
                    download_token: None,
                })
                .collect(),
        };
        // Room for one message: the delivery task blocks on the second.
        let (relay, mut sent) = relay(dir.path(), std::slice::from_ref(&stored), 1);
        let query = relay.link_up().remove(0);
        relay
            .handle_iq_response(&answer_from(
                "example.org",
                query.attr("id").unwrap(),
                "<feature var='msgoffline'/>",
            ))
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;

        // Bounces for nothing in flight, enough to fill the task's queue,
        // then the real ones (whichever of the two messages went first).
        let bounce = |id: &str, from: &str| -> Element {
            format!(
                "<message xmlns='jabber:component:accept' type='error' id='{id}' from='{from}' to='upload.example.org'>\
                 <error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
            )
            .parse()
            .unwrap()
        };
        let flood = {
            let relay = relay.clone();
            let stem = stored.id.to_string();
            tokio::spawn(async move {
                for n in 0..2000 {
                    relay
                        .handle_message(bounce(&format!("junk-{n}"), "mallory@example.org"))
                        .await;
                }
                for (index, recipient) in
                    ["bob@example.org", "carol@example.org"].iter().enumerate()
                {
                    relay
                        .handle_message(bounce(&format!("{stem}-{index}-1"), recipient))
                        .await;
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!flood.is_finished(), "the handlers wait for the busy task");

        // Once the link drains, the real bounce is seen: its message comes again.
        let mut ids = Vec::new();
        while let Ok(Some(stanza)) = tokio::time::timeout(Duration::from_secs(5), sent.recv()).await
        {
            ids.push(stanza.attr("id").unwrap_or_default().to_owned());
        }
        assert!(flood.is_finished());
        assert!(
            ids.iter().any(|id| id.ends_with("-2")),
            "a bounced message is retried: {ids:?}"
        );
    }
}
