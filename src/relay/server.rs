//! What Satchel learns of its XMPP server on each connection, and tells the
//! delivery task.
//!
//! Two facts decide how a relayed message may go out: the XEP-0356
//! privileges the server announces after the handshake, and whether it
//! keeps messages for offline users, which Satchel asks with a disco#info
//! query (`msgoffline`). Both are forgotten on every new connection, whose
//! number tags the query's id, so a late answer meant for an earlier
//! connection is not mistaken for the current one.

use minidom::Element;
use xmpp_parsers::ns;

use super::delivery::{Capabilities, DeliveryEvent};
use crate::xmpp::privilege::{PresencePermission, Privileges, NS_V1, NS_V2};

/// Prefix of the ids of Satchel's disco#info queries to its server; the
/// connection's number follows.
const SERVER_INFO_ID: &str = "satchel-server-info-";

/// What Satchel learned of its server on the current connection.
#[derive(Debug, Default)]
pub struct ServerState {
    /// How many connections were made, this one included.
    pub connection: u64,
    pub privileges: Option<Privileges>,
    /// `None` until the server answered the disco#info query.
    pub stores_offline: Option<bool>,
}

impl ServerState {
    /// A new connection: nothing is known yet. Returns the id of the
    /// disco#info query to send.
    pub fn connected(&mut self) -> String {
        *self = ServerState {
            connection: self.connection + 1,
            ..ServerState::default()
        };
        format!("{SERVER_INFO_ID}{}", self.connection)
    }

    /// What the delivery task must know, once the server answered: until
    /// then nothing is decided.
    pub fn news(&self) -> Option<DeliveryEvent> {
        let stores_offline = self.stores_offline?;
        Some(DeliveryEvent::ServerKnown {
            connection: self.connection,
            capabilities: Capabilities {
                send_as: self
                    .privileges
                    .filter(|p| p.message_outgoing)
                    .map(|p| p.version),
                sees_presence: self
                    .privileges
                    .is_some_and(|p| p.presence != PresencePermission::None),
                stores_offline,
            },
            privileges_announced: self.privileges.is_some(),
        })
    }
}

/// The connection an IQ id names, if it is the id of one of Satchel's
/// queries to its server.
pub fn query_connection(id: &str) -> Option<u64> {
    id.strip_prefix(SERVER_INFO_ID)?.parse().ok()
}

/// The `<privilege/>` of a privilege announcement, in either version.
pub fn announcement(message: &Element) -> Option<&Element> {
    message
        .children()
        .find(|c| c.name() == "privilege" && (c.ns() == NS_V1 || c.ns() == NS_V2))
}

/// Whether a disco#info answer lists offline storage.
pub fn lists_offline_storage(answer: &Element) -> bool {
    answer
        .get_child("query", ns::DISCO_INFO)
        .is_some_and(|query| {
            query
                .children()
                .any(|f| f.name() == "feature" && f.attr("var") == Some("msgoffline"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::privilege::PrivilegeVersion;

    #[test]
    fn query_ids_name_their_connection() {
        let mut state = ServerState::default();
        let first = state.connected();
        let second = state.connected();
        assert_eq!(query_connection(&first), Some(1));
        assert_eq!(query_connection(&second), Some(2));
        assert_eq!(query_connection("satchel-probe-1"), None);
        assert_eq!(query_connection("satchel-server-info-x"), None);
    }

    #[test]
    fn nothing_is_told_before_the_answer_and_a_connection_starts_blank() {
        let mut state = ServerState::default();
        state.connected();
        state.privileges = Some(Privileges {
            version: PrivilegeVersion::V2,
            message_outgoing: true,
            presence: PresencePermission::ManagedEntity,
        });
        assert!(state.news().is_none());
        state.stores_offline = Some(false);
        let Some(DeliveryEvent::ServerKnown {
            connection,
            capabilities,
            privileges_announced,
        }) = state.news()
        else {
            panic!("the server is known");
        };
        assert_eq!(connection, 1);
        assert!(privileges_announced);
        assert_eq!(
            capabilities,
            Capabilities {
                send_as: Some(PrivilegeVersion::V2),
                sees_presence: true,
                stores_offline: false,
            }
        );
        state.connected();
        assert!(state.privileges.is_none() && state.news().is_none());
    }
}
