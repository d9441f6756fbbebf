//! Relays stored by earlier versions of Satchel, read back as today's
//! [`RelayRecord`].
//!
//! Until records held facts, the children common to every recipient's
//! message were stored as XML text (`payload`), parsed again at send time,
//! and a recipient's personal URL was swapped in by text replacement. An
//! outbox written then may still hold relays owed to someone after an
//! upgrade: their payload is parsed once more, into facts, with the same
//! XEP types that build the message now, so the recipient gets the message
//! the old version would have sent.

use minidom::Element;
use serde::Deserialize;
use tracing::warn;
use xmpp_parsers::hashes::Algo;
use xmpp_parsers::ns;
use xmpp_parsers::oob::Oob;

use super::record::{FileFacts, Preview, Recipient, RelayId, RelayRecord};
use crate::storage::FileId;
use crate::xmpp::bob::Data as BobData;
use crate::xmpp::sfs::FileSharing;

/// A relay as Satchel stored it while the message was kept as XML text.
///
/// Field for field the previous `RelayRecord`: postcard needs the exact
/// order and types to read it.
#[derive(Debug, Deserialize)]
pub struct RelayRecordWithXml {
    pub id: RelayId,
    pub sender: String,
    pub sender_full: String,
    pub request_id: String,
    pub file: FileId,
    pub url: String,
    pub expires: u64,
    /// The children every recipient's message carries, as XML text in the
    /// component namespace: body, OOB, file sharing, thumbnail data, hint.
    pub payload: String,
    pub recipients: Vec<Recipient>,
}

impl From<RelayRecordWithXml> for RelayRecord {
    fn from(old: RelayRecordWithXml) -> RelayRecord {
        let payload = parse_payload(&old.payload).unwrap_or_else(|| {
            warn!(relay = %old.id, "unreadable stored message; the recipients get the URL alone");
            Vec::new()
        });
        RelayRecord {
            id: old.id,
            sender: old.sender,
            sender_full: old.sender_full,
            request_id: old.request_id,
            file: old.file,
            url: old.url,
            caption: caption(&payload),
            facts: facts(&payload),
            expires: old.expires,
            recipients: old.recipients,
        }
    }
}

/// The stored children, as the old version parsed them before sending.
fn parse_payload(text: &str) -> Option<Vec<Element>> {
    let wrapper: Element = format!("<payload xmlns='{}'>{text}</payload>", ns::DEFAULT_NS)
        .parse()
        .ok()?;
    Some(wrapper.children().cloned().collect())
}

/// The OOB description, where the old payload kept the caption.
fn caption(payload: &[Element]) -> Option<String> {
    payload
        .iter()
        .find(|child| child.is("x", ns::OOB))
        .and_then(|oob| Oob::try_from(oob.clone()).ok())
        .and_then(|oob| oob.desc)
}

/// The XEP-0446 metadata of the share, and the thumbnail its reference names.
fn facts(payload: &[Element]) -> FileFacts {
    let Some(share) = payload
        .iter()
        .find(|child| child.is("file-sharing", crate::xmpp::sfs::NS))
        .and_then(|share| FileSharing::try_from(share.clone()).ok())
    else {
        return FileFacts::default();
    };
    let file = share.file;
    let sha256 = file
        .hashes
        .iter()
        .find(|hash| hash.algo == Algo::Sha_256)
        .and_then(|hash| <[u8; 32]>::try_from(hash.hash.as_slice()).ok());
    let thumbnail = file.thumbnails.first().and_then(|reference| {
        let cid = reference.uri.strip_prefix("cid:")?;
        let data = payload
            .iter()
            .filter(|child| child.is("data", crate::xmpp::bob::NS))
            .find(|child| child.attr("cid") == Some(cid))
            .and_then(|data| BobData::try_from(data.clone()).ok())?;
        Some(Preview {
            media_type: data.media_type,
            bytes: data.data,
            width: reference.width.map(|side| side.get()),
            height: reference.height.map(|side| side.get()),
            max_age: data.max_age,
        })
    });
    FileFacts {
        media_type: file.media_type,
        name: file.name,
        size: file.size,
        sha256,
        width: file.width,
        height: file.height,
        thumbnail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::record::samples::photo_facts_stored_with_xml;

    /// The payload Satchel 0.1 stored for a JPEG with a caption and a
    /// thumbnail it made (`src/relay/testdata/`).
    const PHOTO_PAYLOAD: &str = include_str!("testdata/payload_photo.xml");

    #[test]
    fn a_stored_payload_becomes_facts() {
        let payload = parse_payload(PHOTO_PAYLOAD.trim()).unwrap();
        assert_eq!(caption(&payload).as_deref(), Some("Photo from the summit."));
        assert_eq!(facts(&payload), photo_facts_stored_with_xml());
    }

    #[test]
    fn an_unreadable_payload_leaves_the_url_alone() {
        let old = RelayRecordWithXml {
            id: RelayId([1; 16]),
            sender: "alice@example.org".into(),
            sender_full: "alice@example.org/phone".into(),
            request_id: "m1".into(),
            file: FileId([1; 16]),
            url: "https://upload.example.org/file/x/a.jpg".into(),
            expires: 7,
            payload: "<body>unclosed".into(),
            recipients: Vec::new(),
        };
        let record = RelayRecord::from(old);
        assert_eq!(record.url, "https://upload.example.org/file/x/a.jpg");
        assert_eq!((record.caption, record.facts), (None, FileFacts::default()));
    }
}
