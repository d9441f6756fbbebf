//! The delivery task: the one owner of the delivery state, woken by events
//! and by its own deadlines.
//!
//! Each turn of its loop it settles what waited out its bounce window, ends
//! what expired, times out unanswered probes and, when the [`Link`] lets it
//! send, gives every due job the [`route`] its knowledge calls for. Between
//! turns it handles one [`DeliveryEvent`] or one change of the link.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jid::Jid;
use minidom::Element;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::jobs::{AttemptId, Job, JobKey, JobState, JobTable};
use super::link::{Link, LinkStatus};
use super::route::{route, Fallback, Route};
use super::whereabouts::Whereabouts;
use super::{Composer, DeliveryEvent, DeliverySettings};
use crate::clock::unix_now;
use crate::logging::LoggedJid;
use crate::metrics::metrics;
use crate::relay::outbox::Outbox;
use crate::relay::record::{DeliveryStatus, RelayId, RelayRecord};
use crate::xmpp::privilege::PrivilegeVersion;

/// A probe not answered within this counts as unanswered.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs deliveries until the [`crate::relay::Relay`] that feeds it is gone.
pub struct DeliveryTask<C> {
    outbox: Outbox,
    composer: Arc<C>,
    outgoing: mpsc::Sender<Element>,
    settings: DeliverySettings,
    relays: HashMap<RelayId, RelayRecord>,
    jobs: JobTable,
    link: Link,
    whereabouts: Whereabouts,
    /// Deliveries held for an offline recipient, counted after each turn.
    held: Arc<AtomicU64>,
}

impl<C: Composer> DeliveryTask<C> {
    pub fn new(
        outbox: Outbox,
        composer: Arc<C>,
        outgoing: mpsc::Sender<Element>,
        settings: DeliverySettings,
    ) -> DeliveryTask<C> {
        DeliveryTask {
            outbox,
            composer,
            outgoing,
            settings,
            relays: HashMap::new(),
            jobs: JobTable::default(),
            link: Link::down(),
            whereabouts: Whereabouts::default(),
            held: Arc::default(),
        }
    }

    /// The count of deliveries held for offline recipients, kept up to
    /// date while the task runs (for `admin/stats`).
    pub fn held_counter(&self) -> Arc<AtomicU64> {
        self.held.clone()
    }

    /// Resumes the stored relays, then works until `events` closes.
    ///
    /// The link's state comes on a watch rather than as events, so that a
    /// connection is never missed however busy the task is; it is looked at
    /// first, so that what the server said on a new connection finds the
    /// task knowing of it.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<DeliveryEvent>,
        mut link: watch::Receiver<LinkStatus>,
    ) {
        self.resume_stored();
        loop {
            self.work(Instant::now()).await;
            let held = self
                .jobs
                .iter()
                .filter(|(_, job)| job.state == JobState::Held)
                .count();
            self.held.store(held as u64, Ordering::Relaxed);
            let wake = self.next_wake();
            tokio::select! {
                biased;
                changed = link.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let status = *link.borrow_and_update();
                    self.link_changed(status, Instant::now());
                }
                event = events.recv() => match event {
                    Some(event) => self.handle(event, Instant::now()),
                    None => return,
                },
                () = sleep_until(wake) => {}
            }
        }
    }

    /// Takes up the relays in the outbox that this task does not know yet:
    /// all of them at start, and at each new connection those another
    /// instance of a cluster accepted while it led.
    fn resume_stored(&mut self) {
        match self.outbox.all() {
            Ok(stored) => {
                let unknown: Vec<RelayRecord> = stored
                    .into_iter()
                    .filter(|relay| !self.relays.contains_key(&relay.id))
                    .collect();
                let resumed = unknown.len();
                for relay in unknown {
                    self.add(relay);
                }
                if resumed > 0 {
                    info!(relays = resumed, "resuming stored relays");
                }
            }
            Err(error) => {
                warn!(%error, "cannot read the outbox; stored relays wait for the next start")
            }
        }
    }

    fn add(&mut self, relay: RelayRecord) {
        // A relay accepted while the outbox was being read arrives twice.
        if self.relays.contains_key(&relay.id) {
            return;
        }
        let now = Instant::now();
        for (index, recipient) in relay.recipients.iter().enumerate() {
            if !recipient.status.is_final() {
                let key = JobKey {
                    relay: relay.id,
                    recipient: index,
                };
                let job = Job::due(recipient.jid.clone(), now, self.settings.first_retry);
                self.jobs.insert(key, job);
            }
        }
        self.relays.insert(relay.id, relay);
    }

    fn link_changed(&mut self, status: LinkStatus, now: Instant) {
        let known = self.link.status();
        let new_connection = status.connection != known.connection;
        if known.up && (!status.up || new_connection) {
            // Nothing sent is known to have arrived, and what the server
            // said no longer holds.
            self.link.went_down();
            self.whereabouts.forget();
            self.jobs.make_due(now, |job| {
                matches!(
                    job.state,
                    JobState::Sent { .. } | JobState::Held | JobState::Probing { .. }
                )
            });
        }
        if status.up && new_connection {
            self.link.came_up(status, now, &self.settings);
            self.resume_stored();
        }
    }

    fn handle(&mut self, event: DeliveryEvent, now: Instant) {
        match event {
            DeliveryEvent::Accepted(relay) => self.add(*relay),
            DeliveryEvent::FileDeleted(file) => self.cancel_file(file),
            DeliveryEvent::ServerKnown {
                connection,
                capabilities,
                privileges_announced,
            } => {
                debug!(?capabilities, privileges_announced, "server capabilities");
                let current = self.link.learned(
                    connection,
                    capabilities,
                    privileges_announced,
                    now,
                    &self.settings,
                );
                if current && (!capabilities.sees_presence || capabilities.stores_offline) {
                    self.release_held(|_| true, now);
                }
            }
            DeliveryEvent::Presence {
                jid,
                resource,
                available,
            } => {
                if available {
                    self.whereabouts.came_online(&jid, resource);
                    self.release_held(|recipient| recipient == jid, now);
                } else {
                    self.whereabouts.went_offline(&jid, &resource);
                }
            }
            DeliveryEvent::Bounce {
                attempt,
                from,
                condition,
            } => self.bounced(attempt, &from, &condition, now),
            DeliveryEvent::ProbeAnswer {
                attempt,
                from,
                reachable,
            } => self.probe_answer(attempt, &from, reachable, now),
        }
    }

    /// Ends every pending delivery of relays of `file`, which is gone.
    fn cancel_file(&mut self, file: crate::storage::FileId) {
        let cancelled: Vec<JobKey> = self
            .jobs
            .iter()
            .filter(|(key, _)| self.relays.get(&key.relay).is_some_and(|r| r.file == file))
            .map(|(key, _)| *key)
            .collect();
        if cancelled.is_empty() {
            return;
        }
        info!(%file, deliveries = cancelled.len(), "file deleted: its pending relays are cancelled");
        for key in cancelled {
            self.finish(key, DeliveryStatus::Failed("item-not-found".into()));
        }
    }

    /// A probe answer from the network: believed only from the recipient's side.
    fn probe_answer(&mut self, attempt: AttemptId, from: &Jid, reachable: bool, now: Instant) {
        let Some(job) = self.jobs.probing(attempt) else {
            debug!(%attempt, "answer to no probe in flight");
            return;
        };
        if !speaks_for(from, &job.recipient) {
            warn!(%attempt, from = %LoggedJid(from.as_str()), recipient = %LoggedJid(&job.recipient), "probe answer from someone other than the recipient; ignored");
            return;
        }
        self.probe_answered(attempt.job, reachable, now);
    }

    /// The probe of `key` is over: the job is due again, with what it taught.
    fn probe_answered(&mut self, key: JobKey, reachable: bool, now: Instant) {
        let Some(job) = self.jobs.get_mut(key) else {
            return;
        };
        let JobState::Probing { resource, .. } = &job.state else {
            return;
        };
        self.whereabouts
            .probe_answered(&job.recipient, resource, reachable);
        if reachable {
            debug!(relay = %key.relay, recipient = %LoggedJid(&job.recipient), %resource, "recipient answers; sending as the sender");
        } else {
            debug!(relay = %key.relay, recipient = %LoggedJid(&job.recipient), %resource, "resource gone");
        }
        job.state = JobState::Due(now);
    }

    fn release_held(&mut self, matches: impl Fn(&str) -> bool, now: Instant) {
        self.jobs.make_due(now, |job| {
            job.state == JobState::Held && matches(&job.recipient)
        });
    }

    fn bounced(&mut self, attempt: AttemptId, from: &Jid, condition: &str, now: Instant) {
        let key = attempt.job;
        let Some(job) = self.jobs.sent(attempt) else {
            debug!(%attempt, condition, "bounce for no message in flight");
            return;
        };
        let recipient = LoggedJid(&job.recipient);
        if !speaks_for(from, &job.recipient) {
            warn!(relay = %key.relay, %attempt, from = %LoggedJid(from.as_str()), %recipient, condition, "bounce from someone other than the recipient; ignored");
            return;
        }
        if is_permanent(condition) {
            warn!(relay = %key.relay, %recipient, condition, "delivery failed for good");
            self.finish(key, DeliveryStatus::Failed(condition.to_owned()));
            return;
        }
        let capabilities = self.link.capabilities();
        if capabilities.sees_presence && !capabilities.stores_offline {
            info!(relay = %key.relay, %recipient, condition, "bounced; holding until the recipient is online");
            self.whereabouts.bounced(&job.recipient);
            job.state = JobState::Held;
        } else {
            info!(relay = %key.relay, %recipient, condition, retry_in = ?job.backoff, "bounced; will retry");
            job.state = JobState::Due(now + job.backoff);
            job.backoff = (job.backoff * 2).min(self.settings.max_retry);
        }
    }

    /// Records a final status, tells the sender of a failure, forgets the job.
    fn finish(&mut self, key: JobKey, status: DeliveryStatus) {
        self.jobs.remove(key);
        if status == DeliveryStatus::Delivered {
            metrics().relays_delivered.inc();
        }
        if let DeliveryStatus::Failed(condition) = &status {
            if let Some(relay) = self.relays.get(&key.relay) {
                let report = self
                    .composer
                    .failure_report(relay, key.recipient, condition);
                if self.outgoing.try_send(report).is_err() {
                    warn!(relay = %key.relay, "cannot queue the failure report");
                }
            }
        }
        match self.outbox.set_status(key.relay, key.recipient, status) {
            Ok(Some(record)) if record.is_complete() => {
                info!(relay = %key.relay, "relay complete");
                self.relays.remove(&key.relay);
            }
            Ok(Some(record)) => {
                self.relays.insert(key.relay, record);
            }
            Ok(None) => {
                // Gone from the outbox: nothing of it is owed any more.
                self.relays.remove(&key.relay);
                self.jobs.remove_relay(key.relay);
            }
            Err(error) => {
                warn!(relay = %key.relay, %error, "cannot record a delivery; it will be retried after a restart")
            }
        }
    }

    /// Settles, expires and times out what is over, then sends what is due.
    async fn work(&mut self, now: Instant) {
        self.settle_delivered(now);
        self.end_expired();
        self.time_out_probes(now);
        if self.link.may_send(now) {
            self.send_due(now).await;
        }
    }

    /// A message that waited out the bounce window without an error arrived.
    fn settle_delivered(&mut self, now: Instant) {
        let window = self.settings.bounce_window;
        let delivered = self
            .jobs
            .select(|job| matches!(job.state, JobState::Sent { at } if at + window <= now));
        for key in delivered {
            debug!(relay = %key.relay, recipient = key.recipient, "delivered");
            self.finish(key, DeliveryStatus::Delivered);
        }
    }

    /// Once the file is gone, delivery ends.
    fn end_expired(&mut self) {
        let now = unix_now();
        let expired: Vec<JobKey> = self
            .jobs
            .iter()
            .filter(|(key, _)| self.relays[&key.relay].expires < now)
            .map(|(key, _)| *key)
            .collect();
        for key in expired {
            self.finish(key, DeliveryStatus::Failed("item-not-found".into()));
        }
    }

    fn time_out_probes(&mut self, now: Instant) {
        let unanswered = self.jobs.select(|job| {
            matches!(job.state, JobState::Probing { since, .. } if since + PROBE_TIMEOUT <= now)
        });
        for key in unanswered {
            self.probe_answered(key, false, now);
        }
    }

    async fn send_due(&mut self, now: Instant) {
        let due = self
            .jobs
            .select(|job| matches!(job.state, JobState::Due(at) if at <= now));
        for key in due {
            if !self.attempt(key, now).await {
                return;
            }
        }
    }

    /// The next attempt of `key`, by the route the task's knowledge calls
    /// for. False once the link's queue is closed (Satchel is stopping).
    async fn attempt(&mut self, key: JobKey, now: Instant) -> bool {
        let Some(job) = self.jobs.get_mut(key) else {
            return true;
        };
        let recipient = job.recipient.clone();
        match route(self.link.capabilities(), self.whereabouts.of(&recipient)) {
            Route::Hold => {
                debug!(relay = %key.relay, recipient = %LoggedJid(&recipient), "recipient offline; holding");
                job.state = JobState::Held;
                true
            }
            Route::Probe { resource } => {
                let resource = resource.to_owned();
                self.probe(key, resource, now).await
            }
            Route::AsSender(version) => {
                self.whereabouts.spend_probe_answer(&recipient);
                self.send(key, Some(version), now).await
            }
            Route::FromSatchel(fallback) => {
                if fallback == Fallback::NobodyKnownOnline {
                    info!(relay = %key.relay, recipient = %LoggedJid(&recipient), "sending from Satchel's own JID: {fallback}");
                }
                self.send(key, None, now).await
            }
        }
    }

    /// Asks `resource` of the recipient of `key` whether it is there.
    async fn probe(&mut self, key: JobKey, resource: String, now: Instant) -> bool {
        let Some(job) = self.jobs.get_mut(key) else {
            return true;
        };
        job.attempts += 1;
        let attempt = AttemptId {
            job: key,
            attempt: job.attempts,
        };
        let probe = self.composer.probe(
            &format!("{}/{resource}", job.recipient),
            &attempt.probe_id(),
        );
        job.state = JobState::Probing {
            resource,
            since: now,
        };
        self.outgoing.send(probe).await.is_ok()
    }

    /// Sends the message of `key`, as the sender when `as_sender` says how.
    async fn send(
        &mut self,
        key: JobKey,
        as_sender: Option<PrivilegeVersion>,
        now: Instant,
    ) -> bool {
        let (Some(job), Some(relay)) = (self.jobs.get_mut(key), self.relays.get(&key.relay)) else {
            return true;
        };
        job.attempts += 1;
        let attempt = AttemptId {
            job: key,
            attempt: job.attempts,
        };
        let message = self
            .composer
            .message(relay, key.recipient, &attempt.to_string(), as_sender);
        debug!(relay = %key.relay, recipient = %LoggedJid(&job.recipient), %attempt, as_sender = as_sender.is_some(), "sending");
        if self.outgoing.send(message).await.is_err() {
            return false;
        }
        job.state = JobState::Sent { at: now };
        true
    }

    /// When `work` next has something to do; `None` while only events can help.
    fn next_wake(&self) -> Option<Instant> {
        // Nothing is sent while the link is down: only events wake the task then.
        let sending_from = self.link.sending_from();
        self.jobs
            .iter()
            .filter_map(|(_, job)| match &job.state {
                JobState::Due(at) => sending_from.map(|from| (*at).max(from)),
                JobState::Sent { at } => Some(*at + self.settings.bounce_window),
                JobState::Probing { since, .. } => Some(*since + PROBE_TIMEOUT),
                JobState::Held => None,
            })
            .min()
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether an answer about `recipient` (a bare JID) from `from` can be
/// believed: it must come from the recipient (any resource) or from its
/// server (its domain), which is where RFC 6120 says a bounce comes from.
/// Anyone else who learned a message id (another recipient of the same
/// relay sees its stem) could otherwise fail a delivery, or claim that an
/// offline recipient is online so that its message vanishes.
fn speaks_for(from: &Jid, recipient: &str) -> bool {
    match from.node() {
        Some(_) => from.to_bare().as_str() == recipient,
        None => recipient
            .split_once('@')
            .is_some_and(|(_, domain)| domain == from.domain().as_str()),
    }
}

/// Error conditions after which retrying cannot help.
fn is_permanent(condition: &str) -> bool {
    matches!(
        condition,
        "item-not-found"
            | "not-allowed"
            | "forbidden"
            | "jid-malformed"
            | "bad-request"
            | "not-acceptable"
    )
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::relay::delivery::route::Capabilities;
    use crate::relay::record::samples::relay_to;
    use crate::storage::test_support::{service_test_store, TestStore};
    use crate::storage::Tree;

    struct TestComposer;

    impl Composer for TestComposer {
        fn probe(&self, recipient: &str, query_id: &str) -> Element {
            Element::builder("probe", "test")
                .attr(minidom::rxml::xml_ncname!("to").to_owned(), recipient)
                .attr(minidom::rxml::xml_ncname!("id").to_owned(), query_id)
                .build()
        }

        fn message(
            &self,
            relay: &RelayRecord,
            index: usize,
            message_id: &str,
            as_sender: Option<PrivilegeVersion>,
        ) -> Element {
            Element::builder("message", "jabber:component:accept")
                .attr(
                    minidom::rxml::xml_ncname!("to").to_owned(),
                    relay.recipients[index].jid.as_str(),
                )
                .attr(minidom::rxml::xml_ncname!("id").to_owned(), message_id)
                .attr(
                    minidom::rxml::xml_ncname!("from").to_owned(),
                    if as_sender.is_some() {
                        relay.sender.as_str()
                    } else {
                        "upload.example.org"
                    },
                )
                .build()
        }

        fn failure_report(&self, relay: &RelayRecord, index: usize, condition: &str) -> Element {
            Element::builder("report", "test")
                .attr(
                    minidom::rxml::xml_ncname!("to").to_owned(),
                    relay.sender_full.as_str(),
                )
                .attr(
                    minidom::rxml::xml_ncname!("about").to_owned(),
                    relay.recipients[index].jid.as_str(),
                )
                .attr(
                    minidom::rxml::xml_ncname!("condition").to_owned(),
                    condition,
                )
                .build()
        }
    }

    struct Harness {
        events: mpsc::Sender<DeliveryEvent>,
        link: watch::Sender<LinkStatus>,
        sent: mpsc::Receiver<Element>,
        outbox: Outbox,
        held: Arc<AtomicU64>,
        _store: TestStore,
    }

    const WINDOW: Duration = Duration::from_secs(30);

    fn start() -> Harness {
        let (outbox, store) = throwaway_outbox();
        start_with(outbox, store)
    }

    const SETTLE_TIME: Duration = Duration::from_secs(2);

    /// An outbox in a throwaway store, which must outlive it.
    fn throwaway_outbox() -> (Outbox, TestStore) {
        let t = service_test_store();
        (Outbox::new(t.store.open_tree(Tree::Relays).unwrap()), t)
    }

    fn start_with(outbox: Outbox, store: TestStore) -> Harness {
        let (out_tx, out_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(64);
        let (link, link_rx) = watch::channel(LinkStatus::default());
        let settings = DeliverySettings {
            bounce_window: WINDOW,
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(8),
            settle_time: SETTLE_TIME,
            settle_grace: Duration::from_millis(500),
        };
        let task = DeliveryTask::new(outbox.clone(), Arc::new(TestComposer), out_tx, settings);
        let held = task.held_counter();
        tokio::spawn(task.run(ev_rx, link_rx));
        Harness {
            events: ev_tx,
            link,
            sent: out_rx,
            outbox,
            held,
            _store: store,
        }
    }

    fn relay(recipients: &[&str]) -> RelayRecord {
        relay_to(recipients)
    }

    impl Harness {
        async fn accept(&self, relay: &RelayRecord) {
            self.outbox.insert(relay).unwrap();
            self.events
                .send(DeliveryEvent::Accepted(Box::new(relay.clone())))
                .await
                .unwrap();
        }

        async fn presence(&self, jid: &str, resource: &str, available: bool) {
            self.event(DeliveryEvent::Presence {
                jid: jid.into(),
                resource: resource.into(),
                available,
            })
            .await;
        }

        /// An error message for `message_id`, as `from` sends it.
        async fn bounce(&self, message_id: &str, from: &str, condition: &str) {
            self.event(DeliveryEvent::Bounce {
                attempt: message_id.parse().unwrap(),
                from: from.parse().unwrap(),
                condition: condition.into(),
            })
            .await;
        }

        /// The probed resource's answer to `probe`.
        async fn answer(&self, probe: &Element, reachable: bool) {
            self.event(DeliveryEvent::ProbeAnswer {
                attempt: AttemptId::of_probe(probe.attr("id").unwrap()).unwrap(),
                from: probe.attr("to").unwrap().parse().unwrap(),
                reachable,
            })
            .await;
        }

        async fn event(&self, event: DeliveryEvent) {
            self.events.send(event).await.unwrap();
        }

        async fn next(&mut self, within: Duration) -> Option<Element> {
            tokio::time::timeout(within, self.sent.recv())
                .await
                .ok()
                .flatten()
        }

        /// The link comes up: a new connection.
        fn link_up(&self) {
            self.link.send_modify(|status| {
                status.up = true;
                status.connection += 1;
            });
        }

        fn link_down(&self) {
            self.link.send_modify(|status| status.up = false);
        }

        /// The server's answer, with its privilege announcement if `announced`.
        async fn server(&self, capabilities: Capabilities, announced: bool) {
            self.event(DeliveryEvent::ServerKnown {
                connection: self.link.borrow().connection,
                capabilities,
                privileges_announced: announced,
            })
            .await;
        }

        /// All the server says on connecting is in (its announcement, even
        /// of no privilege, and its answer).
        async fn capabilities(
            &self,
            send_as_sender: bool,
            sees_presence: bool,
            stores_offline: bool,
        ) {
            let capabilities = Capabilities {
                send_as: send_as_sender.then_some(PrivilegeVersion::V2),
                sees_presence,
                stores_offline,
            };
            self.server(capabilities, true).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn delivers_once_the_link_is_up_and_settles_after_the_window() {
        let mut h = start();
        let relay = relay(&["bob@example.org"]);
        h.accept(&relay).await;
        assert!(
            h.next(Duration::from_secs(10)).await.is_none(),
            "nothing is sent without a link"
        );
        h.link_up();
        let message = h
            .next(Duration::from_secs(3))
            .await
            .expect("sent after the settle time");
        assert_eq!(message.attr("to"), Some("bob@example.org"));
        assert_eq!(message.attr("from"), Some("upload.example.org"));
        tokio::time::sleep(WINDOW + Duration::from_secs(1)).await;
        assert!(
            h.outbox.all().unwrap().is_empty(),
            "delivered relays leave the outbox"
        );
        assert!(
            h.next(Duration::from_secs(60)).await.is_none(),
            "delivered once"
        );
    }

    /// In a cluster another instance may have accepted relays into the
    /// shared outbox while it led: they are taken up at the next connection.
    #[tokio::test(start_paused = true)]
    async fn relays_stored_by_another_instance_go_out_on_the_next_connection() {
        let mut h = start();
        // The task has read the outbox (empty) by now.
        assert!(h.next(Duration::from_secs(10)).await.is_none());
        let relay = relay(&["bob@example.org"]);
        h.outbox.insert(&relay).unwrap();
        h.link_up();
        let message = h
            .next(Duration::from_secs(3))
            .await
            .expect("sent once connected");
        assert_eq!(message.attr("to"), Some("bob@example.org"));
        h.link_down();
        h.link_up();
        let again = h.next(Duration::from_secs(3)).await.expect("resent");
        // Ids are relay-recipient-attempt: the same relay and recipient.
        let stem = |message: &Element| {
            let id = message.attr("id").unwrap().to_owned();
            id.rsplit_once('-').unwrap().0.to_owned()
        };
        assert_eq!(
            stem(&again),
            stem(&message),
            "not a second copy of the relay"
        );
        assert!(
            h.next(Duration::from_secs(3)).await.is_none(),
            "taken up once, however often the link comes back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sends_as_the_sender_when_privileged() {
        let mut h = start();
        h.link_up();
        h.capabilities(true, false, true).await;
        h.accept(&relay(&["bob@example.org"])).await;
        let message = h.next(Duration::from_secs(1)).await.unwrap();
        assert_eq!(message.attr("from"), Some("alice@example.org"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounce_is_retried_with_growing_delays() {
        let mut h = start();
        h.link_up();
        h.capabilities(false, false, false).await;
        h.accept(&relay(&["bob@example.org"])).await;
        let mut gaps = Vec::new();
        let mut last = Instant::now();
        for _ in 0..5 {
            let message = h.next(Duration::from_secs(60)).await.expect("retried");
            gaps.push((Instant::now() - last).as_secs());
            last = Instant::now();
            let id = message.attr("id").unwrap().to_owned();
            h.bounce(&id, "bob@example.org", "service-unavailable")
                .await;
        }
        assert_eq!(
            gaps,
            vec![0, 1, 2, 4, 8],
            "doubling from 1 s, capped at 8 s"
        );
        assert_eq!(h.outbox.all().unwrap().len(), 1, "still owed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_ends_delivery_and_tells_the_sender() {
        let mut h = start();
        h.link_up();
        h.capabilities(false, false, true).await;
        h.accept(&relay(&["nobody@example.org"])).await;
        let message = h.next(Duration::from_secs(1)).await.unwrap();
        let id = message.attr("id").unwrap().to_owned();
        h.bounce(&id, "nobody@example.org", "item-not-found").await;
        let report = h.next(Duration::from_secs(1)).await.unwrap();
        assert_eq!(report.attr("to"), Some("alice@example.org/phone"));
        assert_eq!(report.attr("condition"), Some("item-not-found"));
        assert!(h.outbox.all().unwrap().is_empty());
        assert!(
            h.next(Duration::from_secs(120)).await.is_none(),
            "not retried"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn deleting_the_file_cancels_what_is_owed_and_tells_the_sender() {
        let mut h = start();
        // The link is down: both deliveries are still owed.
        let relay = relay(&["bob@example.org", "carol@example.org"]);
        h.accept(&relay).await;
        h.event(DeliveryEvent::FileDeleted(crate::storage::FileId([9; 16])))
            .await;
        assert_eq!(h.outbox.all().unwrap().len(), 1, "another file's deletion");
        h.event(DeliveryEvent::FileDeleted(relay.file)).await;
        for _ in 0..2 {
            let report = h.next(Duration::from_secs(1)).await.unwrap();
            assert_eq!(report.attr("to"), Some("alice@example.org/phone"));
            assert_eq!(report.attr("condition"), Some("item-not-found"));
        }
        assert!(h.outbox.all().unwrap().is_empty());
        h.link_up();
        h.capabilities(false, false, true).await;
        assert!(
            h.next(Duration::from_secs(120)).await.is_none(),
            "nothing is sent of a deleted file"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_recipient_or_its_server_can_bounce_a_message() {
        let mut h = start();
        h.link_up();
        h.capabilities(false, false, true).await;
        h.accept(&relay(&["bob@example.org", "carol@example.org"]))
            .await;
        let mut ids = HashMap::new();
        for _ in 0..2 {
            let message = h.next(Duration::from_secs(1)).await.unwrap();
            ids.insert(
                message.attr("to").unwrap().to_owned(),
                message.attr("id").unwrap().to_owned(),
            );
        }
        // carol saw the stem of the ids in her own message; she cannot fail bob's.
        for spoofer in [
            "carol@example.org/phone",
            "evil.example",
            "bob@evil.example",
        ] {
            h.bounce(&ids["bob@example.org"], spoofer, "item-not-found")
                .await;
        }
        // carol's own server can.
        h.bounce(&ids["carol@example.org"], "example.org", "item-not-found")
            .await;
        let report = h
            .next(Duration::from_secs(1))
            .await
            .expect("carol's failure reported");
        assert!(
            report.attr("about") == Some("carol@example.org"),
            "{report:?}"
        );
        assert!(
            h.next(Duration::from_secs(1)).await.is_none(),
            "bob's delivery unharmed"
        );
        tokio::time::sleep(WINDOW).await;
        assert!(
            h.outbox.all().unwrap().is_empty(),
            "bob's message counts as delivered"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_answer_from_someone_else_does_not_make_a_recipient_online() {
        let mut h = start();
        tokio::task::yield_now().await;
        h.link_up();
        h.capabilities(true, true, false).await;
        h.presence("bob@example.org", "laptop", true).await;
        h.accept(&relay(&["bob@example.org"])).await;
        let probe = h.next(Duration::from_secs(1)).await.unwrap();
        assert_eq!(probe.name(), "probe");
        h.event(DeliveryEvent::ProbeAnswer {
            attempt: AttemptId::of_probe(probe.attr("id").unwrap()).unwrap(),
            from: "carol@example.org/phone".parse().unwrap(),
            reachable: true,
        })
        .await;
        let message = h
            .next(Duration::from_secs(11))
            .await
            .expect("sent once the probe timed out");
        assert_eq!(
            message.attr("from"),
            Some("upload.example.org"),
            "a message that can bounce, not one that vanishes"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn offline_recipients_are_held_until_they_come_online() {
        let mut h = start();
        h.link_up();
        h.capabilities(true, true, false).await;
        h.accept(&relay(&["bob@example.org"])).await;
        // Presence unknown and no offline storage: a message that can bounce.
        let probe = h.next(Duration::from_secs(1)).await.unwrap();
        assert_eq!(probe.attr("from"), Some("upload.example.org"));
        let id = probe.attr("id").unwrap().to_owned();
        h.bounce(&id, "bob@example.org", "service-unavailable")
            .await;
        assert!(
            h.next(Duration::from_secs(300)).await.is_none(),
            "held while bob is offline"
        );
        assert_eq!(h.held.load(Ordering::Relaxed), 1, "counted as held");
        h.presence("bob@example.org", "laptop", true).await;
        let probe = h
            .next(Duration::from_secs(1))
            .await
            .expect("bob's resource is probed");
        assert_eq!(probe.name(), "probe");
        assert_eq!(probe.attr("to"), Some("bob@example.org/laptop"));
        h.answer(&probe, true).await;
        let message = h
            .next(Duration::from_secs(1))
            .await
            .expect("sent when bob answers");
        assert_eq!(message.attr("to"), Some("bob@example.org"));
        assert_eq!(
            message.attr("from"),
            Some("alice@example.org"),
            "as the sender once online"
        );
        assert_eq!(h.held.load(Ordering::Relaxed), 0, "no longer held");
    }

    #[tokio::test(start_paused = true)]
    async fn a_resource_that_does_not_answer_gets_a_message_that_can_bounce() {
        let mut h = start();
        tokio::task::yield_now().await;
        h.link_up();
        h.capabilities(true, true, false).await;
        // Seen online once; gone since without a word (ejabberd after a dropped connection).
        h.presence("bob@example.org", "phone", true).await;
        h.accept(&relay(&["bob@example.org"])).await;
        let probe = h.next(Duration::from_secs(1)).await.unwrap();
        assert_eq!(probe.name(), "probe");
        let message = h
            .next(Duration::from_secs(11))
            .await
            .expect("sent after the probe timed out");
        assert_eq!(
            message.attr("from"),
            Some("upload.example.org"),
            "not as the sender"
        );
        // An explicit error answer is just as conclusive.
        h.presence("bob@example.org", "tablet", true).await;
        h.accept(&relay(&["bob@example.org"])).await;
        let probe = h.next(Duration::from_secs(1)).await.unwrap();
        h.answer(&probe, false).await;
        let message = h.next(Duration::from_secs(1)).await.unwrap();
        assert_eq!(message.attr("from"), Some("upload.example.org"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_recipient_seen_leaving_is_held_without_a_probe() {
        let mut h = start();
        h.link_up();
        h.capabilities(true, true, false).await;
        // Let the task read its (empty) outbox before the relay is stored.
        tokio::task::yield_now().await;
        for available in [true, false] {
            h.presence("bob@example.org", "laptop", available).await;
        }
        h.accept(&relay(&["bob@example.org"])).await;
        assert!(h.next(Duration::from_secs(300)).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_stores_offline_messages_gets_them_at_once() {
        let mut h = start();
        h.link_up();
        h.capabilities(true, true, true).await;
        h.accept(&relay(&["bob@example.org"])).await;
        assert!(h.next(Duration::from_secs(1)).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn messages_in_flight_when_the_link_drops_are_sent_again() {
        let mut h = start();
        h.link_up();
        h.capabilities(false, false, true).await;
        h.accept(&relay(&["bob@example.org", "carol@example.org"]))
            .await;
        assert!(h.next(Duration::from_secs(1)).await.is_some());
        assert!(h.next(Duration::from_secs(1)).await.is_some());
        h.link_down();
        assert!(
            h.next(Duration::from_secs(60)).await.is_none(),
            "nothing while down"
        );
        h.link_up();
        h.capabilities(false, false, true).await;
        let again: HashSet<String> = [
            h.next(Duration::from_secs(1)).await.unwrap(),
            h.next(Duration::from_secs(1)).await.unwrap(),
        ]
        .iter()
        .map(|m| m.attr("to").unwrap().to_owned())
        .collect();
        assert_eq!(again.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stored_relays_are_resumed_at_start() {
        let (outbox, store) = throwaway_outbox();
        let stored = relay(&["bob@example.org"]);
        outbox.insert(&stored).unwrap();
        let mut h = start_with(outbox, store);
        h.link_up();
        h.capabilities(false, false, true).await;
        let message = h.next(Duration::from_secs(1)).await.expect("resumed");
        assert!(message
            .attr("id")
            .unwrap()
            .starts_with(&stored.id.to_string()));
    }

    fn plain_server() -> Capabilities {
        Capabilities::default()
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_privilege_announcement_sending_waits_for_the_settle_time() {
        let mut h = start();
        tokio::task::yield_now().await;
        h.link_up();
        h.server(plain_server(), false).await;
        h.accept(&relay(&["bob@example.org"])).await;
        assert!(
            h.next(SETTLE_TIME - Duration::from_millis(100))
                .await
                .is_none(),
            "an announcement may still come"
        );
        let message = h
            .next(Duration::from_millis(200))
            .await
            .expect("sent once the settle time is over");
        assert_eq!(message.attr("from"), Some("upload.example.org"));
    }

    /// The server's answer handled before its announcement and the presence
    /// that came with it (as happens under load, stanzas being handled
    /// concurrently): the message still goes out as the sender.
    #[tokio::test(start_paused = true)]
    async fn an_announcement_handled_after_the_answer_is_waited_for() {
        let mut h = start();
        tokio::task::yield_now().await;
        h.link_up();
        h.server(plain_server(), false).await;
        h.accept(&relay(&["bob@example.org"])).await;
        assert!(h.next(Duration::from_secs(1)).await.is_none());
        h.capabilities(true, true, false).await;
        h.presence("bob@example.org", "phone", true).await;
        let probe = h.next(Duration::from_secs(1)).await.expect("bob is probed");
        assert_eq!(probe.name(), "probe");
        h.answer(&probe, true).await;
        let message = h.next(Duration::from_secs(1)).await.unwrap();
        assert_eq!(message.attr("from"), Some("alice@example.org"));
    }

    #[tokio::test(start_paused = true)]
    async fn what_an_earlier_connection_learned_late_is_ignored() {
        let mut h = start();
        tokio::task::yield_now().await;
        h.link_up();
        h.link_down();
        h.link_up();
        // The first connection's answer, handled only now.
        h.event(DeliveryEvent::ServerKnown {
            connection: 1,
            capabilities: Capabilities {
                send_as: Some(PrivilegeVersion::V2),
                sees_presence: false,
                stores_offline: true,
            },
            privileges_announced: true,
        })
        .await;
        h.accept(&relay(&["bob@example.org"])).await;
        assert!(h
            .next(SETTLE_TIME - Duration::from_millis(100))
            .await
            .is_none());
        let message = h.next(Duration::from_millis(200)).await.unwrap();
        assert_eq!(message.attr("from"), Some("upload.example.org"));
    }
}
