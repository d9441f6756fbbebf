//! The message each recipient gets, built from the stored [`RelayRecord`] at
//! send time.
//!
//! The body is exactly the URL: Conversations and Dino show an image inline
//! only then. The caption rides in the OOB description; the XEP-0447 share
//! carries the XEP-0446 metadata (type, name, size, dimensions, SHA-256) and
//! a XEP-0264 thumbnail whose bytes travel in the same message as XEP-0231
//! data, so the preview needs no round trip, also for a recipient who was
//! offline. A XEP-0334 hint asks the server to store it.
//!
//! Where downloads are tracked, the recipient's own URL
//! ([`personal_url`]) is the one written into the body, the OOB and the
//! share. The message then goes out as the sender (XEP-0356) or from
//! Satchel's own JID naming the sender (XEP-0033 `ofrom`, XEP-0172 nick), as
//! the delivery task decided ([`crate::relay::delivery::route`]).

use std::num::NonZeroU16;

use jid::{BareJid, Jid};
use minidom::Element;
use xmpp_parsers::disco::DiscoInfoQuery;
use xmpp_parsers::hashes::{Algo, Hash};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jingle_thumbnails::Thumbnail as ThumbnailReference;
use xmpp_parsers::message::{Id, Lang, Message, MessageType};
use xmpp_parsers::nick::Nick;
use xmpp_parsers::oob::Oob;

use super::delivery::Composer;
use super::record::{FileFacts, RelayRecord};
use super::reports;
use crate::media::is_inline_safe;
use crate::storage::downloads::personal_url;
use crate::xmpp::addresses::Addresses;
use crate::xmpp::bob::Data as BobData;
use crate::xmpp::file_metadata::File;
use crate::xmpp::hints::Hint;
use crate::xmpp::privilege::{send_as, PrivilegeVersion};
use crate::xmpp::sfs::{Disposition, FileSharing, Sources, UrlData};

/// Builds the stanzas the delivery task sends, for the component `component`
/// of the server `server`.
pub struct RelayComposer {
    pub component: BareJid,
    pub server: BareJid,
}

impl Composer for RelayComposer {
    fn message(
        &self,
        relay: &RelayRecord,
        index: usize,
        message_id: &str,
        as_sender: Option<PrivilegeVersion>,
    ) -> Element {
        let message = media_message(relay, index, message_id);
        let sender: Option<BareJid> = relay.sender.parse().ok();
        match (as_sender, sender) {
            (Some(version), Some(sender)) => send_as(
                version,
                self.component.clone().into(),
                self.server.clone().into(),
                sender,
                message,
            )
            .into(),
            (_, sender) => self.naming_the_sender(message, sender).into(),
        }
    }

    fn probe(&self, recipient: &str, query_id: &str) -> Element {
        let mut iq = Iq::from_get(query_id, DiscoInfoQuery { node: None })
            .with_from(self.component.clone().into());
        if let Ok(recipient) = recipient.parse::<Jid>() {
            iq = iq.with_to(recipient);
        }
        iq.into()
    }

    fn failure_report(&self, relay: &RelayRecord, index: usize, condition: &str) -> Element {
        reports::failure(&self.component, relay, index, condition)
    }
}

impl RelayComposer {
    /// `message` from Satchel's own JID, naming its sender so that the
    /// recipient's client can say who shared the file.
    fn naming_the_sender(&self, mut message: Message, sender: Option<BareJid>) -> Message {
        message.from = Some(self.component.clone().into());
        if let Some(sender) = sender {
            let nick = sender
                .node()
                .map(|node| node.as_str().to_owned())
                .unwrap_or_else(|| sender.to_string());
            message
                .payloads
                .push(Addresses::original_sender(sender.into()).into());
            message.payloads.push(Nick(nick).into());
        }
        message
    }
}

/// The chat message recipient `index` of `relay` gets, not yet addressed
/// from anyone.
pub fn media_message(relay: &RelayRecord, index: usize, message_id: &str) -> Message {
    let recipient = &relay.recipients[index];
    let url = match &recipient.download_token {
        Some(token) => personal_url(&relay.url, token),
        None => relay.url.clone(),
    };
    let thumbnail = relay.facts.thumbnail.as_ref().and_then(|preview| {
        let data = BobData::new(
            preview.media_type.clone(),
            preview.max_age,
            preview.bytes.clone(),
        )
        .ok()?;
        Some((data, preview.width, preview.height))
    });
    let mut file = metadata(&relay.facts);
    if let Some((data, width, height)) = &thumbnail {
        file.thumbnails.push(ThumbnailReference {
            uri: format!("cid:{}", data.cid),
            media_type: Some(data.media_type.clone()),
            width: width.and_then(NonZeroU16::new),
            height: height.and_then(NonZeroU16::new),
        });
    }

    let mut message = Message::new_with_type(MessageType::Chat, recipient.jid.parse::<Jid>().ok())
        .with_body(Lang::new(), url.clone());
    message.id = Some(Id(message_id.to_owned()));
    message = message
        .with_payload(Oob {
            url: url.clone(),
            desc: relay.caption.clone(),
        })
        .with_payload(share(url, file));
    if let Some((data, _, _)) = thumbnail {
        message = message.with_payload(data);
    }
    message.with_payload(Hint::Store)
}

/// The XEP-0446 metadata of the file, without its thumbnail.
fn metadata(facts: &FileFacts) -> File {
    File {
        media_type: facts.media_type.clone(),
        name: facts.name.clone(),
        size: facts.size,
        width: facts.width,
        height: facts.height,
        hashes: facts
            .sha256
            .map(|digest| Hash::new(Algo::Sha_256, digest.to_vec()))
            .into_iter()
            .collect(),
        ..File::default()
    }
}

/// The XEP-0447 share of `file` at `url`: shown inline only for media a
/// browser shows without running anything ([`is_inline_safe`]).
fn share(url: String, file: File) -> FileSharing {
    let disposition = match &file.media_type {
        Some(media_type) if is_inline_safe(media_type) => Disposition::Inline,
        _ => Disposition::Attachment,
    };
    FileSharing {
        disposition: Some(disposition),
        id: None,
        file,
        sources: Sources {
            url_data: vec![UrlData { target: url }],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::legacy::RelayRecordWithXml;
    use crate::relay::record::samples::relay_to;
    use crate::relay::record::Preview;

    fn composer() -> RelayComposer {
        RelayComposer {
            component: "upload.example.org".parse().unwrap(),
            server: "example.org".parse().unwrap(),
        }
    }

    /// `xml` laid out on several lines, as the XEPs print it.
    fn element(xml: &str) -> Element {
        let compact: String = xml.lines().map(str::trim).collect();
        compact.parse().unwrap()
    }

    /// The child of `parent` named `name` in `namespace`, which must be there once.
    fn only_child<'a>(parent: &'a Element, name: &str, namespace: &str) -> &'a Element {
        let mut found = parent.children().filter(|c| c.is(name, namespace));
        let child = found.next().unwrap_or_else(|| panic!("no <{name}/>"));
        assert!(found.next().is_none(), "more than one <{name}/>");
        child
    }

    /// The PNG of the XEP-0231 examples.
    fn xep_0231_png() -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(
                "iVBORw0KGgoAAAANSUhEUgAAAAoAAAAKCAYAAACNMs+9AAAABGdBTUEAALGP\
                 C/xhBQAAAAlwSFlzAAALEwAACxMBAJqcGAAAAAd0SU1FB9YGARc5KB0XV+IA\
                 AAAddEVYdENvbW1lbnQAQ3JlYXRlZCB3aXRoIFRoZSBHSU1Q72QlbgAAAF1J\
                 REFUGNO9zL0NglAAxPEfdLTs4BZM4DIO4C7OwQg2JoQ9LE1exdlYvBBeZ7jq\
                 ch9//q1uH4TLzw4d6+ErXMMcXuHWxId3KOETnnXXV6MJpcq2MLaI97CER3N0\
                 vr4MkhoXe0rZigAAAABJRU5ErkJggg==",
            )
            .unwrap()
    }

    /// romeo's summit.jpg of XEP-0447, relayed by Satchel to juliet.
    fn summit() -> RelayRecord {
        let mut relay = relay_to(&["juliet@shakespeare.lit"]);
        relay.sender = "romeo@montague.lit".into();
        relay.url =
            "https://download.montague.lit/4a771ac1-f0b2-4a4a-9700-f2a26fa2bb67/summit.jpg".into();
        relay.caption = Some("Photo from the summit.".into());
        relay.facts = FileFacts {
            media_type: Some("image/jpeg".into()),
            name: Some("summit.jpg".into()),
            size: Some(3_032_449),
            sha256: Some([0x5a; 32]),
            width: Some(4096),
            height: Some(2160),
            thumbnail: Some(Preview {
                media_type: "image/png".into(),
                bytes: xep_0231_png(),
                width: Some(128),
                height: Some(96),
                max_age: Some(86_400),
            }),
        };
        relay
    }

    fn summit_message() -> Element {
        composer().message(&summit(), 0, "sharing-a-file", None)
    }

    /// XEP-0447 §3.1, "Sharing summit.jpg with juliet@shakespeare.lit", with
    /// what Satchel knows and writes differently: XEP-0446 0.2.0's
    /// `<width/>` and `<height/>` for `<dimensions/>`, the SHA-256 Satchel
    /// computed for the two hashes, the caption in the OOB description
    /// rather than a `<desc/>`, the cid of the thumbnail's real bytes, and
    /// no Jingle source.
    #[test]
    fn the_share_is_the_xep_0447_example() {
        let expected = element(
            "<file-sharing xmlns='urn:xmpp:sfs:0' disposition='inline'>
               <file xmlns='urn:xmpp:file:metadata:0'>
                 <media-type>image/jpeg</media-type>
                 <name>summit.jpg</name>
                 <size>3032449</size>
                 <width>4096</width>
                 <height>2160</height>
                 <hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=</hash>
                 <thumbnail xmlns='urn:xmpp:thumbs:1' uri='cid:sha1+4b97ce7f0f06a0e05999f3c719cd5b4f3da992a7@bob.xmpp.org' media-type='image/png' width='128' height='96'/>
               </file>
               <sources>
                 <url-data xmlns='http://jabber.org/protocol/url-data' target='https://download.montague.lit/4a771ac1-f0b2-4a4a-9700-f2a26fa2bb67/summit.jpg' />
               </sources>
             </file-sharing>",
        );
        let message = summit_message();
        let built = only_child(&message, "file-sharing", crate::xmpp::sfs::NS);
        assert_eq!(built, &expected);
    }

    /// XEP-0446 0.2.0 element by element: what a file whose bytes Satchel
    /// cannot read (client-encrypted) says: its name alone.
    #[test]
    fn the_metadata_states_only_what_is_known() {
        let expected =
            element("<file xmlns='urn:xmpp:file:metadata:0'><name>test.txt</name></file>");
        let facts = FileFacts {
            name: Some("test.txt".into()),
            ..FileFacts::default()
        };
        assert_eq!(Element::from(metadata(&facts)), expected);
        let disposition = share("aesgcm://h/f#k".into(), metadata(&facts)).disposition;
        assert_eq!(
            disposition,
            Some(Disposition::Attachment),
            "no type, not shown inline"
        );
    }

    /// XEP-0264: the thumbnail reference of the XEP-0447 example, pointing
    /// at the bytes in the same message.
    #[test]
    fn the_thumbnail_is_the_xep_0264_example_and_its_bytes_are_the_xep_0231_data() {
        let message = summit_message();
        let file = only_child(
            only_child(&message, "file-sharing", crate::xmpp::sfs::NS),
            "file",
            crate::xmpp::file_metadata::NS,
        );
        let reference = only_child(file, "thumbnail", "urn:xmpp:thumbs:1");
        assert_eq!(reference.attr("media-type"), Some("image/png"));
        assert_eq!(
            (reference.attr("width"), reference.attr("height")),
            (Some("128"), Some("96"))
        );
        // XEP-0231's example data, its cid that of its bytes (the XEP's own is illustrative).
        let data = only_child(&message, "data", crate::xmpp::bob::NS);
        let expected = BobData::try_from(element(
            "<data xmlns='urn:xmpp:bob' cid='sha1+4b97ce7f0f06a0e05999f3c719cd5b4f3da992a7@bob.xmpp.org' max-age='86400' type='image/png'>
             iVBORw0KGgoAAAANSUhEUgAAAAoAAAAKCAYAAACNMs+9AAAABGdBTUEAALGP
             C/xhBQAAAAlwSFlzAAALEwAACxMBAJqcGAAAAAd0SU1FB9YGARc5KB0XV+IA
             AAAddEVYdENvbW1lbnQAQ3JlYXRlZCB3aXRoIFRoZSBHSU1Q72QlbgAAAF1J
             REFUGNO9zL0NglAAxPEfdLTs4BZM4DIO4C7OwQg2JoQ9LE1exdlYvBBeZ7jq
             ch9//q1uH4TLzw4d6+ErXMMcXuHWxId3KOETnnXXV6MJpcq2MLaI97CER3N0
             vr4MkhoXe0rZigAAAABJRU5ErkJggg==</data>",
        ))
        .unwrap();
        assert_eq!(data, &Element::from(expected.clone()));
        assert_eq!(
            reference.attr("uri"),
            Some(format!("cid:{}", expected.cid).as_str())
        );
    }

    /// XEP-0066 §3, "Sender Communicates a URI": the `<x/>` of the example,
    /// and the URL as the body.
    #[test]
    fn the_url_is_the_xep_0066_example_and_the_body() {
        let mut relay = relay_to(&["MaineBoy@jabber.org"]);
        relay.url = "http://www.jabber.org/images/psa-license.jpg".into();
        let message = composer().message(&relay, 0, "m", None);
        let expected = element(
            "<x xmlns='jabber:x:oob'>
               <url>http://www.jabber.org/images/psa-license.jpg</url>
             </x>",
        );
        assert_eq!(only_child(&message, "x", "jabber:x:oob"), &expected);
        let body = only_child(&message, "body", "jabber:component:accept");
        assert_eq!(body.text(), "http://www.jabber.org/images/psa-license.jpg");
        assert_eq!(
            message.children().next(),
            Some(body),
            "the body comes first"
        );
    }

    #[test]
    fn the_caption_is_the_oob_description() {
        let message = summit_message();
        let oob = Oob::try_from(only_child(&message, "x", "jabber:x:oob").clone()).unwrap();
        assert_eq!(oob.desc.as_deref(), Some("Photo from the summit."));
    }

    /// XEP-0334 and XEP-0447 §3.1 "without fallback": the store hint.
    #[test]
    fn the_message_asks_to_be_stored() {
        let message = summit_message();
        assert_eq!(
            only_child(&message, "store", "urn:xmpp:hints"),
            &element("<store xmlns='urn:xmpp:hints' />")
        );
    }

    /// XEP-0033 `ofrom` and XEP-0172: from Satchel, the message names the sender.
    #[test]
    fn from_satchel_the_sender_is_named_by_ofrom_and_nick() {
        let message = summit_message();
        assert_eq!(message.attr("from"), Some("upload.example.org"));
        assert_eq!(message.attr("to"), Some("juliet@shakespeare.lit"));
        assert_eq!(message.attr("type"), Some("chat"));
        assert_eq!(message.attr("id"), Some("sharing-a-file"));
        assert_eq!(
            only_child(&message, "addresses", crate::xmpp::addresses::NS),
            &element(
                "<addresses xmlns='http://jabber.org/protocol/address'>
                   <address type='ofrom' jid='romeo@montague.lit'/>
                 </addresses>"
            )
        );
        assert_eq!(
            only_child(&message, "nick", "http://jabber.org/protocol/nick"),
            &element("<nick xmlns='http://jabber.org/protocol/nick'>romeo</nick>")
        );
    }

    /// XEP-0356: as the sender, wrapped for the server, without `ofrom` or nick.
    #[test]
    fn as_the_sender_the_message_is_forwarded_by_the_server() {
        let wrapper =
            composer().message(&summit(), 0, "sharing-a-file", Some(PrivilegeVersion::V2));
        assert_eq!(wrapper.attr("to"), Some("example.org"));
        let inner = only_child(
            only_child(
                only_child(&wrapper, "privilege", "urn:xmpp:privilege:2"),
                "forwarded",
                "urn:xmpp:forward:0",
            ),
            "message",
            "jabber:client",
        );
        assert_eq!(inner.attr("from"), Some("romeo@montague.lit"));
        assert!(!inner.has_child("addresses", crate::xmpp::addresses::NS));
        assert!(!inner.has_child("nick", "http://jabber.org/protocol/nick"));
    }

    /// A URL holding `&` (escaped in XML) becomes each recipient's own.
    #[test]
    fn a_personal_url_is_a_value_in_every_place() {
        let mut relay = relay_to(&["bob@example.org"]);
        relay.url = "https://h/file/x/a&b.jpg#k&y".into();
        relay.recipients[0].download_token = Some("t0k".into());
        let message = composer().message(&relay, 0, "m", None);
        let personal = "https://h/file/x/a&b.jpg?r=t0k#k&y";
        assert_eq!(
            only_child(&message, "body", "jabber:component:accept").text(),
            personal
        );
        let oob = Oob::try_from(only_child(&message, "x", "jabber:x:oob").clone()).unwrap();
        assert_eq!(oob.url, personal);
        let share = FileSharing::try_from(
            only_child(&message, "file-sharing", crate::xmpp::sfs::NS).clone(),
        )
        .unwrap();
        assert_eq!(share.sources.url_data[0].target, personal);
    }

    /// A relay stored by the version that kept XML text, with its
    /// recipient's token (`src/relay/testdata/`).
    fn stored_with_xml(hex_file: &str) -> RelayRecord {
        let bytes = hex::decode(hex_file.trim()).unwrap();
        postcard::from_bytes::<RelayRecordWithXml>(&bytes)
            .unwrap()
            .into()
    }

    /// After an upgrade, a relay stored with XML text gets the message the
    /// previous version sent for it (`src/relay/testdata/`, written by that
    /// version), token, thumbnail and all.
    #[test]
    fn relays_stored_with_xml_get_the_message_the_previous_version_sent() {
        let photo = stored_with_xml(include_str!("testdata/record_with_xml_photo.hex"));
        let encrypted = stored_with_xml(include_str!("testdata/record_with_xml_encrypted.hex"));
        for (relay, as_sender, sent_then) in [
            (
                &photo,
                None,
                include_str!("testdata/message_photo_from_satchel.xml"),
            ),
            (
                &photo,
                Some(PrivilegeVersion::V2),
                include_str!("testdata/message_photo_as_sender.xml"),
            ),
            (
                &encrypted,
                None,
                include_str!("testdata/message_encrypted_from_satchel.xml"),
            ),
            (
                &encrypted,
                Some(PrivilegeVersion::V1),
                include_str!("testdata/message_encrypted_as_sender_v1.xml"),
            ),
        ] {
            let now = composer().message(relay, 0, "msgid-0-1", as_sender);
            assert_eq!(now, element(sent_then), "{sent_then}");
        }
    }
}
