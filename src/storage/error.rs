//! What can go wrong in the store, as one error type for all its layers.
//!
//! One type, because a caller (the HTTP side, the slot service) decides by
//! the kind of failure, never by the layer it came from: a full disk is
//! [`StorageError::DiskFull`] whether the metadata database or a blob hit
//! it, so that the PUT handler can answer 507 without knowing the layout.

use std::io;
use std::path::PathBuf;

use sled::transaction::TransactionError;

use super::crypto::CryptoError;
use super::quota::Exceeded;
use super::records::FileId;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Converted by hand (see below) so that a full disk becomes `DiskFull`.
    #[error("database error: {0}")]
    Db(#[source] sled::Error),
    #[error("master key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("a file was already uploaded for this slot")]
    AlreadyUploaded,
    #[error("another upload for this slot is in progress")]
    UploadInProgress,
    #[error("expected {expected} bytes, received {received}")]
    SizeMismatch { expected: u64, received: u64 },
    /// Authentication failed on read, or the blob is missing or too short:
    /// the stored bytes were altered or lost, and none of them may be served.
    #[error("file {file} is corrupt at chunk {chunk}")]
    Corrupt { file: FileId, chunk: u32 },
    /// The file was sealed under a master key other than the loaded one.
    #[error("file {file} was sealed under master key {key_id:08x}, which is not loaded")]
    UnknownKey { file: FileId, key_id: u32 },
    #[error("the disk holding the store is full")]
    DiskFull,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The object store (`storage.backend = "s3"`) failed or did not answer.
    #[error("object store: {context}: {source}")]
    ObjectStore {
        context: String,
        #[source]
        source: Box<object_store::Error>,
    },
    /// PostgreSQL (`metadata.backend = "postgres"`) failed or did not answer.
    #[error("database: {context}: {}", with_causes(.source.as_ref()))]
    Postgres {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The upload's claim expired and another instance took it over.
    #[error("the claim on file {0} was lost to another instance")]
    ClaimLost(FileId),
    /// The upload does not fit its uploader's quota (reservations of the
    /// uploads in progress counted).
    #[error("{}", .0.reason())]
    OverQuota(Exceeded),
    #[error("undecodable record: {0}")]
    Decode(String),
    /// [`Store::read_range`](super::Store::read_range) was asked for bytes
    /// outside the file, or for none.
    #[error("range {start}..{end} is empty or outside a file of {size} bytes")]
    BadRange { start: u64, end: u64, size: u64 },
    /// A slot too large for the chunk index to count with this chunk size.
    #[error("a file of {size} bytes exceeds the store's limit of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("invalid store options: {0}")]
    Options(String),
    /// Sealing a chunk failed; only possible for an absurdly large chunk.
    #[error("encryption failed: {0}")]
    Crypto(#[from] CryptoError),
}

impl From<sled::Error> for StorageError {
    fn from(err: sled::Error) -> StorageError {
        match err {
            sled::Error::Io(ref io_err) if is_disk_full(io_err) => StorageError::DiskFull,
            err => StorageError::Db(err),
        }
    }
}

impl From<TransactionError<StorageError>> for StorageError {
    fn from(err: TransactionError<StorageError>) -> StorageError {
        match err {
            TransactionError::Abort(err) => err,
            TransactionError::Storage(err) => err.into(),
        }
    }
}

/// An I/O error on the store's files, with ENOSPC as `DiskFull`.
pub(super) fn io_error(context: String, source: io::Error) -> StorageError {
    if is_disk_full(&source) {
        StorageError::DiskFull
    } else {
        StorageError::Io { context, source }
    }
}

fn is_disk_full(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::StorageFull || err.raw_os_error() == Some(libc::ENOSPC)
}

/// `error` and what caused it, in one line: the database client's errors
/// say "db error" and keep the server's reason (a refused login, a
/// certificate not trusted) in their sources.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let reason = next.to_string();
        if !text.contains(&reason) {
            text.push_str(": ");
            text.push_str(&reason);
        }
        cause = next.source();
    }
    text
}
