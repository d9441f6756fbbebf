//! XEP-0033 Extended Stanza Addressing 1.2.1.
//!
//! When Satchel relays a media message, the stanza that reaches the
//! recipient comes from Satchel, not from the person who sent the media.
//! Satchel names that person in an `ofrom` ("original from") address so that
//! the recipient's client can show who the media is from. Incoming addresses
//! are parsed into typed values, so that a relayed stanza can be checked
//! before Satchel acts on what it says.

use std::borrow::Cow;

use jid::Jid;
use xso::error::Error;
use xso::text::TextCodec;
use xso::{AsXml, AsXmlText, FromXml, FromXmlText};

use xmpp_parsers::message::MessagePayload;

/// Namespace of the `<addresses/>` header.
pub const NS: &str = "http://jabber.org/protocol/address";

/// What an address means for the stanza carrying it (XEP-0033 §4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressType {
    /// A primary recipient.
    To,
    /// A secondary recipient.
    Cc,
    /// A recipient hidden from the others.
    Bcc,
    /// Where replies should go.
    ReplyTo,
    /// The multi-user chat room where replies should go.
    ReplyRoom,
    /// Replies are not wanted.
    NoReply,
    /// The original sender, when a service relays the stanza on its behalf.
    OriginalFrom,
}

impl FromXmlText for AddressType {
    fn from_xml_text(text: String) -> Result<Self, Error> {
        Ok(match text.as_str() {
            "to" => Self::To,
            "cc" => Self::Cc,
            "bcc" => Self::Bcc,
            "replyto" => Self::ReplyTo,
            "replyroom" => Self::ReplyRoom,
            "noreply" => Self::NoReply,
            "ofrom" => Self::OriginalFrom,
            _ => return Err(Error::Other("Unknown address type.")),
        })
    }
}

impl AsXmlText for AddressType {
    fn as_xml_text(&self) -> Result<Cow<'_, str>, Error> {
        Ok(Cow::Borrowed(match self {
            Self::To => "to",
            Self::Cc => "cc",
            Self::Bcc => "bcc",
            Self::ReplyTo => "replyto",
            Self::ReplyRoom => "replyroom",
            Self::NoReply => "noreply",
            Self::OriginalFrom => "ofrom",
        }))
    }
}

/// The `delivered` attribute, which the schema fixes to `true`: absent means
/// not delivered, and `false` is never written.
struct DeliveredFlag;

impl TextCodec<bool> for DeliveredFlag {
    fn decode(&self, text: String) -> Result<bool, Error> {
        match text.as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(Error::Other("The delivered attribute must be 'true'.")),
        }
    }

    fn encode<'x>(&self, delivered: &'x bool) -> Result<Option<Cow<'x, str>>, Error> {
        Ok(delivered.then_some(Cow::Borrowed("true")))
    }
}

/// One `<address/>`.
///
/// Parsing enforces XEP-0033 §4: at least one of `jid`, `uri`, `node` and
/// `desc`; never `jid` together with `uri`; never `node` together with
/// `uri`. Children of an address are extensions that must be ignored when
/// not understood (§4.7), so they are.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(
    namespace = NS,
    name = "address",
    on_unknown_child = Discard,
    deserialize_callback = Address::check_attributes,
)]
pub struct Address {
    /// What the address means.
    #[xml(attribute = "type")]
    pub type_: AddressType,

    /// The XMPP address.
    #[xml(attribute(default))]
    pub jid: Option<Jid>,

    /// A non-XMPP address, such as `sip:` or `im:`.
    #[xml(attribute(default))]
    pub uri: Option<String>,

    /// A service discovery node at `jid`.
    #[xml(attribute(default))]
    pub node: Option<String>,

    /// A human-readable description, in the sender's language.
    #[xml(attribute(default))]
    pub desc: Option<String>,

    /// Whether a multicast service already delivered to this address.
    #[xml(attribute(default, codec = DeliveredFlag))]
    pub delivered: bool,
}

impl Address {
    fn check_attributes(&mut self) -> Result<(), Error> {
        if self.jid.is_none() && self.uri.is_none() && self.node.is_none() && self.desc.is_none() {
            return Err(Error::Other(
                "An address needs one of jid, uri, node or desc.",
            ));
        }
        if self.uri.is_some() && self.jid.is_some() {
            return Err(Error::Other("An address cannot have both jid and uri."));
        }
        if self.uri.is_some() && self.node.is_some() {
            return Err(Error::Other("An address cannot have both uri and node."));
        }
        Ok(())
    }
}

/// The `<addresses/>` header of a message or presence.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(
    namespace = NS,
    name = "addresses",
    deserialize_callback = Addresses::check_not_empty,
)]
pub struct Addresses {
    /// The addresses, in document order; the schema requires at least one.
    #[xml(child(n = ..))]
    pub addresses: Vec<Address>,
}

impl Addresses {
    /// The header naming `sender` as the original sender of a relayed
    /// stanza: `<addresses><address type='ofrom' jid=SENDER/></addresses>`.
    pub fn original_sender(sender: Jid) -> Self {
        Addresses {
            addresses: vec![Address {
                type_: AddressType::OriginalFrom,
                jid: Some(sender),
                uri: None,
                node: None,
                desc: None,
                delivered: false,
            }],
        }
    }

    fn check_not_empty(&mut self) -> Result<(), Error> {
        if self.addresses.is_empty() {
            return Err(Error::Other("An addresses header needs an address."));
        }
        Ok(())
    }
}

impl MessagePayload for Addresses {}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;
    use xmpp_parsers::message::Message;
    use xmpp_parsers::presence::Presence;
    use xso::error::FromElementError;

    fn parse(xml: &str) -> Result<Addresses, FromElementError> {
        Addresses::try_from(xml.parse::<Element>().unwrap())
    }

    fn invalid_reason(xml: &str) -> String {
        match parse(xml) {
            Err(FromElementError::Invalid(error)) => error.to_string(),
            other => panic!("expected an invalid element, got {other:?}"),
        }
    }

    /// XEP-0033, "Message with an extended address".
    #[test]
    fn parses_the_message_example() {
        let message: Element =
            "<message xmlns='jabber:component:accept' to='multicast.jabber.org'>\
               <addresses xmlns='http://jabber.org/protocol/address'>\
                 <address type='to' jid='hildjj@jabber.org/Work' desc='Joe Hildebrand'/>\
                 <address type='cc' jid='jer@jabber.org/Home' desc='Jeremie Miller'/>\
               </addresses>\
               <body>Hello, world!</body>\
             </message>"
                .parse()
                .unwrap();
        let message = Message::try_from(message).unwrap();
        let header = Addresses::try_from(message.payloads[0].clone()).unwrap();
        let [to, cc] = &header.addresses[..] else {
            panic!("expected two addresses, got {header:?}");
        };
        assert_eq!(to.type_, AddressType::To);
        assert_eq!(to.jid, Some(Jid::new("hildjj@jabber.org/Work").unwrap()));
        assert_eq!(to.desc.as_deref(), Some("Joe Hildebrand"));
        assert!(!to.delivered);
        assert_eq!(cc.type_, AddressType::Cc);
        assert_eq!(cc.desc.as_deref(), Some("Jeremie Miller"));
    }

    /// XEP-0033, "Presence with an extended address".
    #[test]
    fn parses_the_presence_example() {
        let presence: Element =
            "<presence xmlns='jabber:component:accept' from='hildjj@jabber.com' \
                 to='multicast.jabber.org' type='unavailable'>\
               <addresses xmlns='http://jabber.org/protocol/address'>\
                 <address type='bcc' jid='temas@jabber.org'/>\
                 <address type='bcc' jid='jer@jabber.org'/>\
               </addresses>\
             </presence>"
                .parse()
                .unwrap();
        let presence = Presence::try_from(presence).unwrap();
        let header = Addresses::try_from(presence.payloads[0].clone()).unwrap();
        assert_eq!(header.addresses.len(), 2);
        assert!(header
            .addresses
            .iter()
            .all(|address| address.type_ == AddressType::Bcc));
    }

    /// XEP-0033, "Possible future extension": an unknown extension inside an
    /// address is ignored.
    #[test]
    fn ignores_extensions_inside_an_address() {
        let header = parse(
            "<addresses xmlns='http://jabber.org/protocol/address'>\
               <address type='to' desc='Foo Group'>\
                 <group xmlns='some:funny:group:ns'>foo</group>\
               </address>\
               <address type='replyroom' jid='jdev@conference.jabber.org'/>\
             </addresses>",
        )
        .unwrap();
        assert_eq!(header.addresses[0].desc.as_deref(), Some("Foo Group"));
        assert_eq!(header.addresses[0].jid, None);
        assert_eq!(header.addresses[1].type_, AddressType::ReplyRoom);
    }

    /// XEP-0033, "Local server delivers to target server supporting address
    /// headers" (shortened): addresses already delivered.
    #[test]
    fn parses_delivered() {
        let header = parse(
            "<addresses xmlns='http://jabber.org/protocol/address'>\
               <address type='to' jid='to@header1.org' delivered='true'/>\
               <address type='cc' jid='cc@header1.org' delivered='true'/>\
               <address type='to' jid='to@header2.org'/>\
             </addresses>",
        )
        .unwrap();
        let delivered: Vec<bool> = header.addresses.iter().map(|a| a.delivered).collect();
        assert_eq!(delivered, [true, true, false]);
    }

    #[test]
    fn parses_every_address_type() {
        for (name, type_) in [
            ("to", AddressType::To),
            ("cc", AddressType::Cc),
            ("bcc", AddressType::Bcc),
            ("replyto", AddressType::ReplyTo),
            ("replyroom", AddressType::ReplyRoom),
            ("noreply", AddressType::NoReply),
            ("ofrom", AddressType::OriginalFrom),
        ] {
            let header = parse(&format!(
                "<addresses xmlns='{NS}'><address type='{name}' desc='x'/></addresses>"
            ))
            .unwrap();
            assert_eq!(header.addresses[0].type_, type_);
        }
    }

    #[test]
    fn builds_the_original_sender_header() {
        let header = Addresses::original_sender(Jid::new("alice@example.org").unwrap());
        let expected: Element = "<addresses xmlns='http://jabber.org/protocol/address'>\
               <address type='ofrom' jid='alice@example.org'/>\
             </addresses>"
            .parse()
            .unwrap();
        let built = Element::from(header.clone());
        assert_eq!(built, expected);
        assert_eq!(Addresses::try_from(built).unwrap(), header);
    }

    #[test]
    fn rejects_an_address_without_type() {
        let reason = invalid_reason(&format!(
            "<addresses xmlns='{NS}'><address jid='alice@example.org'/></addresses>"
        ));
        assert!(reason.contains("type"), "{reason}");
    }

    #[test]
    fn rejects_an_unknown_type() {
        let reason = invalid_reason(&format!(
            "<addresses xmlns='{NS}'><address type='from' jid='alice@example.org'/></addresses>"
        ));
        assert!(reason.contains("Unknown address type"), "{reason}");
    }

    #[test]
    fn rejects_jid_with_uri() {
        let reason = invalid_reason(&format!(
            "<addresses xmlns='{NS}'>\
               <address type='to' jid='alice@example.org' uri='sip:alice@example.org'/>\
             </addresses>"
        ));
        assert_eq!(reason, "An address cannot have both jid and uri.");
    }

    #[test]
    fn rejects_uri_with_node() {
        let reason = invalid_reason(&format!(
            "<addresses xmlns='{NS}'>\
               <address type='to' uri='sip:alice@example.org' node='x'/>\
             </addresses>"
        ));
        assert_eq!(reason, "An address cannot have both uri and node.");
    }

    #[test]
    fn rejects_an_address_naming_nothing() {
        let reason = invalid_reason(&format!(
            "<addresses xmlns='{NS}'><address type='noreply'/></addresses>"
        ));
        assert_eq!(reason, "An address needs one of jid, uri, node or desc.");
    }

    #[test]
    fn rejects_a_bad_jid() {
        for jid in ["@example.org", "alice@", "a@b@c", ""] {
            let xml =
                format!("<addresses xmlns='{NS}'><address type='ofrom' jid='{jid}'/></addresses>");
            assert!(
                matches!(parse(&xml), Err(FromElementError::Invalid(_))),
                "accepted jid {jid:?}"
            );
        }
    }

    #[test]
    fn rejects_a_bad_delivered_value() {
        let reason = invalid_reason(&format!(
            "<addresses xmlns='{NS}'><address type='to' jid='a@b' delivered='yes'/></addresses>"
        ));
        assert_eq!(reason, "The delivered attribute must be 'true'.");
    }

    #[test]
    fn rejects_an_empty_header() {
        let reason = invalid_reason(&format!("<addresses xmlns='{NS}'/>"));
        assert_eq!(reason, "An addresses header needs an address.");
    }
}
