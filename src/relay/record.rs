//! What a relay is, as stored: who sent which file to whom, what the message
//! says about the file, and how far each recipient has got.
//!
//! The record holds facts, not XML: the message each recipient gets is built
//! from them at send time ([`crate::relay::message`]), so a recipient's own
//! URL (when downloads are tracked) goes into the stanza as a value, and a
//! change in how Satchel writes a XEP does not need the stored relays
//! rewritten. Records are postcard-encoded by the [`Outbox`]; the shape
//! Satchel stored before this one, with the message as XML text, is still
//! read ([`crate::relay::legacy`]).
//!
//! [`Outbox`]: crate::relay::outbox::Outbox

use serde::{Deserialize, Serialize};

use crate::storage::FileId;

/// A relay's random name; also the stem of the ids of its messages
/// ([`crate::relay::delivery::AttemptId`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RelayId(pub [u8; 16]);

impl RelayId {
    pub fn random() -> RelayId {
        RelayId(rand::random())
    }
}

impl std::fmt::Display for RelayId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for RelayId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RelayId({self})")
    }
}

impl std::str::FromStr for RelayId {
    type Err = hex::FromHexError;

    fn from_str(text: &str) -> Result<RelayId, hex::FromHexError> {
        let mut id = [0; 16];
        hex::decode_to_slice(text, &mut id)?;
        Ok(RelayId(id))
    }
}

/// Where one recipient stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Ended by a permanent error; the text says which.
    Failed(String),
}

impl DeliveryStatus {
    pub fn is_final(&self) -> bool {
        !matches!(self, DeliveryStatus::Pending)
    }
}

/// One recipient of a relay.
///
/// Both record shapes store it as is ([`crate::relay::legacy`]): a change
/// here must come with a new shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// Bare JID.
    pub jid: String,
    pub status: DeliveryStatus,
    /// The `?r=` token of this recipient's URL, when downloads are tracked
    /// (see [`crate::storage::downloads::personal_url`]).
    pub download_token: Option<String>,
}

/// What Satchel knows of the relayed file, as every recipient's message
/// states it (XEP-0446 metadata and a XEP-0264 thumbnail). What cannot be
/// known is `None`, never guessed: for a file encrypted by the clients
/// (an `aesgcm://` URL) only the name is known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFacts {
    pub media_type: Option<String>,
    pub name: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<[u8; 32]>,
    /// Width of the image as displayed, in pixels.
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub thumbnail: Option<Preview>,
}

/// A thumbnail carried inside every recipient's message, bytes and all
/// (XEP-0231 data named by a XEP-0264 reference), so the preview needs no
/// round trip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub width: Option<u16>,
    pub height: Option<u16>,
    /// How long a client may cache it, in seconds (XEP-0231 `max-age`).
    pub max_age: Option<u32>,
}

/// One accepted relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayRecord {
    pub id: RelayId,
    /// Bare JID of the sender.
    pub sender: String,
    /// Full JID the request came from, for error reports.
    pub sender_full: String,
    /// The `id` of the sender's request, echoed in error reports.
    pub request_id: String,
    pub file: FileId,
    /// The URL as the sender gave it (an `aesgcm://` link keeps its key).
    pub url: String,
    /// The sender's words about the file (the request's body).
    pub caption: Option<String>,
    pub facts: FileFacts,
    /// Unix seconds; after this the file is gone and delivery stops.
    pub expires: u64,
    pub recipients: Vec<Recipient>,
}

impl RelayRecord {
    pub fn is_complete(&self) -> bool {
        self.recipients.iter().all(|r| r.status.is_final())
    }
}

/// Test records, written once for every test of the relay.
#[cfg(test)]
pub mod samples {
    use super::*;

    /// A relay of alice's `a.jpg` to `recipients`, all pending, never expiring.
    pub fn relay_to(recipients: &[&str]) -> RelayRecord {
        RelayRecord {
            id: RelayId::random(),
            sender: "alice@example.org".into(),
            sender_full: "alice@example.org/phone".into(),
            request_id: "m1".into(),
            file: FileId([1; 16]),
            url: "https://upload.example.org/file/01010101010101010101010101010101/a.jpg".into(),
            caption: None,
            facts: FileFacts {
                media_type: Some("image/jpeg".into()),
                name: Some("a.jpg".into()),
                ..FileFacts::default()
            },
            expires: u64::MAX,
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

    /// The facts of the photo in `src/relay/testdata/`, stored there by the
    /// version that kept the message as XML text.
    pub fn photo_facts_stored_with_xml() -> FileFacts {
        FileFacts {
            media_type: Some("image/jpeg".into()),
            name: Some("summit.jpg".into()),
            size: Some(3_032_449),
            sha256: Some([7; 32]),
            width: Some(4096),
            height: Some(2160),
            thumbnail: Some(Preview {
                media_type: "image/jpeg".into(),
                bytes: vec![0xff, 0xd8, 0xff, 0xe0, 0, 1, 2],
                width: Some(128),
                height: Some(68),
                max_age: Some(86_400),
            }),
        }
    }
}
