//! Getting each relayed message to each recipient, at least once.
//!
//! One task ([`DeliveryTask`]) owns the delivery state: which (relay,
//! recipient) pairs are due, which were sent and are waiting out the bounce
//! window, which are held until their recipient comes online. Everything
//! else talks to it through [`DeliveryEvent`]s, and tells it of the link
//! through a watch ([`LinkStatus`]), so there is no locking and the order of
//! events is the order of decisions.
//!
//! A message counts as delivered only when the bounce window passed without
//! an error: bounces alone cannot prove delivery, as [`route`] explains,
//! which also decides, per attempt, how a message goes out.
//!
//! The parts, one concept each:
//! - [`route`]: the route decision, a pure function of what is known;
//! - [`jobs`]: the jobs by key, and the [`AttemptId`]s that lead back to them;
//! - [`whereabouts`]: what the server said of where recipients are;
//! - [`link`]: when sending may start after a connection;
//! - [`task`]: the loop that ties them together.

pub mod jobs;
pub mod link;
pub mod route;
pub mod task;
pub mod whereabouts;

use std::time::Duration;

use jid::Jid;
use minidom::Element;

pub use jobs::{AttemptId, PROBE_ID_PREFIX};
pub use link::LinkStatus;
pub use route::Capabilities;
pub use task::DeliveryTask;

use crate::relay::record::RelayRecord;
use crate::storage::FileId;
use crate::xmpp::privilege::PrivilegeVersion;

/// What the delivery task learns from the rest of Satchel.
#[derive(Debug)]
pub enum DeliveryEvent {
    /// A relay was stored and acknowledged: deliver it.
    Accepted(Box<RelayRecord>),
    /// File `0` was deleted (by its uploader or an admin): what is still
    /// owed of relays of it is cancelled, and their senders told.
    FileDeleted(FileId),
    /// The server returned the message of `attempt` with an error; `from`
    /// is who says so.
    Bounce {
        attempt: AttemptId,
        from: Jid,
        condition: String,
    },
    /// What the server on `connection` lets Satchel do and does itself,
    /// known once it answered the disco#info query; whether its privilege
    /// announcement was in by then.
    ServerKnown {
        connection: u64,
        capabilities: Capabilities,
        privileges_announced: bool,
    },
    /// The answer to the probe of `attempt`, from `from`: whether the
    /// probed resource answered.
    ProbeAnswer {
        attempt: AttemptId,
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

/// Builds the stanzas the delivery task sends.
pub trait Composer: Send + Sync + 'static {
    /// The message for recipient `index` of `relay`, with id `message_id`:
    /// as the sender if `as_sender` says in which version of XEP-0356,
    /// otherwise from Satchel's own JID.
    fn message(
        &self,
        relay: &RelayRecord,
        index: usize,
        message_id: &str,
        as_sender: Option<PrivilegeVersion>,
    ) -> Element;
    /// Tells the sender that delivery to recipient `index` failed for good.
    fn failure_report(&self, relay: &RelayRecord, index: usize, condition: &str) -> Element;
    /// A disco#info query to `recipient` (a full JID), with id `query_id`.
    fn probe(&self, recipient: &str, query_id: &str) -> Element;
}

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// How long a sent message may still bounce before it counts as delivered.
    pub bounce_window: Duration,
    pub first_retry: Duration,
    pub max_retry: Duration,
    /// After connecting, how long to wait for the server's privilege
    /// announcement and disco#info answer before sending anyway.
    pub settle_time: Duration,
    /// Once both are in, how long to wait still for what the server sent
    /// before its answer but Satchel handles after it: the presence of the
    /// users online, which lets the first messages go out as the sender.
    pub settle_grace: Duration,
}
