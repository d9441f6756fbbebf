//! The records of the store: what a file is, what an upload will be, what a
//! user has stored.
//!
//! [`FileRecord`] and [`UserUsage`] are kept in the metadata database,
//! encoded with `postcard` (see `metadata`): compact and cheap to decode on
//! the download hot path. postcard writes the fields in declaration order
//! with no version byte, so a field added, removed or reordered in an
//! encoded struct makes existing stores undecodable.
//!
//! # How a file record grew a field
//!
//! The first records did not name their cipher: every file was sealed with
//! ChaCha20-Poly1305. A record is now two postcard values back to back:
//! the fields of the first records, unchanged (`StoredFields`), then the
//! extension (`Extension`, today the [`Cipher`]). A first-generation record
//! is exactly its first value, with nothing after it, and postcard decodes
//! a value by reading precisely its bytes; so "nothing follows" tells an old
//! record from a new one without any guess, whatever bytes its file id (its
//! first 16 bytes) happens to hold, and an old record is read as
//! ChaCha20-Poly1305. A leading marker byte could not do that: an old record
//! starts with a random id, so it can start with any byte. Bytes after the
//! extension are refused, so a damaged record is not half read. A future
//! field goes at the end of `Extension` with the same reasoning (an
//! extension that ends early is the older extension).
//!
//! A Satchel older than the cipher field ignores the extension (postcard
//! ignores trailing bytes) and would read an AES-256-GCM file as corrupt:
//! downgrading is safe for the files sealed with ChaCha20-Poly1305 only.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::cipher::Cipher;

/// The random 128-bit name of a slot and, once the upload completes, of its
/// file. It is the unguessable part of the GET URL.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId(pub [u8; 16]);

impl FileId {
    /// A fresh id from the operating system's CSPRNG.
    pub fn random() -> FileId {
        FileId(rand::random())
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileId({self})")
    }
}

/// A file id in a URL was not 32 lowercase hex digits.
#[derive(Debug, thiserror::Error)]
#[error("not a file id")]
pub struct BadFileId;

impl FromStr for FileId {
    type Err = BadFileId;

    fn from_str(s: &str) -> Result<FileId, BadFileId> {
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(BadFileId);
        }
        let mut id = [0u8; 16];
        hex::decode_to_slice(s, &mut id).map_err(|_| BadFileId)?;
        Ok(FileId(id))
    }
}

/// XEP-0363 1.2 upload purpose: decides how long a file is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    Ephemeral,
    Message,
    Permanent,
}

/// What an upload will be, fixed before its first byte by the slot it
/// redeems and the PUT request: all the store needs to write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUpload {
    pub id: FileId,
    /// Bare JID of the uploader.
    pub uploader: String,
    pub filename: String,
    pub size: u64,
    /// The type the file will be served with; never empty.
    pub content_type: String,
    pub purpose: Purpose,
    /// Unix seconds after which the file is deleted.
    pub expires: u64,
}

/// Upper bound for a file's chunk size (plaintext bytes): every upload and
/// download in flight holds one whole chunk in memory. A record claiming
/// more is undecodable.
pub const MAX_CHUNK_SIZE: u32 = 1 << 20;

/// A completed, immutable upload.
///
/// Stored in two parts, not with serde's derive: see the module
/// documentation and [`decode`](FileRecord::decode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    pub id: FileId,
    pub uploader: String,
    pub filename: String,
    pub size: u64,
    /// The type the file is served with; never empty.
    pub content_type: String,
    pub purpose: Purpose,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds after which the file is deleted.
    pub expires: u64,
    pub blake3: [u8; 32],
    pub sha256: [u8; 32],
    /// Plaintext bytes per encrypted chunk (the last one may be shorter);
    /// at most [`MAX_CHUNK_SIZE`].
    pub chunk_size: u32,
    /// STREAM nonce prefix of this file.
    pub nonce_prefix: [u8; 7],
    /// Which master key the file key was derived from (for key rotation).
    pub key_id: u32,
    /// The AEAD the chunks are sealed with.
    pub cipher: Cipher,
}

/// The fields of the first file records, in their order: the first value
/// of every record. Never change it.
#[derive(Serialize, Deserialize)]
struct StoredFields {
    id: FileId,
    uploader: String,
    filename: String,
    size: u64,
    content_type: String,
    purpose: Purpose,
    created: u64,
    expires: u64,
    blake3: [u8; 32],
    sha256: [u8; 32],
    chunk_size: u32,
    nonce_prefix: [u8; 7],
    key_id: u32,
}

/// The fields added since, after [`StoredFields`]; absent from the first
/// records. New fields go at the end.
#[derive(Serialize, Deserialize)]
struct Extension {
    cipher: Cipher,
}

/// A stored file record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum BadRecord {
    #[error(transparent)]
    Postcard(#[from] postcard::Error),
    #[error("{0} unexpected bytes after the record")]
    TrailingBytes(usize),
}

impl FileRecord {
    /// The stored form: [`StoredFields`] then [`Extension`], both postcard.
    pub(super) fn encode(&self) -> Vec<u8> {
        let fields = StoredFields {
            id: self.id,
            uploader: self.uploader.clone(),
            filename: self.filename.clone(),
            size: self.size,
            content_type: self.content_type.clone(),
            purpose: self.purpose,
            created: self.created,
            expires: self.expires,
            blake3: self.blake3,
            sha256: self.sha256,
            chunk_size: self.chunk_size,
            nonce_prefix: self.nonce_prefix,
            key_id: self.key_id,
        };
        let extension = Extension {
            cipher: self.cipher,
        };
        let mut bytes = postcard::to_stdvec(&fields).expect("records have no unencodable fields");
        bytes.extend(postcard::to_stdvec(&extension).expect("nor have their extensions"));
        bytes
    }

    /// Reads a record in either stored form; one without an extension is
    /// from before ciphers were named, so sealed with ChaCha20-Poly1305.
    pub fn decode(bytes: &[u8]) -> Result<FileRecord, BadRecord> {
        let (fields, rest) = postcard::take_from_bytes::<StoredFields>(bytes)?;
        let extension = if rest.is_empty() {
            Extension {
                cipher: Cipher::ChaCha20Poly1305,
            }
        } else {
            let (extension, rest) = postcard::take_from_bytes::<Extension>(rest)?;
            if !rest.is_empty() {
                return Err(BadRecord::TrailingBytes(rest.len()));
            }
            extension
        };
        Ok(FileRecord {
            id: fields.id,
            uploader: fields.uploader,
            filename: fields.filename,
            size: fields.size,
            content_type: fields.content_type,
            purpose: fields.purpose,
            created: fields.created,
            expires: fields.expires,
            blake3: fields.blake3,
            sha256: fields.sha256,
            chunk_size: fields.chunk_size,
            nonce_prefix: fields.nonce_prefix,
            key_id: fields.key_id,
            cipher: extension.cipher,
        })
    }
}

/// What one user has stored and uploaded today, for quotas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUsage {
    /// Bytes of completed, unexpired files.
    pub stored_bytes: u64,
    /// UTC day number (unix seconds / 86400) that `day_bytes` counts.
    pub day: u64,
    /// Bytes of the uploads completed on `day`.
    pub day_bytes: u64,
}

impl UserUsage {
    /// Starts counting UTC day `today` afresh, unless `day` is already it.
    pub fn roll_to(&mut self, today: u64) {
        if self.day != today {
            self.day = today;
            self.day_bytes = 0;
        }
    }

    /// Counts an upload of `size` bytes completed on UTC day `today`.
    pub fn add_upload(&mut self, today: u64, size: u64) {
        self.roll_to(today);
        self.day_bytes = self.day_bytes.saturating_add(size);
        self.stored_bytes = self.stored_bytes.saturating_add(size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `FileRecord` of the code before ciphers were named, copied
    /// verbatim (with its serde derive): what every existing store holds.
    #[derive(Serialize)]
    struct FirstFileRecord {
        id: FileId,
        uploader: String,
        filename: String,
        size: u64,
        content_type: String,
        purpose: Purpose,
        created: u64,
        expires: u64,
        blake3: [u8; 32],
        sha256: [u8; 32],
        chunk_size: u32,
        nonce_prefix: [u8; 7],
        key_id: u32,
    }

    fn first_record(id: [u8; 16]) -> FirstFileRecord {
        FirstFileRecord {
            id: FileId(id),
            uploader: "juliet@example.org".into(),
            filename: "photo.jpg".into(),
            size: 70_000,
            content_type: "image/jpeg".into(),
            purpose: Purpose::Message,
            created: 1_780_000_000,
            expires: 1_782_592_000,
            blake3: [0xb3; 32],
            sha256: [0x25; 32],
            chunk_size: 65536,
            nonce_prefix: [1, 2, 3, 4, 5, 6, 7],
            key_id: 0xdead_beef,
        }
    }

    fn record(cipher: Cipher) -> FileRecord {
        let first = first_record([0x42; 16]);
        FileRecord {
            id: first.id,
            uploader: first.uploader,
            filename: first.filename,
            size: first.size,
            content_type: first.content_type,
            purpose: first.purpose,
            created: first.created,
            expires: first.expires,
            blake3: first.blake3,
            sha256: first.sha256,
            chunk_size: first.chunk_size,
            nonce_prefix: first.nonce_prefix,
            key_id: first.key_id,
            cipher,
        }
    }

    #[test]
    fn a_record_of_the_first_code_reads_as_chacha20_poly1305() {
        // Whatever its id begins with: the first byte of an old record is
        // the first byte of a random id.
        for first_byte in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut id = [0x42; 16];
            id[0] = first_byte;
            let old_bytes = postcard::to_stdvec(&first_record(id)).unwrap();
            let decoded = FileRecord::decode(&old_bytes).unwrap();
            let mut expected = record(Cipher::ChaCha20Poly1305);
            expected.id = FileId(id);
            assert_eq!(decoded, expected);
        }
    }

    /// The bytes of a first-generation record, as the first code wrote
    /// them (postcard varints, written out by hand): pins the layout that
    /// `StoredFields` must keep.
    #[test]
    fn a_fixed_old_record_still_decodes() {
        let old_bytes = postcard::to_stdvec(&first_record([0x42; 16])).unwrap();
        let mut fixture = vec![0x42; 16];
        fixture.extend(b"\x12juliet@example.org\x09photo.jpg");
        fixture.extend([0xf0, 0xa2, 0x04]); // 70000
        fixture.extend(b"\x0aimage/jpeg\x01"); // Purpose::Message
        fixture.extend([0x80, 0xca, 0xe2, 0xd0, 0x06]); // created
        fixture.extend([0x80, 0xe4, 0x80, 0xd2, 0x06]); // expires
        fixture.extend([0xb3; 32]);
        fixture.extend([0x25; 32]);
        fixture.extend([0x80, 0x80, 0x04]); // 65536
        fixture.extend([1, 2, 3, 4, 5, 6, 7]);
        fixture.extend([0xef, 0xfd, 0xb6, 0xf5, 0x0d]); // 0xdeadbeef
        assert_eq!(old_bytes, fixture);
        assert_eq!(
            FileRecord::decode(&fixture).unwrap(),
            record(Cipher::ChaCha20Poly1305)
        );
    }

    #[test]
    fn new_records_round_trip_with_their_cipher() {
        for cipher in Cipher::ALL {
            let record = record(cipher);
            let bytes = record.encode();
            assert_eq!(FileRecord::decode(&bytes).unwrap(), record);
            // The first value is the first-generation record, unchanged.
            let old = postcard::to_stdvec(&first_record([0x42; 16])).unwrap();
            assert_eq!(&bytes[..old.len()], old.as_slice());
            assert_eq!(bytes.len(), old.len() + 1);
        }
    }

    #[test]
    fn hostile_records_are_refused() {
        let good = record(Cipher::Aes256Gcm).encode();
        // Cut short anywhere inside the first value.
        let first_len = good.len() - 1;
        for len in [0, 1, 15, 16, 40, first_len - 1] {
            assert!(FileRecord::decode(&good[..len]).is_err(), "cut at {len}");
        }
        // A cipher that does not exist (yet).
        for tag in [2u8, 0x7f, 0xff] {
            let mut bad = good.clone();
            *bad.last_mut().unwrap() = tag;
            assert!(FileRecord::decode(&bad).is_err(), "cipher tag {tag}");
        }
        // Bytes after the extension.
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            FileRecord::decode(&long),
            Err(BadRecord::TrailingBytes(1))
        ));
        // A chunk size too long for its varint, an absurd string length.
        let mut garbage = vec![0x42; 16];
        garbage.extend([0xff; 12]);
        assert!(FileRecord::decode(&garbage).is_err());
    }
}
