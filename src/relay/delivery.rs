//! Getting each relayed message to each recipient, at least once.
//!
//! One task owns the delivery state: which (relay, recipient) pairs are due,
//! which were sent and are waiting out the bounce window, which are held
//! until their recipient comes online. Everything else talks to it through
//! [`DeliveryEvent`]s, so there is no locking and the order of events is the
//! order of decisions.
//!
//! Bounces alone cannot prove delivery: a server may swallow a message for an
//! offline user (Prosody 0.12 with `mod_privilege` and no offline storage
//! drops it silently; so does ejabberd 23.01, whose bounce goes to the
//! sender). So a message counts as delivered only when the bounce window
//! passed without an error; without offline storage, a message goes out as
//! the sender only to a recipient known to be online (a message from the
//! component bounces instead of vanishing); and where Satchel sees presence,
//! a message for a recipient known to be offline is held until they return.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jid::Jid;
use minidom::Element;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::outbox::{DeliveryStatus, Outbox, RelayId, RelayRecord};
use crate::clock::unix_now;
use crate::logging::LoggedJid;
use crate::xmpp::privilege::PrivilegeVersion;

/// What the delivery task learns from the rest of Satchel.
#[derive(Debug)]
pub enum DeliveryEvent {
    /// A relay was stored and acknowledged: deliver it.
    Accepted(RelayRecord),
    /// The server returned one of our messages with an error; `from` is
    /// who says so.
    Bounce {
        message_id: String,
        from: Jid,
        condition: String,
    },
    /// The component link is up (again).
    LinkUp,
    /// The component link is down: nothing sent is known to have arrived.
    LinkDown,
    /// What the server lets Satchel do and what it does itself.
    ServerCapabilities(Capabilities),
    /// The answer to a probe of a recipient's resource, from `from`:
    /// whether the resource answered.
    ProbeAnswer {
        query_id: String,
        from: Jid,
        reachable: bool,
    },
    /// A recipient's resource came online or went away (needs presence permission).
    Presence {
        jid: String,
        resource: String,
        available: bool,
    },
}

/// What Satchel knows of its server on the current link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// XEP-0356 outgoing message permission, in the server's version of the
    /// protocol: messages go out as the sender.
    pub send_as: Option<PrivilegeVersion>,
    /// XEP-0356 presence permission: Satchel sees who is online.
    pub sees_presence: bool,
    /// The server keeps messages for offline users (`msgoffline`).
    pub stores_offline: bool,
}

/// Builds the stanzas the delivery task sends.
pub trait Composer: Send + Sync + 'static {
    /// The message for recipient `index` of `relay`, with id `message_id`.
    fn message(
        &self,
        relay: &RelayRecord,
        index: usize,
        message_id: &str,
        capabilities: Capabilities,
    ) -> Element;
    /// Tells the sender that delivery to recipient `index` failed for good.
    fn failure_report(&self, relay: &RelayRecord, index: usize, condition: &str) -> Element;
    /// A disco#info query to `recipient` (a full JID), with id `query_id`.
    fn probe(&self, recipient: &str, query_id: &str) -> Element;
}

/// Prefix of the ids of probes, so that their answers find their way back.
pub const PROBE_ID_PREFIX: &str = "satchel-probe-";
/// A probe not answered within this counts as unanswered.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Resources remembered per user: a server has a few per user; a remote
/// one could claim any number.
const MAX_RESOURCES_PER_JID: usize = 32;

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// How long a sent message may still bounce before it counts as delivered.
    pub bounce_window: Duration,
    pub first_retry: Duration,
    pub max_retry: Duration,
    /// After (re)connecting, how long to wait for the server's privilege
    /// announcement and disco answer before sending anyway.
    pub settle_time: Duration,
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

#[derive(Debug)]
enum JobState {
    Due(Instant),
    /// Asking one of the recipient's resources whether it is really there.
    Probing {
        query_id: String,
        resource: String,
        since: Instant,
    },
    Sent {
        message_id: String,
        at: Instant,
    },
    /// Waiting for the recipient to come online.
    Held,
}

#[derive(Debug)]
struct Job {
    state: JobState,
    attempts: u32,
    backoff: Duration,
}

type JobKey = (RelayId, usize);

/// Runs deliveries until the event channel closes.
pub struct DeliveryTask<C> {
    outbox: Outbox,
    composer: Arc<C>,
    outgoing: mpsc::Sender<Element>,
    settings: DeliverySettings,
    relays: HashMap<RelayId, RelayRecord>,
    jobs: HashMap<JobKey, Job>,
    link_up: bool,
    /// Sending starts at this instant after a (re)connection.
    settled_at: Option<Instant>,
    capabilities: Capabilities,
    /// Bare JID -> its available resources, when presence is visible.
    online: HashMap<String, HashSet<String>>,
    /// Recipients seen going offline, or whose message bounced, while
    /// presence is visible: their messages wait for them to come back.
    known_offline: HashSet<String>,
    /// Recipients whose resource just answered a probe: the next message to
    /// them goes out as the sender without another probe.
    confirmed_online: HashSet<String>,
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
            jobs: HashMap::new(),
            link_up: false,
            settled_at: None,
            capabilities: Capabilities::default(),
            online: HashMap::new(),
            known_offline: HashSet::new(),
            confirmed_online: HashSet::new(),
        }
    }

    /// Resumes the stored relays, then handles events until `events` closes.
    pub async fn run(mut self, mut events: mpsc::Receiver<DeliveryEvent>) {
        match self.outbox.all() {
            Ok(stored) => {
                if !stored.is_empty() {
                    info!(relays = stored.len(), "resuming stored relays");
                }
                for relay in stored {
                    self.add(relay);
                }
            }
            Err(error) => {
                warn!(%error, "cannot read the outbox; stored relays wait for the next start")
            }
        }
        loop {
            self.work(Instant::now()).await;
            let wake = self.next_wake();
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.handle(event, Instant::now()),
                    None => return,
                },
                () = sleep_until(wake) => {}
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
                self.jobs.insert(
                    (relay.id, index),
                    Job {
                        state: JobState::Due(now),
                        attempts: 0,
                        backoff: self.settings.first_retry,
                    },
                );
            }
        }
        self.relays.insert(relay.id, relay);
    }

    fn handle(&mut self, event: DeliveryEvent, now: Instant) {
        match event {
            DeliveryEvent::Accepted(relay) => self.add(relay),
            DeliveryEvent::LinkUp => {
                self.link_up = true;
                self.settled_at = Some(now + self.settings.settle_time);
            }
            DeliveryEvent::LinkDown => {
                self.link_up = false;
                self.settled_at = None;
                self.capabilities = Capabilities::default();
                self.online.clear();
                self.known_offline.clear();
                self.confirmed_online.clear();
                for job in self.jobs.values_mut() {
                    if matches!(
                        job.state,
                        JobState::Sent { .. } | JobState::Held | JobState::Probing { .. }
                    ) {
                        job.state = JobState::Due(now);
                    }
                }
            }
            DeliveryEvent::ServerCapabilities(capabilities) => {
                debug!(?capabilities, "server capabilities");
                self.capabilities = capabilities;
                self.settled_at = Some(now);
                if !capabilities.sees_presence || capabilities.stores_offline {
                    self.release_held(|_| true, now);
                }
            }
            DeliveryEvent::Presence {
                jid,
                resource,
                available,
            } => self.presence(jid, resource, available, now),
            DeliveryEvent::Bounce {
                message_id,
                from,
                condition,
            } => self.bounced(&message_id, &from, &condition, now),
            DeliveryEvent::ProbeAnswer {
                query_id,
                from,
                reachable,
            } => self.probe_answer(&query_id, &from, reachable, now),
        }
    }

    fn presence(&mut self, jid: String, resource: String, available: bool, now: Instant) {
        if available {
            let resources = self.online.entry(jid.clone()).or_default();
            if resources.len() < MAX_RESOURCES_PER_JID {
                resources.insert(resource);
            } else if !resources.contains(&resource) {
                debug!(jid = %LoggedJid(&jid), "too many resources; not remembering another");
            }
            self.known_offline.remove(&jid);
            self.release_held(|recipient| recipient == jid, now);
        } else {
            // An entry goes once its last resource does: the map holds who is online.
            let last_gone = self.online.get_mut(&jid).is_none_or(|resources| {
                resources.remove(&resource);
                resources.is_empty()
            });
            if last_gone {
                self.online.remove(&jid);
                self.known_offline.insert(jid);
            }
        }
    }

    /// A probe answer from the network: believed only from the recipient's side.
    fn probe_answer(&mut self, query_id: &str, from: &Jid, reachable: bool, now: Instant) {
        let Some(key) = self.jobs.iter().find_map(|(key, job)| match &job.state {
            JobState::Probing { query_id: sent, .. } if sent == query_id => Some(*key),
            _ => None,
        }) else {
            debug!(query_id, "answer to no probe in flight");
            return;
        };
        let recipient = &self.relays[&key.0].recipients[key.1].jid;
        if !speaks_for(from, recipient) {
            warn!(relay = %key.0, query_id, from = %LoggedJid(from.as_str()), recipient = %LoggedJid(recipient), "probe answer from someone other than the recipient; ignored");
            return;
        }
        self.probe_answered(query_id, reachable, now);
    }

    fn probe_answered(&mut self, query_id: &str, reachable: bool, now: Instant) {
        let Some((key, resource)) = self.jobs.iter().find_map(|(key, job)| match &job.state {
            JobState::Probing {
                query_id: sent,
                resource,
                ..
            } if sent == query_id => Some((*key, resource.clone())),
            _ => None,
        }) else {
            return;
        };
        let recipient = self.relays[&key.0].recipients[key.1].jid.clone();
        let job = self.jobs.get_mut(&key).expect("found above");
        if reachable {
            debug!(relay = %key.0, recipient = %LoggedJid(&recipient), %resource, "recipient answers; sending as the sender");
            job.state = JobState::Due(now);
            self.confirmed_online.insert(recipient);
        } else {
            debug!(relay = %key.0, recipient = %LoggedJid(&recipient), %resource, "resource gone");
            if let Some(resources) = self.online.get_mut(&recipient) {
                resources.remove(&resource);
            }
            job.state = JobState::Due(now);
        }
    }

    fn release_held(&mut self, matches: impl Fn(&str) -> bool, now: Instant) {
        for ((relay, index), job) in self.jobs.iter_mut() {
            let recipient = &self.relays[relay].recipients[*index].jid;
            if matches!(job.state, JobState::Held) && matches(recipient) {
                job.state = JobState::Due(now);
            }
        }
    }

    fn bounced(&mut self, message_id: &str, from: &Jid, condition: &str, now: Instant) {
        let Some(key) = self.jobs.iter().find_map(|(key, job)| match &job.state {
            JobState::Sent {
                message_id: sent, ..
            } if sent == message_id => Some(*key),
            _ => None,
        }) else {
            debug!(message_id, condition, "bounce for no message in flight");
            return;
        };
        let recipient = self.relays[&key.0].recipients[key.1].jid.clone();
        if !speaks_for(from, &recipient) {
            warn!(relay = %key.0, message_id, from = %LoggedJid(from.as_str()), recipient = %LoggedJid(&recipient), condition, "bounce from someone other than the recipient; ignored");
            return;
        }
        if is_permanent(condition) {
            warn!(relay = %key.0, recipient = %LoggedJid(&recipient), condition, "delivery failed for good");
            self.finish(key, DeliveryStatus::Failed(condition.to_owned()));
            return;
        }
        let job = self.jobs.get_mut(&key).expect("found above");
        if self.capabilities.sees_presence && !self.capabilities.stores_offline {
            info!(relay = %key.0, recipient = %LoggedJid(&recipient), condition, "bounced; holding until the recipient is online");
            self.known_offline.insert(recipient);
            job.state = JobState::Held;
        } else {
            info!(relay = %key.0, recipient = %LoggedJid(&recipient), condition, retry_in = ?job.backoff, "bounced; will retry");
            job.state = JobState::Due(now + job.backoff);
            job.backoff = (job.backoff * 2).min(self.settings.max_retry);
        }
    }

    /// Records a final status, tells the sender of a failure, forgets the job.
    fn finish(&mut self, key: JobKey, status: DeliveryStatus) {
        self.jobs.remove(&key);
        if let DeliveryStatus::Failed(condition) = &status {
            if let Some(relay) = self.relays.get(&key.0) {
                let report = self.composer.failure_report(relay, key.1, condition);
                if self.outgoing.try_send(report).is_err() {
                    warn!(relay = %key.0, "cannot queue the failure report");
                }
            }
        }
        match self.outbox.set_status(key.0, key.1, status) {
            Ok(Some(record)) if record.is_complete() => {
                info!(relay = %key.0, "relay complete");
                self.relays.remove(&key.0);
            }
            Ok(Some(record)) => {
                self.relays.insert(key.0, record);
            }
            Ok(None) => {
                // Gone from the outbox: nothing of it is owed any more.
                self.relays.remove(&key.0);
                self.jobs.retain(|(relay, _), _| *relay != key.0);
            }
            Err(error) => {
                warn!(relay = %key.0, %error, "cannot record a delivery; it will be retried after a restart")
            }
        }
    }

    /// Sends what is due and settles what waited out its bounce window.
    async fn work(&mut self, now: Instant) {
        let delivered: Vec<JobKey> = self
            .jobs
            .iter()
            .filter(|(_, job)| matches!(job.state, JobState::Sent { at, .. } if at + self.settings.bounce_window <= now))
            .map(|(key, _)| *key)
            .collect();
        for key in delivered {
            debug!(relay = %key.0, recipient = key.1, "delivered");
            self.finish(key, DeliveryStatus::Delivered);
        }

        let expired: Vec<JobKey> = self
            .jobs
            .keys()
            .filter(|(relay, _)| self.relays[relay].expires < unix_now())
            .copied()
            .collect();
        for key in expired {
            self.finish(key, DeliveryStatus::Failed("item-not-found".into()));
        }

        let unanswered: Vec<String> = self
            .jobs
            .values()
            .filter_map(|job| match &job.state {
                JobState::Probing {
                    query_id, since, ..
                } if *since + PROBE_TIMEOUT <= now => Some(query_id.clone()),
                _ => None,
            })
            .collect();
        for query_id in unanswered {
            self.probe_answered(&query_id, false, now);
        }

        if !self.link_up || self.settled_at.is_none_or(|at| at > now) {
            return;
        }
        let due: Vec<JobKey> = self
            .jobs
            .iter()
            .filter(|(_, job)| matches!(job.state, JobState::Due(at) if at <= now))
            .map(|(key, _)| *key)
            .collect();
        for key in due {
            let recipient = self.relays[&key.0].recipients[key.1].jid.clone();
            let mut capabilities = self.capabilities;
            if !capabilities.stores_offline {
                if capabilities.sees_presence && self.known_offline.contains(&recipient) {
                    debug!(relay = %key.0, recipient = %LoggedJid(&recipient), "recipient offline; holding");
                    self.jobs.get_mut(&key).expect("listed above").state = JobState::Held;
                    continue;
                }
                // Without offline storage a privileged message to an absent
                // user vanishes (no bounce on either server, and ejabberd
                // does not report clients that drop their connection); a
                // message from the component bounces. So a message goes out
                // as the sender only once one of the recipient's resources
                // answered a probe; with none known, from the component.
                if capabilities.send_as.is_some() && !self.confirmed_online.remove(&recipient) {
                    let known = self
                        .online
                        .get(&recipient)
                        .and_then(|resources| resources.iter().next().cloned());
                    match known {
                        Some(resource) => {
                            let job = self.jobs.get_mut(&key).expect("listed above");
                            job.attempts += 1;
                            let query_id =
                                format!("{PROBE_ID_PREFIX}{}-{}-{}", key.0, key.1, job.attempts);
                            let probe = self
                                .composer
                                .probe(&format!("{recipient}/{resource}"), &query_id);
                            job.state = JobState::Probing {
                                query_id,
                                resource,
                                since: now,
                            };
                            if self.outgoing.send(probe).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        None => capabilities.send_as = None,
                    }
                }
            }
            let job = self.jobs.get_mut(&key).expect("listed above");
            job.attempts += 1;
            let message_id = format!("{}-{}-{}", key.0, key.1, job.attempts);
            let message =
                self.composer
                    .message(&self.relays[&key.0], key.1, &message_id, capabilities);
            debug!(relay = %key.0, recipient = %LoggedJid(&recipient), %message_id, "sending");
            if self.outgoing.send(message).await.is_err() {
                return;
            }
            job.state = JobState::Sent {
                message_id,
                at: now,
            };
        }
    }

    /// When `work` next has something to do; `None` while only events can help.
    fn next_wake(&self) -> Option<Instant> {
        // Nothing is sent while the link is down: only events wake the task then.
        let sending_from = self.settled_at.filter(|_| self.link_up);
        self.jobs
            .values()
            .filter_map(|job| match &job.state {
                JobState::Due(at) => sending_from.map(|from| (*at).max(from)),
                JobState::Sent { at, .. } => Some(*at + self.settings.bounce_window),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::outbox::Recipient;
    use crate::storage::FileId;

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
            capabilities: Capabilities,
        ) -> Element {
            Element::builder("message", "jabber:component:accept")
                .attr(
                    minidom::rxml::xml_ncname!("to").to_owned(),
                    relay.recipients[index].jid.as_str(),
                )
                .attr(minidom::rxml::xml_ncname!("id").to_owned(), message_id)
                .attr(
                    minidom::rxml::xml_ncname!("from").to_owned(),
                    if capabilities.send_as.is_some() {
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
        sent: mpsc::Receiver<Element>,
        outbox: Outbox,
        _db: sled::Db,
    }

    const WINDOW: Duration = Duration::from_secs(30);

    fn start() -> Harness {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let outbox = Outbox::new(db.open_tree("relays").unwrap());
        start_with(outbox, db)
    }

    fn start_with(outbox: Outbox, db: sled::Db) -> Harness {
        let (out_tx, out_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(64);
        let settings = DeliverySettings {
            bounce_window: WINDOW,
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(8),
            settle_time: Duration::from_secs(2),
        };
        let task = DeliveryTask::new(outbox.clone(), Arc::new(TestComposer), out_tx, settings);
        tokio::spawn(task.run(ev_rx));
        Harness {
            events: ev_tx,
            sent: out_rx,
            outbox,
            _db: db,
        }
    }

    fn relay(recipients: &[&str]) -> RelayRecord {
        RelayRecord {
            id: RelayId::random(),
            sender: "alice@example.org".into(),
            sender_full: "alice@example.org/phone".into(),
            request_id: "m1".into(),
            file: FileId([1; 16]),
            url: "https://upload.example.org/file/x/a.jpg".into(),
            expires: u64::MAX,
            payload: String::new(),
            recipients: recipients
                .iter()
                .map(|jid| Recipient {
                    jid: (*jid).into(),
                    status: DeliveryStatus::Pending,
                    download_token: None,
                })
                .collect(),
        }
    }

    impl Harness {
        async fn accept(&self, relay: &RelayRecord) {
            self.outbox.insert(relay).unwrap();
            self.events
                .send(DeliveryEvent::Accepted(relay.clone()))
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
                message_id: message_id.into(),
                from: from.parse().unwrap(),
                condition: condition.into(),
            })
            .await;
        }

        /// The probed resource's answer to `probe`.
        async fn answer(&self, probe: &Element, reachable: bool) {
            self.event(DeliveryEvent::ProbeAnswer {
                query_id: probe.attr("id").unwrap().into(),
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

        async fn capabilities(
            &self,
            send_as_sender: bool,
            sees_presence: bool,
            stores_offline: bool,
        ) {
            self.event(DeliveryEvent::ServerCapabilities(Capabilities {
                send_as: send_as_sender.then_some(PrivilegeVersion::V2),
                sees_presence,
                stores_offline,
            }))
            .await;
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
        h.event(DeliveryEvent::LinkUp).await;
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

    #[tokio::test(start_paused = true)]
    async fn sends_as_the_sender_when_privileged() {
        let mut h = start();
        h.event(DeliveryEvent::LinkUp).await;
        h.capabilities(true, false, true).await;
        h.accept(&relay(&["bob@example.org"])).await;
        let message = h.next(Duration::from_secs(1)).await.unwrap();
        assert_eq!(message.attr("from"), Some("alice@example.org"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounce_is_retried_with_growing_delays() {
        let mut h = start();
        h.event(DeliveryEvent::LinkUp).await;
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
        h.event(DeliveryEvent::LinkUp).await;
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
    async fn only_the_recipient_or_its_server_can_bounce_a_message() {
        let mut h = start();
        h.event(DeliveryEvent::LinkUp).await;
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
        h.event(DeliveryEvent::LinkUp).await;
        h.capabilities(true, true, false).await;
        h.presence("bob@example.org", "laptop", true).await;
        h.accept(&relay(&["bob@example.org"])).await;
        let probe = h.next(Duration::from_secs(1)).await.unwrap();
        assert_eq!(probe.name(), "probe");
        h.event(DeliveryEvent::ProbeAnswer {
            query_id: probe.attr("id").unwrap().into(),
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

    #[tokio::test]
    async fn presence_memory_is_bounded_and_freed() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (outgoing, _sent) = mpsc::channel(1);
        let settings = DeliverySettings {
            bounce_window: WINDOW,
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(8),
            settle_time: Duration::from_secs(2),
        };
        let mut task = DeliveryTask::new(
            Outbox::new(db.open_tree("relays").unwrap()),
            Arc::new(TestComposer),
            outgoing,
            settings,
        );
        let now = Instant::now();
        let presence = |resource: usize, available| DeliveryEvent::Presence {
            jid: "bob@example.org".into(),
            resource: format!("r{resource}"),
            available,
        };
        for resource in 0..10_000 {
            task.handle(presence(resource, true), now);
        }
        assert_eq!(task.online["bob@example.org"].len(), MAX_RESOURCES_PER_JID);
        for resource in 0..10_000 {
            task.handle(presence(resource, false), now);
        }
        assert!(task.online.is_empty(), "nobody online, nothing kept");
        assert!(task.known_offline.contains("bob@example.org"));
    }

    #[tokio::test(start_paused = true)]
    async fn offline_recipients_are_held_until_they_come_online() {
        let mut h = start();
        h.event(DeliveryEvent::LinkUp).await;
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
    }

    #[tokio::test(start_paused = true)]
    async fn a_resource_that_does_not_answer_gets_a_message_that_can_bounce() {
        let mut h = start();
        tokio::task::yield_now().await;
        h.event(DeliveryEvent::LinkUp).await;
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
        h.event(DeliveryEvent::LinkUp).await;
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
        h.event(DeliveryEvent::LinkUp).await;
        h.capabilities(true, true, true).await;
        h.accept(&relay(&["bob@example.org"])).await;
        assert!(h.next(Duration::from_secs(1)).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn messages_in_flight_when_the_link_drops_are_sent_again() {
        let mut h = start();
        h.event(DeliveryEvent::LinkUp).await;
        h.capabilities(false, false, true).await;
        h.accept(&relay(&["bob@example.org", "carol@example.org"]))
            .await;
        assert!(h.next(Duration::from_secs(1)).await.is_some());
        assert!(h.next(Duration::from_secs(1)).await.is_some());
        h.event(DeliveryEvent::LinkDown).await;
        assert!(
            h.next(Duration::from_secs(60)).await.is_none(),
            "nothing while down"
        );
        h.event(DeliveryEvent::LinkUp).await;
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
        let db = sled::Config::new().temporary(true).open().unwrap();
        let outbox = Outbox::new(db.open_tree("relays").unwrap());
        let stored = relay(&["bob@example.org"]);
        outbox.insert(&stored).unwrap();
        let mut h = start_with(outbox, db);
        h.event(DeliveryEvent::LinkUp).await;
        h.capabilities(false, false, true).await;
        let message = h.next(Duration::from_secs(1)).await.expect("resumed");
        assert!(message
            .attr("id")
            .unwrap()
            .starts_with(&stored.id.to_string()));
    }
}
