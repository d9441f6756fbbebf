//! XEP-0334 Message Processing Hints 1.0.
//!
//! A relayed message is sent by a component, and may be sent as a user
//! through XEP-0356: servers apply their own rules to what they store for
//! such traffic. Satchel adds `<store/>`, as XEP-0447 §3.1 recommends for
//! shares, so that the message reaches the recipients' offline storage and
//! archives (XEP-0313). All four hints parse, so that tests and future code
//! can read them; Satchel itself only writes `<store/>`.

use xso::{AsXml, FromXml};

use xmpp_parsers::message::MessagePayload;

/// Namespace of the hints.
pub const NS: &str = "urn:xmpp:hints";

/// One processing hint; each is an empty element in [`NS`].
///
/// Hints in [`NS`] with another name are not matched (the element is handed
/// back as a mismatch), so that later versions of the XEP do not break
/// parsing.
#[derive(FromXml, AsXml, Debug, Clone, Copy, PartialEq, Eq)]
#[xml(namespace = NS)]
pub enum Hint {
    /// Store the message, even if it would not be stored by default.
    #[xml(name = "store")]
    Store,

    /// Store the message neither permanently nor for later delivery.
    #[xml(name = "no-store")]
    NoStore,

    /// Do not copy the message to other resources (e.g. through Carbons).
    #[xml(name = "no-copy")]
    NoCopy,

    /// Do not keep the message in any permanent archive or log.
    #[xml(name = "no-permanent-store")]
    NoPermanentStore,
}

impl MessagePayload for Hint {}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;
    use xmpp_parsers::message::Message;

    /// XEP-0334, "Sending a message with no-copy and no-store hints".
    #[test]
    fn parses_the_xep_example() {
        let message: Element = "<message xmlns='jabber:component:accept' \
                 from='romeo@montague.lit/laptop' to='juliet@capulet.lit/laptop'>\
               <body>V unir avtug'f pybnx gb uvqr zr sebz gurve fvtug</body>\
               <no-copy xmlns='urn:xmpp:hints'/>\
               <no-store xmlns='urn:xmpp:hints'/>\
             </message>"
            .parse()
            .unwrap();
        let message = Message::try_from(message).unwrap();
        let hints: Vec<Hint> = message
            .payloads
            .into_iter()
            .map(|payload| Hint::try_from(payload).unwrap())
            .collect();
        assert_eq!(hints, [Hint::NoCopy, Hint::NoStore]);
    }

    #[test]
    fn parses_every_hint() {
        for (xml, hint) in [
            ("<store xmlns='urn:xmpp:hints'/>", Hint::Store),
            ("<no-store xmlns='urn:xmpp:hints'/>", Hint::NoStore),
            ("<no-copy xmlns='urn:xmpp:hints'/>", Hint::NoCopy),
            (
                "<no-permanent-store xmlns='urn:xmpp:hints'/>",
                Hint::NoPermanentStore,
            ),
        ] {
            let element: Element = xml.parse().unwrap();
            assert_eq!(Hint::try_from(element).unwrap(), hint);
        }
    }

    /// XEP-0447, "Sharing summit.jpg ... without fallback": the store hint.
    #[test]
    fn builds_store() {
        let expected: Element = "<store xmlns='urn:xmpp:hints'/>".parse().unwrap();
        assert_eq!(Element::from(Hint::Store), expected);
    }

    #[test]
    fn an_unknown_hint_is_not_matched() {
        let element: Element = "<no-such-hint xmlns='urn:xmpp:hints'/>".parse().unwrap();
        assert!(Hint::try_from(element).is_err());
    }
}
