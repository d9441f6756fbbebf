//! The durable half of a relay: what must be delivered, to whom, and how far
//! each recipient has got.
//!
//! A relay is acknowledged to its sender only once its record is on disk
//! (flushed), so an acknowledged relay survives a crash of Satchel or of the
//! XMPP server. Each recipient's state changes in place; the record goes away
//! once every recipient has reached a final state. Timing (backoff, who is
//! online) is deliberately not stored: after a restart everything pending is
//! simply tried again, which is what "at least once" asks for.

use serde::{Deserialize, Serialize};

use crate::storage::FileId;

/// A relay's random name; also the stem of the ids of its messages.
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// Bare JID.
    pub jid: String,
    pub status: DeliveryStatus,
    /// The `?r=` token of this recipient's URL, when downloads are tracked.
    pub download_token: Option<String>,
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
    /// The URL as the sender gave it.
    pub url: String,
    /// Unix seconds; after this the file is gone and delivery stops.
    pub expires: u64,
    /// The children every recipient's message carries, as XML text.
    pub payload: String,
    pub recipients: Vec<Recipient>,
}

impl RelayRecord {
    pub fn is_complete(&self) -> bool {
        self.recipients.iter().all(|r| r.status.is_final())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database error: {0}")]
    Db(#[from] sled::Error),
    #[error("undecodable relay record: {0}")]
    Decode(#[from] postcard::Error),
}

/// The relays not yet fully delivered, in their own sled tree.
#[derive(Clone)]
pub struct Outbox {
    tree: sled::Tree,
}

impl Outbox {
    pub fn new(tree: sled::Tree) -> Outbox {
        Outbox { tree }
    }

    /// Stores a new relay and waits until it is on disk.
    pub fn insert(&self, record: &RelayRecord) -> Result<(), OutboxError> {
        self.tree
            .insert(record.id.0, postcard::to_stdvec(record)?)?;
        self.tree.flush()?;
        Ok(())
    }

    /// Every stored relay, for the delivery task to resume after a start.
    pub fn all(&self) -> Result<Vec<RelayRecord>, OutboxError> {
        self.tree
            .iter()
            .values()
            .map(|value| Ok(postcard::from_bytes(&value?)?))
            .collect()
    }

    /// Sets one recipient's status; deletes the relay once every recipient is done.
    ///
    /// Returns the record as it now stands (`None` if it was unknown).
    pub fn set_status(
        &self,
        id: RelayId,
        recipient: usize,
        status: DeliveryStatus,
    ) -> Result<Option<RelayRecord>, OutboxError> {
        let Some(bytes) = self.tree.get(id.0)? else {
            return Ok(None);
        };
        let mut record: RelayRecord = postcard::from_bytes(&bytes)?;
        let Some(slot) = record.recipients.get_mut(recipient) else {
            return Ok(Some(record));
        };
        slot.status = status;
        if record.is_complete() {
            self.tree.remove(id.0)?;
        } else {
            self.tree.insert(id.0, postcard::to_stdvec(&record)?)?;
        }
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(recipients: &[&str]) -> RelayRecord {
        RelayRecord {
            id: RelayId::random(),
            sender: "alice@example.org".into(),
            sender_full: "alice@example.org/phone".into(),
            request_id: "m1".into(),
            file: FileId([3; 16]),
            url: "https://upload.example.org/file/x/a.jpg".into(),
            expires: u64::MAX,
            payload: "<body xmlns='jabber:component:accept'>u</body>".into(),
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

    fn outbox() -> (Outbox, sled::Db) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        (Outbox::new(db.open_tree("relays").unwrap()), db)
    }

    #[test]
    fn relays_stay_until_every_recipient_is_done() {
        let (outbox, _db) = outbox();
        let relay = record(&["bob@example.org", "carol@example.org"]);
        outbox.insert(&relay).unwrap();
        assert_eq!(outbox.all().unwrap(), vec![relay.clone()]);
        let after = outbox
            .set_status(relay.id, 0, DeliveryStatus::Delivered)
            .unwrap()
            .unwrap();
        assert!(!after.is_complete());
        assert_eq!(
            outbox.all().unwrap()[0].recipients[0].status,
            DeliveryStatus::Delivered
        );
        let done = outbox
            .set_status(relay.id, 1, DeliveryStatus::Failed("item-not-found".into()))
            .unwrap()
            .unwrap();
        assert!(done.is_complete());
        assert!(outbox.all().unwrap().is_empty());
    }

    #[test]
    fn unknown_relays_and_recipients_are_harmless() {
        let (outbox, _db) = outbox();
        assert_eq!(
            outbox
                .set_status(RelayId::random(), 0, DeliveryStatus::Delivered)
                .unwrap(),
            None
        );
        let relay = record(&["bob@example.org"]);
        outbox.insert(&relay).unwrap();
        let unchanged = outbox
            .set_status(relay.id, 7, DeliveryStatus::Delivered)
            .unwrap()
            .unwrap();
        assert_eq!(unchanged, relay);
    }

    #[test]
    fn relays_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let relay = record(&["bob@example.org"]);
        {
            let db = sled::open(dir.path()).unwrap();
            Outbox::new(db.open_tree("relays").unwrap())
                .insert(&relay)
                .unwrap();
        }
        let db = sled::open(dir.path()).unwrap();
        assert_eq!(
            Outbox::new(db.open_tree("relays").unwrap()).all().unwrap(),
            vec![relay]
        );
    }
}
