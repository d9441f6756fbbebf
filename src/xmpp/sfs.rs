//! XEP-0447 Stateless file sharing 0.3.1, with its XEP-0103 `<url-data/>`
//! source.
//!
//! A `<file-sharing/>` element shares one file: its XEP-0446 metadata and the
//! sources it can be fetched from. Every message the relay delivers carries
//! one, whose only source is Satchel's own GET URL; a relay request may carry
//! one too, for the thumbnail its sender made.
//!
//! Sources of other kinds (`<jinglepub/>`, XEP-0448 `<encrypted/>`, and any
//! later ones) are ignored when parsing: a share Satchel sends names only the
//! source it vouches for, so it has no use for them.

use std::borrow::Cow;

use xso::error::Error;
use xso::{AsXml, AsXmlText, FromXml, FromXmlText};

use xmpp_parsers::message::MessagePayload;

use crate::xmpp::file_metadata::File;

/// Namespace of the `<file-sharing/>` element.
pub const NS: &str = "urn:xmpp:sfs:0";

/// Namespace of the XEP-0103 `<url-data/>` element.
pub const URL_DATA_NS: &str = "http://jabber.org/protocol/url-data";

/// How the sender wants the file shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Display the file in the conversation, fetching it without asking.
    Inline,
    /// Offer the file for download; do not fetch it without asking.
    Attachment,
}

impl FromXmlText for Disposition {
    fn from_xml_text(text: String) -> Result<Self, Error> {
        match text.as_str() {
            "inline" => Ok(Self::Inline),
            "attachment" => Ok(Self::Attachment),
            _ => Err(Error::Other("Unknown file-sharing disposition.")),
        }
    }
}

impl AsXmlText for Disposition {
    fn as_xml_text(&self) -> Result<Cow<'_, str>, Error> {
        Ok(Cow::Borrowed(match self {
            Self::Inline => "inline",
            Self::Attachment => "attachment",
        }))
    }
}

/// A XEP-0103 `<url-data target=URL/>` source.
///
/// XEP-0104 `<scheme/>` children (extra HTTP request information) are
/// ignored: Satchel fetches with a plain GET.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = URL_DATA_NS, name = "url-data", on_unknown_child = Discard)]
pub struct UrlData {
    /// The URL of the file.
    #[xml(attribute)]
    pub target: String,
}

/// A `<file-sharing/>` element.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS, name = "file-sharing", on_unknown_child = Discard)]
pub struct FileSharing {
    /// How the sender wants the file shown; the receiver decides by media
    /// type when absent.
    #[xml(attribute(default))]
    pub disposition: Option<Disposition>,

    /// Identifies the share, so that sources can be attached to it later.
    #[xml(attribute(default))]
    pub id: Option<String>,

    /// What the file is.
    #[xml(child)]
    pub file: File,

    /// Where to fetch the file; written even when it names no source.
    #[xml(child(default))]
    pub sources: Sources,
}

/// The `<sources/>` of a share: only its `<url-data/>` children are kept.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq, Default)]
#[xml(namespace = NS, name = "sources", on_unknown_child = Discard)]
pub struct Sources {
    /// The `<url-data/>` sources, in the sender's order of preference.
    #[xml(child(n = ..))]
    pub url_data: Vec<UrlData>,
}

impl MessagePayload for FileSharing {}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;
    use xso::error::FromElementError;

    fn parse(xml: &str) -> Result<FileSharing, FromElementError> {
        FileSharing::try_from(xml.parse::<Element>().unwrap())
    }

    /// XEP-0447 0.2.0, "Sharing summit.jpg with juliet@shakespeare.lit". Its jinglepub
    /// source and its pre-0.2.0 XEP-0446 `<dimensions/>` are ignored.
    #[test]
    fn parses_the_xep_example() {
        let share = parse(
            "<file-sharing xmlns='urn:xmpp:sfs:0' disposition='inline'>
              <file xmlns='urn:xmpp:file:metadata:0'>
                <media-type>image/jpeg</media-type>
                <name>summit.jpg</name>
                <size>3032449</size>
                <dimensions>4096x2160</dimensions>
                <hash xmlns='urn:xmpp:hashes:2' algo='sha3-256'>2XarmwTlNxDAMkvymloX3S5+VbylNrJt/l5QyPa+YoU=</hash>
                <hash xmlns='urn:xmpp:hashes:2' algo='id-blake2b256'>2AfMGH8O7UNPTvUVAM9aK13mpCY=</hash>
                <desc>Photo from the summit.</desc>
                <thumbnail xmlns='urn:xmpp:thumbs:1' uri='cid:sha1+ffd7c8d28e9c5e82afea41f97108c6b4@bob.xmpp.org' media-type='image/png' width='128' height='96'/>
              </file>
              <sources>
                <url-data xmlns='http://jabber.org/protocol/url-data' target='https://download.montague.lit/4a771ac1-f0b2-4a4a-9700-f2a26fa2bb67/summit.jpg' />
                <jinglepub xmlns='urn:xmpp:jinglepub:1' from='romeo@montague.lit/resource' id='9559976B-3FBF-4E7E-B457-2DAA225972BB'>
                  <description xmlns='urn:xmpp:jingle:apps:file-transfer:5' />
                </jinglepub>
              </sources>
            </file-sharing>",
        )
        .unwrap();
        assert_eq!(share.disposition, Some(Disposition::Inline));
        assert_eq!(share.id, None);
        assert_eq!(share.file.name.as_deref(), Some("summit.jpg"));
        assert_eq!(share.file.size, Some(3_032_449));
        assert_eq!((share.file.width, share.file.height), (None, None));
        assert_eq!(share.file.hashes.len(), 2);
        assert_eq!(share.file.thumbnails.len(), 1);
        assert_eq!(
            share.sources.url_data,
            [UrlData {
                target:
                    "https://download.montague.lit/4a771ac1-f0b2-4a4a-9700-f2a26fa2bb67/summit.jpg"
                        .to_owned()
            }]
        );
    }

    /// After XEP-0447, "Sharing summit.jpg with juliet@shakespeare.lit without
    /// fallback": a share in a message, next to the store hint.
    #[test]
    fn parses_a_share_inside_a_message() {
        let message: Element = "<message xmlns='jabber:component:accept' to='juliet@shakespeare.lit' \
                 from='romeo@montague.lit/resource' id='sharing-a-file'>\
               <file-sharing xmlns='urn:xmpp:sfs:0' disposition='attachment' id='share-1'>\
                 <file xmlns='urn:xmpp:file:metadata:0'><name>notes.txt</name></file>\
                 <sources><url-data xmlns='http://jabber.org/protocol/url-data' target='https://e.org/n'/></sources>\
               </file-sharing>\
               <store xmlns='urn:xmpp:hints'/>\
             </message>"
            .parse()
            .unwrap();
        let mut message = xmpp_parsers::message::Message::try_from(message).unwrap();
        let share = message.extract_payload::<FileSharing>().unwrap().unwrap();
        assert_eq!(share.disposition, Some(Disposition::Attachment));
        assert_eq!(share.id.as_deref(), Some("share-1"));
        assert_eq!(share.sources.url_data[0].target, "https://e.org/n");
    }

    #[test]
    fn builds_and_round_trips() {
        let share = FileSharing {
            disposition: Some(Disposition::Inline),
            id: None,
            file: File {
                media_type: Some("image/png".to_owned()),
                size: Some(42),
                ..File::default()
            },
            sources: Sources {
                url_data: vec![UrlData {
                    target: "https://satchel.example.org/f/abc".to_owned(),
                }],
            },
        };
        let expected: Element = "<file-sharing xmlns='urn:xmpp:sfs:0' disposition='inline'>\
               <file xmlns='urn:xmpp:file:metadata:0'><media-type>image/png</media-type><size>42</size></file>\
               <sources><url-data xmlns='http://jabber.org/protocol/url-data' target='https://satchel.example.org/f/abc'/></sources>\
             </file-sharing>"
            .parse()
            .unwrap();
        let built = Element::from(share.clone());
        assert_eq!(built, expected);
        assert_eq!(FileSharing::try_from(built).unwrap(), share);
    }

    #[test]
    fn a_share_without_sources_has_none() {
        let share = parse(
            "<file-sharing xmlns='urn:xmpp:sfs:0'><file xmlns='urn:xmpp:file:metadata:0'/></file-sharing>",
        )
        .unwrap();
        assert!(share.sources.url_data.is_empty());
        assert_eq!(share.disposition, None);
    }

    #[test]
    fn rejects_a_share_without_file() {
        assert!(matches!(
            parse("<file-sharing xmlns='urn:xmpp:sfs:0'><sources/></file-sharing>"),
            Err(FromElementError::Invalid(_))
        ));
    }

    #[test]
    fn rejects_an_unknown_disposition() {
        assert!(parse(
            "<file-sharing xmlns='urn:xmpp:sfs:0' disposition='popup'>\
               <file xmlns='urn:xmpp:file:metadata:0'/></file-sharing>"
        )
        .is_err());
    }

    #[test]
    fn rejects_url_data_without_target() {
        assert!(parse(
            "<file-sharing xmlns='urn:xmpp:sfs:0'><file xmlns='urn:xmpp:file:metadata:0'/>\
               <sources><url-data xmlns='http://jabber.org/protocol/url-data'/></sources>\
             </file-sharing>"
        )
        .is_err());
    }
}
