//! The records of the store: what a file is, what an upload will be, what a
//! user has stored.
//!
//! [`FileRecord`] and [`UserUsage`] are kept in the metadata database,
//! encoded with `postcard` (see `metadata`): compact and cheap to decode on
//! the download hot path. The encoding has no version byte: it is the
//! fields in declaration order, so a field added, removed or reordered here
//! makes existing stores undecodable; change them only with a migration.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
