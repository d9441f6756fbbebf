//! Relay: Satchel delivers the media message for the sender.
//!
//! After an upload, the recipients get a small message carrying the URL, the
//! file's metadata and a server-made thumbnail, so the media previews before
//! it is downloaded, and they get it durably: also when they were offline.
//!
//! [`Relay`] is the front, fed by the component link: it checks a request
//! ([`request`]), learns what the message will say about the file
//! ([`facts`], with [`thumbnail`]), stores the relay as facts
//! ([`record`] in the [`outbox`]; [`legacy`] reads what earlier versions
//! stored) and only then acknowledges it ([`reports`]). The delivery task
//! ([`delivery`]) does the rest, building each recipient's message at send
//! time ([`message`]). The front also keeps what Satchel learns of its
//! server on each connection ([`server`]) and passes on what the network
//! says about deliveries: bounces, presence, probe answers.
//!
//! [`DownloadTracker`] (in storage) deletes a relayed file once every recipient fetched it,
//! where the operator asks for that.

pub mod delivery;
pub mod facts;
pub mod legacy;
pub mod message;
pub mod outbox;
pub mod record;
pub mod reports;
pub mod request;
pub mod server;
pub mod thumbnail;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jid::{BareJid, Jid};
use minidom::Element;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn, Instrument};
use xmpp_parsers::disco::DiscoInfoQuery;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::ns;

use crate::clock::unix_now;
use crate::config::LiveConfig;
use crate::logging::LoggedJid;
use crate::rate_limit::RateLimiter;
use crate::storage::downloads::{new_token, DownloadTracker};
use crate::storage::{FileRecord, Store, Tree};
use crate::xmpp::privilege::Privileges;
use delivery::{AttemptId, DeliveryEvent, DeliverySettings, DeliveryTask, LinkStatus};
use facts::FactGatherer;
use message::RelayComposer;
use outbox::Outbox;
use record::{DeliveryStatus, Recipient, RelayId, RelayRecord};
use request::{Refusal, RelayRequest};
use server::ServerState;
use thumbnail::ThumbnailLimits;

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
    /// The domains served, which SIGHUP may change (`limits.allowed_domains`).
    settings: LiveConfig,
    max_recipients: usize,
    limiter: RateLimiter,
    /// The largest sender-made thumbnail passed on.
    max_thumbnail_bytes: usize,
    facts: FactGatherer,
    events: mpsc::Sender<DeliveryEvent>,
    link: watch::Sender<LinkStatus>,
    server_state: Mutex<ServerState>,
    /// Set when relayed files are deleted once downloaded.
    downloads: Option<DownloadTracker>,
    /// The delivery task's count of deliveries held for offline recipients.
    held: Arc<std::sync::atomic::AtomicU64>,
}

/// What the relay still owes, for `admin/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingRelays {
    /// Relays not yet fully delivered.
    pub relays: u64,
    /// Deliveries they still owe: sent and waiting out the bounce window,
    /// due, or held.
    pub deliveries: u64,
    /// Of those, held until their recipient comes online.
    pub held: u64,
}

impl Relay {
    /// Opens the outbox and starts the delivery task, which sends through
    /// `outgoing`, under `settings` (a [`LiveConfig`] the service reloads, or
    /// a plain `&Config`).
    pub fn start(
        settings: impl Into<LiveConfig>,
        store: Store,
        outgoing: mpsc::Sender<Element>,
        downloads: Option<DownloadTracker>,
    ) -> Result<Arc<Relay>, RelayStartError> {
        let live = settings.into();
        let config = live.get();
        let tree = store
            .open_tree(Tree::Relays)
            .map_err(|e| RelayStartError::Outbox(e.to_string()))?;
        let outbox = Outbox::new(tree);
        let component = config.component.jid.clone();
        let server = crate::domains::server_of(&component);
        let (events, events_rx) = mpsc::channel(1024);
        let (link, link_rx) = watch::channel(LinkStatus::default());
        let composer = Arc::new(RelayComposer {
            component: component.clone(),
            server: server.clone(),
        });
        let settings = DeliverySettings {
            bounce_window: config.relay.bounce_window,
            first_retry: Duration::from_secs(1),
            max_retry: config.relay.retry_max_delay,
            settle_time: Duration::from_secs(3),
            settle_grace: Duration::from_millis(500),
        };
        let task = DeliveryTask::new(outbox.clone(), composer, outgoing, settings);
        let held = task.held_counter();
        tokio::spawn(
            task.run(events_rx, link_rx)
                .instrument(tracing::info_span!("delivery")),
        );
        let public = config
            .http
            .public_url
            .split_once("://")
            .map_or("", |(_, rest)| rest);
        let thumbnail_limits = ThumbnailLimits {
            max_side: config.relay.thumbnail_max_side,
            ..ThumbnailLimits::default()
        };
        Ok(Arc::new(Relay {
            component,
            server,
            store: store.clone(),
            outbox,
            file_url_prefix: format!("{public}/file/"),
            settings: live,
            max_recipients: config.relay.max_recipients,
            limiter: RateLimiter::new(config.relay.relays_per_minute, Duration::from_secs(60)),
            max_thumbnail_bytes: thumbnail_limits.max_bytes,
            facts: FactGatherer::new(store, thumbnail_limits),
            events,
            link,
            server_state: Mutex::new(ServerState::default()),
            downloads,
            held,
        }))
    }

    /// File `file` was deleted: its relays still pending are cancelled (the
    /// delivery task logs how many and tells their senders).
    pub async fn file_deleted(&self, file: crate::storage::FileId) {
        if self
            .events
            .send(DeliveryEvent::FileDeleted(file))
            .await
            .is_err()
        {
            warn!(%file, "the delivery task is gone; pending relays of a deleted file end at expiry");
        }
    }

    /// What the relay still owes: the relays and deliveries from the
    /// outbox (0 if it cannot be read, logged), the held ones from the
    /// delivery task.
    pub fn pending(&self) -> PendingRelays {
        let held = self.held.load(std::sync::atomic::Ordering::Relaxed);
        match self.outbox.all() {
            Ok(relays) => {
                let deliveries = relays
                    .iter()
                    .flat_map(|relay| &relay.recipients)
                    .filter(|recipient| !recipient.status.is_final())
                    .count();
                PendingRelays {
                    relays: relays.len() as u64,
                    deliveries: deliveries as u64,
                    held,
                }
            }
            Err(error) => {
                warn!(%error, "cannot read the outbox");
                PendingRelays {
                    held,
                    ..PendingRelays::default()
                }
            }
        }
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
            Ok(receipt) => receipt,
            Err(refusal) => {
                span.in_scope(|| info!(%refusal, "relay refused"));
                Some(reports::refusal(
                    &self.component,
                    from.as_str(),
                    &request_id,
                    &refusal,
                ))
            }
        }
    }

    /// Checks a relay request, stores the relay, hands it to the delivery
    /// task; the receipt, if the sender asked for one.
    async fn accept(&self, message: &Element, from: Jid) -> Result<Option<Element>, Refusal> {
        let sender = self.admit_sender(&from)?;
        let request = self.read_request(message, from)?;
        let file = self.uploaded_file(&request, &sender).await?;
        let facts = self.facts.gather(&file, &request).await;
        let recipients = self.recipients(&request, &file).await?;
        let record = RelayRecord {
            id: RelayId::random(),
            sender: sender.to_string(),
            sender_full: request.from.to_string(),
            request_id: request.id.clone(),
            file: file.id,
            url: request.url.clone(),
            caption: request.caption.clone(),
            facts,
            expires: file.expires,
            recipients,
        };
        self.store_and_deliver(record).await?;
        Ok(request
            .wants_receipt
            .then(|| reports::receipt(&self.component, request.from.as_str(), &request.id)))
    }

    /// The sender's bare JID, if they may relay now: a user of a served
    /// domain, within the rate limit.
    fn admit_sender(&self, from: &Jid) -> Result<BareJid, Refusal> {
        let sender = from.to_bare();
        if !self.is_allowed_domain(sender.domain().as_str()) || sender.node().is_none() {
            return Err(Refusal::SenderNotAllowed);
        }
        if !self.limiter.allow(sender.as_str(), Instant::now()) {
            return Err(Refusal::RateLimited);
        }
        Ok(sender)
    }

    /// The request, checked against this Satchel's limits and domains.
    fn read_request(&self, message: &Element, from: Jid) -> Result<RelayRequest, Refusal> {
        let mut request =
            request::parse(message, from, self.max_recipients, &self.file_url_prefix)?;
        // Passed on only if it keeps the recipients' message small (a few KiB).
        if request
            .sender_thumbnail
            .as_ref()
            .is_some_and(|t| t.data.data.len() > self.max_thumbnail_bytes)
        {
            info!(
                limit = self.max_thumbnail_bytes,
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
        Ok(request)
    }

    /// The completed, unexpired upload the request's URL names, if `sender`
    /// uploaded it.
    async fn uploaded_file(
        &self,
        request: &RelayRequest,
        sender: &BareJid,
    ) -> Result<FileRecord, Refusal> {
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
        Ok(file)
    }

    /// The recipients, pending; each with a download token to await when
    /// downloads are tracked.
    async fn recipients(
        &self,
        request: &RelayRequest,
        file: &FileRecord,
    ) -> Result<Vec<Recipient>, Refusal> {
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
        Ok(recipients)
    }

    /// Stores `record` durably, then hands it to the delivery task.
    async fn store_and_deliver(&self, record: RelayRecord) -> Result<(), Refusal> {
        let outbox = self.outbox.clone();
        let stored = record.clone();
        tokio::task::spawn_blocking(move || outbox.insert(&stored))
            .await
            .map_err(|_| Refusal::Internal)?
            .map_err(|error| {
                warn!(%error, "cannot store the relay");
                Refusal::Internal
            })?;
        info!(relay = %record.id, file = %record.file, recipients = record.recipients.len(), "relay accepted");
        if self
            .events
            .send(DeliveryEvent::Accepted(Box::new(record)))
            .await
            .is_err()
        {
            warn!("the delivery task is gone; the relay waits for the next start");
        }
        Ok(())
    }

    fn is_allowed_domain(&self, domain: &str) -> bool {
        crate::domains::is_allowed(&self.settings.get().limits.allowed_domains, domain)
    }

    /// An error message: the server returned one of our messages.
    async fn bounced(&self, message: &Element, from: Jid) {
        let Some(attempt) = message
            .attr("id")
            .and_then(|id| id.parse::<AttemptId>().ok())
        else {
            debug!(from = %LoggedJid(from.as_str()), "error message about none of our messages; ignored");
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
            attempt,
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
        let Some(announcement) = server::announcement(message) else {
            return;
        };
        match Privileges::try_from(announcement.clone()) {
            Ok(privileges) => {
                info!(?privileges, "the server grants privileges");
                let news = self.learn(|state| {
                    state.privileges = Some(privileges);
                    true
                });
                if let Some(news) = news {
                    self.tell(news).await;
                }
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
            self.probe_answered(id, from, iq.attr("type") == Some("result"))
                .await;
            return true;
        }
        let Some(connection) = server::query_connection(id) else {
            return false;
        };
        if from.as_ref() != Some(&Jid::from(self.server.clone())) {
            warn!(id, from = %LoggedJid(iq.attr("from").unwrap_or_default()), "answer to the server's disco#info query from someone else; ignored");
            return true;
        }
        let stores_offline = server::lists_offline_storage(iq);
        let news = self.learn(|state| {
            let current = state.connection == connection;
            if current {
                info!(stores_offline, "server features known");
                state.stores_offline = Some(stores_offline);
            } else {
                debug!(id, "answer to the query of an earlier connection; ignored");
            }
            current
        });
        if let Some(news) = news {
            self.tell(news).await;
        }
        true
    }

    async fn probe_answered(&self, id: &str, from: Option<Jid>, reachable: bool) {
        let (Some(attempt), Some(from)) = (AttemptId::of_probe(id), from) else {
            debug!(id, "probe answer without a usable id or 'from'; ignored");
            return;
        };
        self.tell(DeliveryEvent::ProbeAnswer {
            attempt,
            from,
            reachable,
        })
        .await;
    }

    /// The link is up: ask the server what it does. Returns the stanzas to send.
    pub fn link_up(&self) -> Vec<Element> {
        let mut state = self.server_state.lock().unwrap_or_else(|p| p.into_inner());
        let id = state.connected();
        self.link.send_replace(LinkStatus {
            up: true,
            connection: state.connection,
        });
        let query = Iq::from_get(id, DiscoInfoQuery { node: None })
            .with_from(self.component.clone().into())
            .with_to(self.server.clone().into());
        vec![query.into()]
    }

    pub fn link_down(&self) {
        self.link.send_modify(|status| status.up = false);
    }

    /// Applies `change` to what is known of the server; what the delivery
    /// task must now know, if `change` changed anything.
    fn learn(&self, change: impl FnOnce(&mut ServerState) -> bool) -> Option<DeliveryEvent> {
        let mut state = self.server_state.lock().unwrap_or_else(|p| p.into_inner());
        if change(&mut state) {
            state.news()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::relay::record::samples::relay_to;
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

    fn announcement() -> Element {
        "<message xmlns='jabber:component:accept' from='example.org' to='upload.example.org'>\
           <privilege xmlns='urn:xmpp:privilege:2'>\
             <perm access='message' type='outgoing'/>\
             <perm access='presence' type='managed_entity'/>\
           </privilege>\
         </message>"
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

    #[tokio::test]
    async fn an_answer_meant_for_an_earlier_connection_is_not_believed() {
        let dir = tempfile::tempdir().unwrap();
        let (relay, _sent) = relay(dir.path(), &[], 16);
        let first = relay.link_up().remove(0);
        relay.link_down();
        relay.link_up();
        let late = answer_from(
            "example.org",
            first.attr("id").unwrap(),
            "<feature var='msgoffline'/>",
        );
        assert!(relay.handle_iq_response(&late).await);
        assert_eq!(relay.server_state.lock().unwrap().stores_offline, None);
    }

    /// What the server sends right after the handshake may be handled after
    /// its answer to Satchel's query (stanzas are handled concurrently): the
    /// first message still goes out as the sender, to a recipient whose
    /// presence came with the announcement.
    #[tokio::test(start_paused = true)]
    async fn an_announcement_handled_after_the_answer_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let stored = relay_to(&["bob@example.org"]);
        let (relay, mut sent) = relay(dir.path(), std::slice::from_ref(&stored), 16);
        let query = relay.link_up().remove(0);
        relay
            .handle_iq_response(&answer_from("example.org", query.attr("id").unwrap(), ""))
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            sent.try_recv().is_err(),
            "nothing sent before the announcement"
        );
        relay.handle_message(announcement()).await;
        let presence: Element = "<presence xmlns='jabber:component:accept' from='bob@example.org/phone' to='upload.example.org'/>"
            .parse()
            .unwrap();
        relay.handle_presence(&presence).await;
        let probe = tokio::time::timeout(Duration::from_secs(1), sent.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(probe.name(), "iq", "bob is probed: {probe:?}");
        assert_eq!(probe.attr("to"), Some("bob@example.org/phone"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounce_waits_for_a_busy_delivery_task_rather_than_being_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let stored = relay_to(&["bob@example.org", "carol@example.org"]);
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
        // Without an announcement the task sends once the settle time is over.
        tokio::time::sleep(Duration::from_secs(4)).await;

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
                let nothing_in_flight = RelayId([9; 16]);
                for n in 0..2000 {
                    relay
                        .handle_message(bounce(
                            &format!("{nothing_in_flight}-0-{n}"),
                            "mallory@example.org",
                        ))
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
