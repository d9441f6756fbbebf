//! XEP-0356 Privileged Entity, in both namespaces servers use:
//! `urn:xmpp:privilege:2` (XEP 0.4, Prosody's mod_privilege) and
//! `urn:xmpp:privilege:1` (XEP 0.2, ejabberd up to 23.01).
//!
//! A component may only send stanzas from its own domain. With the
//! "message" privilege, the server sends a message Satchel wraps for it as
//! if one of its users had sent it: this is how a relayed media message can
//! come from the person who shared the media rather than from Satchel. The
//! server announces the privileges it grants in a `<privilege/>` message
//! when the component connects; Satchel reads from it what the relay needs
//! (outgoing messages, and presence for knowing who is online).
//!
//! Both versions use the same `<perm/>` announcement and the same
//! `<privilege><forwarded><message xmlns='jabber:client'/>` wrapper; only the
//! namespace differs, and the version of the announcement decides the
//! version of the wrapper. The forwarded message must be in `jabber:client`
//! (Prosody looks for exactly that) and come from a bare JID of the server.

use minidom::{Element, Node};
use xso::error::{Error, FromElementError};
use xso::FromXml;

use jid::{BareJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::ns;

/// Namespace of XEP-0356 0.2 (ejabberd up to 23.01).
pub const NS_V1: &str = "urn:xmpp:privilege:1";

/// Namespace of XEP-0356 0.4 (Prosody's mod_privilege).
pub const NS_V2: &str = "urn:xmpp:privilege:2";

/// Which namespace the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivilegeVersion {
    /// `urn:xmpp:privilege:1`.
    V1,
    /// `urn:xmpp:privilege:2`.
    V2,
}

impl PrivilegeVersion {
    /// The namespace of this version.
    pub fn namespace(self) -> &'static str {
        match self {
            PrivilegeVersion::V1 => NS_V1,
            PrivilegeVersion::V2 => NS_V2,
        }
    }
}

/// Which presences the server forwards to Satchel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PresencePermission {
    /// None.
    #[default]
    None,
    /// Those of the server's own users.
    ManagedEntity,
    /// Those of the users and of their contacts.
    Roster,
}

/// What the server lets Satchel do, from its `<privilege/>` announcement.
///
/// A permission is granted only when announced with its `type`: the 0.2
/// text shows `<perm access='message'/>` with no type in one example, which
/// Satchel reads as not granted rather than guess. Permissions the relay
/// does not use (roster, iq, and any later ones) are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Privileges {
    /// The namespace of the announcement, and so of the wrapper to send.
    pub version: PrivilegeVersion,
    /// Whether Satchel may send messages as the server's users.
    pub message_outgoing: bool,
    /// Which presences the server forwards.
    pub presence: PresencePermission,
}

#[derive(FromXml, Debug)]
#[xml(namespace = NS_V1, name = "perm")]
struct PermV1 {
    #[xml(attribute)]
    access: String,
    #[xml(attribute(default, name = "type"))]
    type_: Option<String>,
}

#[derive(FromXml, Debug)]
#[xml(namespace = NS_V2, name = "perm")]
struct PermV2 {
    #[xml(attribute)]
    access: String,
    #[xml(attribute(default, name = "type"))]
    type_: Option<String>,
}

/// The `<privilege/>` announcement, as either version puts it.
#[derive(FromXml, Debug)]
#[xml()]
enum Announcement {
    #[xml(namespace = NS_V1, name = "privilege")]
    V1 {
        #[xml(child(n = ..))]
        perms: Vec<PermV1>,
    },
    #[xml(namespace = NS_V2, name = "privilege")]
    V2 {
        #[xml(child(n = ..))]
        perms: Vec<PermV2>,
    },
}

impl TryFrom<Element> for Privileges {
    type Error = FromElementError;

    /// Reads the `<privilege/>` payload of the server's announcement; any
    /// other element is handed back as a mismatch.
    fn try_from(element: Element) -> Result<Self, FromElementError> {
        let (version, perms): (_, Vec<(String, Option<String>)>) =
            match Announcement::try_from(element)? {
                Announcement::V1 { perms } => (
                    PrivilegeVersion::V1,
                    perms.into_iter().map(|p| (p.access, p.type_)).collect(),
                ),
                Announcement::V2 { perms } => (
                    PrivilegeVersion::V2,
                    perms.into_iter().map(|p| (p.access, p.type_)).collect(),
                ),
            };
        let mut privileges = Privileges {
            version,
            message_outgoing: false,
            presence: PresencePermission::None,
        };
        for (access, type_) in perms {
            match (access.as_str(), type_.as_deref()) {
                ("message", Some("outgoing")) => privileges.message_outgoing = true,
                ("message", Some("none") | None) => privileges.message_outgoing = false,
                ("message", Some(_)) => {
                    return Err(Error::Other("Unknown message permission type.").into())
                }
                ("presence", Some("managed_entity")) => {
                    privileges.presence = PresencePermission::ManagedEntity
                }
                ("presence", Some("roster")) => privileges.presence = PresencePermission::Roster,
                ("presence", Some("none") | None) => privileges.presence = PresencePermission::None,
                ("presence", Some(_)) => {
                    return Err(Error::Other("Unknown presence permission type.").into())
                }
                _ => {}
            }
        }
        Ok(privileges)
    }
}

/// The stanza asking the server to send `message` as `sender`:
/// `<message from=COMPONENT to=SERVER><privilege><forwarded><message
/// xmlns='jabber:client' from=SENDER ..>`.
///
/// `sender` replaces the message's own `from`, since the server accepts
/// only a bare JID of its own. The message's stanza-level elements
/// (`<body/>`, `<subject/>`, `<thread/>`) move from the component namespace
/// into `jabber:client` with it; payloads keep their namespaces.
pub fn send_as(
    version: PrivilegeVersion,
    component: Jid,
    server: Jid,
    sender: BareJid,
    mut message: Message,
) -> Message {
    message.from = Some(Jid::from(sender));
    let forwarded = Element::builder("forwarded", ns::FORWARD)
        .append(into_jabber_client(Element::from(message)))
        .build();
    let privilege = Element::builder("privilege", version.namespace())
        .append(forwarded)
        .build();
    let mut wrapper = Message::normal(server).with_payloads(vec![privilege]);
    wrapper.from = Some(component);
    wrapper
}

/// Moves `element` and its descendants out of `jabber:component:accept`
/// into `jabber:client`.
fn into_jabber_client(mut element: Element) -> Element {
    let namespace = match element.ns() {
        namespace if namespace == ns::COMPONENT_ACCEPT => ns::JABBER_CLIENT.to_owned(),
        namespace => namespace,
    };
    let mut moved = Element::bare(element.name(), namespace);
    *moved.attrs_mut() = element.attrs().clone();
    for node in element.take_nodes() {
        match node {
            Node::Element(child) => {
                moved.append_child(into_jabber_client(child));
            }
            Node::Text(text) => moved.append_text_node(text),
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::message::{Id, Lang};

    fn parse(xml: &str) -> Result<Privileges, FromElementError> {
        Privileges::try_from(xml.parse::<Element>().unwrap())
    }

    /// A v2 announcement as Prosody's mod_privilege sends it: roster, message,
    /// presence and iq granted.
    #[test]
    fn parses_a_v2_announcement() {
        let announcement: Element = "<message xmlns='jabber:component:accept' \
                 from='capulet.lit' to='pubsub.capulet.lit' id='54321'>\
               <privilege xmlns='urn:xmpp:privilege:2'>\
                 <perm access='roster' type='both' push='true'/>\
                 <perm access='message' type='outgoing'/>\
                 <perm access='presence' type='managed_entity'/>\
                 <perm access='iq'><namespace ns='urn:xmpp:mam:2' type='set'/></perm>\
               </privilege>\
             </message>"
            .parse()
            .unwrap();
        let message = Message::try_from(announcement).unwrap();
        let privileges = Privileges::try_from(message.payloads[0].clone()).unwrap();
        assert_eq!(
            privileges,
            Privileges {
                version: PrivilegeVersion::V2,
                message_outgoing: true,
                presence: PresencePermission::ManagedEntity,
            }
        );
    }

    /// XEP-0356 0.2, "Server Advertises Roster Privilege".
    #[test]
    fn parses_the_v1_roster_example() {
        let privileges = parse(
            "<privilege xmlns='urn:xmpp:privilege:1'>\
               <perm access='roster' type='both'/>\
             </privilege>",
        )
        .unwrap();
        assert_eq!(
            privileges,
            Privileges {
                version: PrivilegeVersion::V1,
                message_outgoing: false,
                presence: PresencePermission::None,
            }
        );
    }

    /// XEP-0356 0.2, "Server Advertises Roster And Message Privileges".
    #[test]
    fn parses_the_v1_message_example() {
        let privileges = parse(
            "<privilege xmlns='urn:xmpp:privilege:1'>
                <perm access='roster' type='both'/>
                <perm access='message' type='outgoing'/>
            </privilege>",
        )
        .unwrap();
        assert!(privileges.message_outgoing);
        assert_eq!(privileges.version, PrivilegeVersion::V1);
    }

    /// XEP-0356 0.2, "Server Advertises Roster, Message, Managed Entity
    /// Presence and Roster Presence Privileges": the message perm has no
    /// type, so it is not taken as granted; roster presence is.
    #[test]
    fn parses_the_v1_roster_presence_example() {
        let privileges = parse(
            "<privilege xmlns='urn:xmpp:privilege:1'>\
               <perm access='roster' type='both'/>\
               <perm access='message'/>\
               <perm access='presence' type='roster'/>\
             </privilege>",
        )
        .unwrap();
        assert!(!privileges.message_outgoing);
        assert_eq!(privileges.presence, PresencePermission::Roster);
    }

    #[test]
    fn none_grants_nothing() {
        let privileges = parse(
            "<privilege xmlns='urn:xmpp:privilege:2'>\
               <perm access='message' type='none'/>\
               <perm access='presence' type='none'/>\
             </privilege>",
        )
        .unwrap();
        assert!(!privileges.message_outgoing);
        assert_eq!(privileges.presence, PresencePermission::None);
    }

    #[test]
    fn rejects_malformed_perms() {
        for perm in [
            "<perm type='outgoing'/>",
            "<perm access='message' type='incoming'/>",
            "<perm access='presence' type='everyone'/>",
        ] {
            let xml = format!("<privilege xmlns='urn:xmpp:privilege:2'>{perm}</privilege>");
            assert!(
                matches!(parse(&xml), Err(FromElementError::Invalid(_))),
                "accepted {perm}"
            );
        }
    }

    #[test]
    fn other_elements_are_a_mismatch() {
        for xml in [
            "<privilege xmlns='urn:xmpp:privilege:3'/>",
            "<delegation xmlns='urn:xmpp:delegation:2'/>",
        ] {
            assert!(matches!(parse(xml), Err(FromElementError::Mismatch(_))));
        }
    }

    fn tune_message() -> Message {
        let mut message = Message::chat(Jid::new("romeo@montague.lit/orchard").unwrap());
        message.id = Some(Id("foo".to_owned()));
        message
            .bodies
            .insert(Lang::new(), "Gerald Finzi".to_owned());
        message.payloads.push(
            "<delay xmlns='urn:xmpp:delay' stamp='2014-11-25T14:34:32Z'/>"
                .parse()
                .unwrap(),
        );
        // Whatever `from` the caller left is replaced by the sender.
        message.from = Some(Jid::new("juliet@capulet.lit/balcony").unwrap());
        message
    }

    fn expected_wrapper(namespace: &str) -> Element {
        format!(
            "<message xmlns='jabber:component:accept' from='pubsub.capulet.lit' to='capulet.lit'>\
               <privilege xmlns='{namespace}'>\
                 <forwarded xmlns='urn:xmpp:forward:0'>\
                   <message xmlns='jabber:client' from='juliet@capulet.lit' \
                       to='romeo@montague.lit/orchard' id='foo' type='chat'>\
                     <body>Gerald Finzi</body>\
                     <delay xmlns='urn:xmpp:delay' stamp='2014-11-25T14:34:32Z'/>\
                   </message>\
                 </forwarded>\
               </privilege>\
             </message>"
        )
        .parse()
        .unwrap()
    }

    /// The v2 wrapper, as Prosody's mod_privilege expects it.
    #[test]
    fn builds_the_v2_wrapper() {
        let wrapper = send_as(
            PrivilegeVersion::V2,
            Jid::new("pubsub.capulet.lit").unwrap(),
            Jid::new("capulet.lit").unwrap(),
            BareJid::new("juliet@capulet.lit").unwrap(),
            tune_message(),
        );
        assert_eq!(Element::from(wrapper), expected_wrapper(NS_V2));
    }

    /// XEP-0356 0.2, "privileged entity send a notificaction message".
    #[test]
    fn builds_the_v1_wrapper() {
        let wrapper = send_as(
            PrivilegeVersion::V1,
            Jid::new("pubsub.capulet.lit").unwrap(),
            Jid::new("capulet.lit").unwrap(),
            BareJid::new("juliet@capulet.lit").unwrap(),
            tune_message(),
        );
        assert_eq!(Element::from(wrapper), expected_wrapper(NS_V1));
    }
}
