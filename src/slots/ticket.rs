//! The ticket in a PUT URL: the slot itself, sealed.
//!
//! Many clients drop the headers a slot comes with, so the URL alone has to
//! authorise the upload. Rather than a random token looked up in a table of
//! granted slots, the URL carries the slot's terms (uploader, file name,
//! size, content type, purpose, expiry) sealed with XChaCha20-Poly1305 under a
//! key derived from the master key, with the file id as nonce and associated
//! data. Granting a slot then writes nothing: no database record per slot, no
//! memory per slot, nothing for garbage collection to expire, and slots
//! survive a restart. (Prosody's `mod_http_file_share` makes the same choice
//! with a signed JWT.)
//!
//! Only the holder of the master key can make or read a ticket. Any change to
//! the ticket or the id fails authentication, and the tag comparison inside
//! the AEAD runs in constant time. The terms are encrypted, not just signed,
//! so a leaked URL does not tell who uploads. A ticket is as good as the slot
//! it seals: single use comes from the store, where a second upload finds the
//! file already complete, or claimed by the upload in progress.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use super::terms::SlotTerms;
use crate::storage::master_key::MasterKey;
use crate::storage::{FileId, Purpose};

/// BLAKE3 `derive_key` context; changing it voids every outstanding ticket.
const TICKET_KEY_CONTEXT: &str = "satchel 2026 slot ticket v1";
/// Leading byte of the sealed terms, for a later change of their encoding.
const TERMS_VERSION: u8 = 1;
/// Longer ticket texts are refused before any decoding: the terms of the
/// largest slot (a 3071-byte JID, a 255-byte name and content type) seal to
/// well under this.
pub const MAX_TICKET_LEN: usize = 8 * 1024;

/// What a ticket seals: the slot without its id, which is the nonce.
#[derive(Serialize, Deserialize)]
struct Terms {
    version: u8,
    uploader: String,
    filename: String,
    size: u64,
    content_type: Option<String>,
    purpose: Purpose,
    created: u64,
    expires: u64,
}

/// The keys tickets are sealed and opened with.
///
/// Deliberately not `Debug`: key bytes must never reach a log line.
pub struct TicketKeys {
    /// Seals new tickets and opens them.
    current: XChaCha20Poly1305,
    /// From earlier master keys: open the tickets handed out before a key
    /// rotation, until they expire.
    previous: Vec<XChaCha20Poly1305>,
}

impl TicketKeys {
    /// Derives the ticket keys from the current master key and the earlier ones.
    pub fn derive<'a>(
        current: &MasterKey,
        previous: impl IntoIterator<Item = &'a MasterKey>,
    ) -> TicketKeys {
        let cipher = |master: &MasterKey| {
            XChaCha20Poly1305::new(&blake3::derive_key(TICKET_KEY_CONTEXT, master.bytes()).into())
        };
        TicketKeys {
            current: cipher(current),
            previous: previous.into_iter().map(cipher).collect(),
        }
    }

    /// The URL-safe ticket for `slot`.
    pub fn seal(&self, slot: &SlotTerms) -> String {
        let terms = postcard::to_stdvec(&Terms {
            version: TERMS_VERSION,
            uploader: slot.uploader.clone(),
            filename: slot.filename.clone(),
            size: slot.size,
            content_type: slot.content_type.clone(),
            purpose: slot.purpose,
            created: slot.created,
            expires: slot.expires,
        })
        .expect("the terms have no unencodable fields");
        let sealed = self
            .current
            .encrypt(&nonce(&slot.id), payload(&slot.id, &terms))
            .expect("XChaCha20-Poly1305 seals any message this short");
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// The slot `ticket` was sealed for, if it was sealed by us for `id`.
    ///
    /// Expiry is not checked here: the caller tells an expired slot apart
    /// from a forged one.
    pub fn open(&self, id: &FileId, ticket: &str) -> Option<SlotTerms> {
        if ticket.len() > MAX_TICKET_LEN {
            return None;
        }
        let sealed = URL_SAFE_NO_PAD.decode(ticket).ok()?;
        let plain = std::iter::once(&self.current)
            .chain(&self.previous)
            .find_map(|key| key.decrypt(&nonce(id), payload(id, &sealed)).ok())?;
        let terms: Terms = postcard::from_bytes(&plain).ok()?;
        (terms.version == TERMS_VERSION).then_some(SlotTerms {
            id: *id,
            uploader: terms.uploader,
            filename: terms.filename,
            size: terms.size,
            content_type: terms.content_type,
            purpose: terms.purpose,
            created: terms.created,
            expires: terms.expires,
        })
    }
}

/// The 192-bit nonce: the 128 random bits of the id, then zeros. Ids are
/// never reused, so neither are nonces.
fn nonce(id: &FileId) -> XNonce {
    let mut nonce = XNonce::default();
    nonce[..16].copy_from_slice(&id.0);
    nonce
}

fn payload<'a>(id: &'a FileId, msg: &'a [u8]) -> Payload<'a, 'a> {
    Payload { msg, aad: &id.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(byte: u8) -> MasterKey {
        MasterKey::from_bytes([byte; 32])
    }

    fn slot() -> SlotTerms {
        SlotTerms {
            id: FileId::random(),
            uploader: "juliet@capulet.example".into(),
            filename: "très cool.jpg".into(),
            size: 23456,
            content_type: Some("image/jpeg".into()),
            purpose: Purpose::Message,
            created: 1_700_000_000,
            expires: 1_700_000_300,
        }
    }

    #[test]
    fn a_ticket_opens_to_its_slot() {
        let keys = TicketKeys::derive(&master(1), []);
        let slot = slot();
        let ticket = keys.seal(&slot);
        assert_eq!(keys.open(&slot.id, &ticket), Some(slot.clone()));
        let bare = SlotTerms {
            content_type: None,
            ..slot
        };
        assert_eq!(keys.open(&bare.id, &keys.seal(&bare)), Some(bare));
    }

    #[test]
    fn tickets_are_url_safe_and_do_not_show_the_terms() {
        let keys = TicketKeys::derive(&master(1), []);
        let ticket = keys.seal(&slot());
        assert!(ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let sealed = URL_SAFE_NO_PAD.decode(&ticket).unwrap();
        for visible in ["juliet", "capulet", "cool", "image/jpeg"] {
            assert!(!sealed
                .windows(visible.len())
                .any(|window| window == visible.as_bytes()));
        }
    }

    #[test]
    fn a_ticket_opens_only_for_its_own_id() {
        let keys = TicketKeys::derive(&master(1), []);
        let slot = slot();
        let ticket = keys.seal(&slot);
        assert_eq!(keys.open(&FileId::random(), &ticket), None);
        let mut neighbour = slot.id;
        neighbour.0[15] ^= 1;
        assert_eq!(keys.open(&neighbour, &ticket), None);
    }

    #[test]
    fn every_altered_ticket_is_refused() {
        let keys = TicketKeys::derive(&master(1), []);
        let slot = slot();
        let sealed = URL_SAFE_NO_PAD.decode(keys.seal(&slot)).unwrap();
        for byte in 0..sealed.len() {
            for bit in [0x01, 0x80] {
                let mut altered = sealed.clone();
                altered[byte] ^= bit;
                assert_eq!(
                    keys.open(&slot.id, &URL_SAFE_NO_PAD.encode(&altered)),
                    None,
                    "bit {bit:#x} of byte {byte}"
                );
            }
        }
        assert_eq!(
            keys.open(
                &slot.id,
                &URL_SAFE_NO_PAD.encode(&sealed[..sealed.len() - 1])
            ),
            None
        );
    }

    #[test]
    fn garbage_is_refused() {
        let keys = TicketKeys::derive(&master(1), []);
        let id = FileId::random();
        let long = "A".repeat(MAX_TICKET_LEN + 1);
        for garbage in ["", "x", "A", "====", "\0\u{202e}", "%00%00", &long] {
            assert_eq!(keys.open(&id, garbage), None, "{garbage:?}");
        }
        // Well-formed base64 of the right shape, but not sealed by us.
        assert_eq!(keys.open(&id, &URL_SAFE_NO_PAD.encode([7u8; 80])), None);
    }

    #[test]
    fn tickets_of_another_master_key_are_refused() {
        let slot = slot();
        let ticket = TicketKeys::derive(&master(2), []).seal(&slot);
        assert_eq!(
            TicketKeys::derive(&master(1), []).open(&slot.id, &ticket),
            None
        );
    }

    #[test]
    fn tickets_from_before_a_key_rotation_still_open() {
        let slot = slot();
        let ticket = TicketKeys::derive(&master(1), []).seal(&slot);
        let old = master(1);
        let rotated = TicketKeys::derive(&master(2), [&old]);
        assert_eq!(rotated.open(&slot.id, &ticket), Some(slot.clone()));
        // New tickets are sealed under the new key.
        let fresh = rotated.seal(&slot);
        assert_eq!(TicketKeys::derive(&old, []).open(&slot.id, &fresh), None);
    }
}
