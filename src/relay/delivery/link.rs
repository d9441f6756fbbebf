//! When the delivery task may send: the component link is up and Satchel's
//! picture of the server has settled.
//!
//! On each connection the server tells Satchel what it may do: right after
//! the handshake it sends the XEP-0356 privilege announcement (Prosody
//! follows it, with the presence permission, with the presence of every user
//! online), and it answers Satchel's disco#info query (offline storage). The route of a message
//! depends on all of it: sent too early, a message a privileged server would
//! have carried as the sender goes from Satchel's JID instead.
//!
//! The announcement and the presences come before the answer on the wire,
//! but Satchel handles stanzas concurrently, so they may be handled after
//! it: the answer alone does not complete the picture. Sending therefore
//! starts [`DeliverySettings::settle_grace`] after both the answer and the
//! announcement are in, or [`DeliverySettings::settle_time`] after the
//! connection with whatever is known then (a server that grants nothing
//! never announces, one that does not answer is taken to keep no offline
//! messages); that fallback is logged with its reason.

use tokio::time::Instant;
use tracing::info;

use super::route::Capabilities;
use super::DeliverySettings;

/// The component link as the delivery task is told of it: whether it is up,
/// and which connection it is (a count of connections made).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    pub connection: u64,
}

/// What the delivery task knows of the current connection.
#[derive(Debug)]
pub struct Link {
    status: LinkStatus,
    capabilities: Capabilities,
    /// The server's disco#info answer is in.
    answered: bool,
    /// The server's privilege announcement is in.
    announced: bool,
    /// Sending starts at this instant; `None` while the link is down.
    sending_from: Option<Instant>,
    /// Whether sending without the full picture was logged on this connection.
    fallback_logged: bool,
}

impl Link {
    pub fn down() -> Link {
        Link {
            status: LinkStatus::default(),
            capabilities: Capabilities::default(),
            answered: false,
            announced: false,
            sending_from: None,
            fallback_logged: false,
        }
    }

    pub fn status(&self) -> LinkStatus {
        self.status
    }

    /// A new connection is up: nothing is known of the server yet.
    pub fn came_up(&mut self, status: LinkStatus, now: Instant, settings: &DeliverySettings) {
        *self = Link {
            status,
            sending_from: Some(now + settings.settle_time),
            ..Link::down()
        };
    }

    /// The link is down; what the server said no longer holds.
    pub fn went_down(&mut self) {
        *self = Link {
            status: LinkStatus {
                up: false,
                connection: self.status.connection,
            },
            ..Link::down()
        };
    }

    /// The server's answer is in (with the announcement if `announced`),
    /// on `connection`. False, and ignored, if that connection is over.
    pub fn learned(
        &mut self,
        connection: u64,
        capabilities: Capabilities,
        announced: bool,
        now: Instant,
        settings: &DeliverySettings,
    ) -> bool {
        if !self.status.up || connection != self.status.connection {
            return false;
        }
        self.capabilities = capabilities;
        self.answered = true;
        self.announced = announced;
        if announced {
            let settled = now + settings.settle_grace;
            self.sending_from = self.sending_from.map(|from| from.min(settled));
        }
        true
    }

    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// When sending starts, if the link is up.
    pub fn sending_from(&self) -> Option<Instant> {
        self.sending_from
    }

    /// Whether messages may go out now. The first time they do without the
    /// whole picture of the server, says so, and why.
    pub fn may_send(&mut self, now: Instant) -> bool {
        if self.sending_from.is_none_or(|from| from > now) {
            return false;
        }
        if self.fallback_logged || (self.answered && self.announced) {
            return true;
        }
        self.fallback_logged = true;
        let missing = if self.answered {
            "no privilege announcement: messages go from Satchel's own JID, naming the sender"
        } else {
            "no answer to the disco#info query: taking the server to keep no offline \
             messages and to grant no privileges"
        };
        info!(capabilities = ?self.capabilities, "sending without all the server's facts: {missing}");
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::xmpp::privilege::PrivilegeVersion;

    fn settings() -> DeliverySettings {
        DeliverySettings {
            bounce_window: Duration::from_secs(30),
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(8),
            settle_time: Duration::from_secs(3),
            settle_grace: Duration::from_millis(500),
        }
    }

    const FIRST: LinkStatus = LinkStatus {
        up: true,
        connection: 1,
    };

    fn privileged() -> Capabilities {
        Capabilities {
            send_as: Some(PrivilegeVersion::V2),
            sees_presence: true,
            stores_offline: false,
        }
    }

    #[test]
    fn nothing_is_sent_while_the_link_is_down() {
        let mut link = Link::down();
        assert!(!link.may_send(Instant::now()));
        assert_eq!(link.sending_from(), None);
    }

    #[test]
    fn without_an_answer_sending_starts_after_the_settle_time() {
        let now = Instant::now();
        let mut link = Link::down();
        link.came_up(FIRST, now, &settings());
        assert!(!link.may_send(now + Duration::from_millis(2999)));
        assert!(link.may_send(now + Duration::from_secs(3)));
        assert_eq!(link.capabilities(), Capabilities::default());
    }

    #[test]
    fn an_answer_without_the_announcement_waits_for_it_until_the_settle_time() {
        let now = Instant::now();
        let mut link = Link::down();
        link.came_up(FIRST, now, &settings());
        let plain = Capabilities {
            stores_offline: true,
            ..Capabilities::default()
        };
        link.learned(1, plain, false, now, &settings());
        assert!(!link.may_send(now + Duration::from_secs(2)));
        assert!(link.may_send(now + Duration::from_secs(3)));
        assert_eq!(link.capabilities(), plain);
    }

    #[test]
    fn a_late_announcement_is_still_waited_for() {
        let now = Instant::now();
        let mut link = Link::down();
        link.came_up(FIRST, now, &settings());
        link.learned(1, Capabilities::default(), false, now, &settings());
        let later = now + Duration::from_secs(1);
        link.learned(1, privileged(), true, later, &settings());
        assert!(!link.may_send(later + Duration::from_millis(499)));
        assert!(link.may_send(later + Duration::from_millis(500)));
        assert_eq!(link.capabilities(), privileged());
    }

    #[test]
    fn news_from_an_earlier_connection_is_ignored() {
        let now = Instant::now();
        let mut link = Link::down();
        let second = LinkStatus {
            up: true,
            connection: 2,
        };
        link.came_up(second, now, &settings());
        assert!(!link.learned(1, privileged(), true, now, &settings()));
        assert_eq!(link.capabilities(), Capabilities::default());
        assert!(!link.may_send(now + Duration::from_secs(1)));
        link.went_down();
        assert!(!link.learned(2, privileged(), true, now, &settings()));
        assert_eq!(link.capabilities(), Capabilities::default());
    }
}
