//! The durable half of a relay: the [`RelayRecord`]s not yet fully
//! delivered, in a side tree of the store's database (sled, or in a
//! cluster PostgreSQL, where the next leader finds them).
//!
//! A relay is acknowledged to its sender only once its record is on disk
//! (flushed), so an acknowledged relay survives a crash of Satchel or of the
//! XMPP server. Each recipient's state changes in place; the record goes away
//! once every recipient has reached a final state. Timing (backoff, who is
//! online) is deliberately not stored: after a restart everything pending is
//! simply tried again, which is what "at least once" asks for.
//!
//! A stored value is a format byte ([`FORMAT_FACTS`]) and the postcard
//! encoding of the record. Values written before the format byte existed
//! ([`RelayRecordWithXml`]) begin with their own key, the relay id, which
//! tells them apart; they are upgraded when read, and stored in the current
//! format at their next change.

use super::legacy::RelayRecordWithXml;
use super::record::{DeliveryStatus, RelayId, RelayRecord};
use crate::storage::{SideTree, StorageError};

/// The first byte of a value holding a [`RelayRecord`] as it is today.
pub const FORMAT_FACTS: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database error: {0}")]
    Db(#[from] StorageError),
    #[error("undecodable relay record: {0}")]
    Decode(#[from] postcard::Error),
    #[error("relay record in an unknown format ({0})")]
    UnknownFormat(u8),
}

/// The relays not yet fully delivered, in their own side tree.
#[derive(Clone)]
pub struct Outbox {
    tree: SideTree,
}

impl Outbox {
    pub fn new(tree: SideTree) -> Outbox {
        Outbox { tree }
    }

    /// Stores a new relay and waits until it is on disk.
    pub fn insert(&self, record: &RelayRecord) -> Result<(), OutboxError> {
        self.tree.insert(&record.id.0, &encode(record)?)?;
        self.tree.flush()?;
        Ok(())
    }

    /// Every stored relay, for the delivery task to resume after a start.
    pub fn all(&self) -> Result<Vec<RelayRecord>, OutboxError> {
        self.tree
            .entries()?
            .iter()
            .map(|(key, value)| decode(key, value))
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
        let Some(bytes) = self.tree.get(&id.0)? else {
            return Ok(None);
        };
        let mut record = decode(&id.0, &bytes)?;
        let Some(slot) = record.recipients.get_mut(recipient) else {
            return Ok(Some(record));
        };
        slot.status = status;
        if record.is_complete() {
            self.tree.remove(&id.0)?;
        } else {
            self.tree.insert(&id.0, &encode(&record)?)?;
        }
        Ok(Some(record))
    }
}

fn encode(record: &RelayRecord) -> Result<Vec<u8>, OutboxError> {
    Ok(postcard::to_extend(record, vec![FORMAT_FACTS])?)
}

/// Reads the value stored under `key`, in either format.
///
/// An older value is the postcard encoding of a [`RelayRecordWithXml`],
/// whose first field is the id, that is the key. A current value starts
/// with [`FORMAT_FACTS`] and then the id, so it starts with its key only
/// if the id is sixteen times that byte.
fn decode(key: &[u8], value: &[u8]) -> Result<RelayRecord, OutboxError> {
    if value.starts_with(key) {
        let old: RelayRecordWithXml = postcard::from_bytes(value)?;
        return Ok(old.into());
    }
    match value.split_first() {
        Some((&FORMAT_FACTS, record)) => Ok(postcard::from_bytes(record)?),
        Some((&format, _)) => Err(OutboxError::UnknownFormat(format)),
        None => Err(OutboxError::Decode(
            postcard::Error::DeserializeUnexpectedEnd,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::record::samples::{photo_facts_stored_with_xml, relay_to};
    use crate::storage::test_support::{service_test_store, TestStore};
    use crate::storage::Tree;

    /// An outbox in a throwaway store, which must outlive it.
    fn outbox() -> (Outbox, TestStore) {
        let t = service_test_store();
        (Outbox::new(t.store.open_tree(Tree::Relays).unwrap()), t)
    }

    #[test]
    fn relays_stay_until_every_recipient_is_done() {
        let (outbox, _store) = outbox();
        let relay = relay_to(&["bob@example.org", "carol@example.org"]);
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
        let (outbox, _store) = outbox();
        assert_eq!(
            outbox
                .set_status(RelayId::random(), 0, DeliveryStatus::Delivered)
                .unwrap(),
            None
        );
        let relay = relay_to(&["bob@example.org"]);
        outbox.insert(&relay).unwrap();
        let unchanged = outbox
            .set_status(relay.id, 7, DeliveryStatus::Delivered)
            .unwrap()
            .unwrap();
        assert_eq!(unchanged, relay);
    }

    #[test]
    fn relays_survive_reopening() {
        let relay = relay_to(&["bob@example.org"]);
        let (outbox, t) = outbox();
        outbox.insert(&relay).unwrap();
        drop(outbox);
        let t = t.reopen();
        assert_eq!(
            Outbox::new(t.store.open_tree(Tree::Relays).unwrap())
                .all()
                .unwrap(),
            vec![relay]
        );
    }

    /// A record as Satchel stored it while it kept the message as XML text,
    /// byte for byte (`src/relay/testdata/`, written by that version).
    fn stored_with_xml(hex_file: &str) -> (RelayId, Vec<u8>) {
        let value = hex::decode(hex_file.trim()).unwrap();
        let id = RelayId(value[..16].try_into().unwrap());
        (id, value)
    }

    #[test]
    fn relays_stored_with_xml_are_read_as_facts_and_rewritten_at_their_next_change() {
        let (outbox, _store) = outbox();
        let (id, value) = stored_with_xml(include_str!("testdata/record_with_xml_photo.hex"));
        outbox.tree.insert(&id.0, &value).unwrap();
        let [record] = <[RelayRecord; 1]>::try_from(outbox.all().unwrap()).unwrap();
        assert_eq!(record.id, id);
        assert_eq!(record.sender, "alice@example.org");
        assert_eq!(record.sender_full, "alice@example.org/phone");
        assert_eq!(record.request_id, "m1");
        assert_eq!(record.file.to_string(), "0123456789abcdef0123456789abcdef");
        assert_eq!(
            record.url,
            "https://upload.example.org/file/0123456789abcdef0123456789abcdef/summit.jpg"
        );
        assert_eq!(record.expires, 1_900_000_000);
        assert_eq!(record.caption.as_deref(), Some("Photo from the summit."));
        assert_eq!(record.facts, photo_facts_stored_with_xml());
        assert_eq!(record.recipients.len(), 1);
        assert_eq!(record.recipients[0].jid, "bob@example.org");
        assert_eq!(
            record.recipients[0].download_token.as_deref(),
            Some("00112233445566778899aabbccddeeff")
        );

        // A change stores it in today's format, facts unchanged.
        let mut two = record.clone();
        two.recipients.push(two.recipients[0].clone());
        outbox.tree.insert(&id.0, &encode(&two).unwrap()).unwrap();
        outbox.set_status(id, 0, DeliveryStatus::Delivered).unwrap();
        assert_eq!(outbox.tree.get(&id.0).unwrap().unwrap()[0], FORMAT_FACTS);
        assert_eq!(outbox.all().unwrap()[0].facts, record.facts);
    }

    #[test]
    fn formats_are_told_apart_by_their_first_bytes() {
        let (_, with_xml) = stored_with_xml(include_str!("testdata/record_with_xml_encrypted.hex"));
        let current = encode(&relay_to(&["bob@example.org"])).unwrap();
        assert!(postcard::from_bytes::<RelayRecord>(&with_xml).is_err());
        assert!(matches!(
            decode(&[9; 16], &[7, 1, 2]),
            Err(OutboxError::UnknownFormat(7))
        ));
        assert!(decode(&with_xml[..16], &with_xml).is_ok());
        assert!(decode(&current[1..17], &current).is_ok());
    }
}
