//! Storage: encrypted, chunked files in an embedded sled database.
//!
//! Every file is cut into fixed-size plaintext chunks, each sealed with
//! ChaCha20-Poly1305 in the STREAM construction (`crypto`) under a key derived
//! from the master key (`master_key`) and the file id, so that the store alone
//! reveals no file content (names, sizes, types and uploaders are metadata in
//! clear), and a Range request decrypts only the chunks it needs.
//! An upload writes its chunks first and its `FileRecord` last, in one sled
//! transaction: a reader sees either the whole file or none of it.

pub mod crypto;
mod gc;
pub mod master_key;
mod read;
pub mod records;
mod store;
mod upload;

use std::io;
use std::path::PathBuf;

use sled::transaction::TransactionError;

pub use gc::GcReport;
pub use read::RangeReader;
pub use records::{FileId, FileRecord, Purpose, SlotRecord, UserUsage};
pub use store::{Store, StoreOptions};
pub use upload::UploadWriter;

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
    /// Authentication failed on read: the stored bytes were altered or lost,
    /// and none of them may be served.
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
    #[error("undecodable record: {0}")]
    Decode(String),
    /// `read_range` was asked for bytes outside the file, or for none.
    #[error("range {start}..{end} is empty or outside a file of {size} bytes")]
    BadRange { start: u64, end: u64, size: u64 },
    /// A slot too large for the chunk index to count with this chunk size.
    #[error("a file of {size} bytes exceeds the store's limit of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("invalid store options: {0}")]
    Options(String),
    /// Sealing a chunk failed; only possible for an absurdly large chunk.
    #[error("encryption failed: {0}")]
    Crypto(#[from] crypto::CryptoError),
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

/// ENOSPC, which is 28 on every Unix we run on; `io::ErrorKind::StorageFull`
/// is newer than our minimum Rust version.
fn is_disk_full(err: &io::Error) -> bool {
    const ENOSPC: i32 = 28;
    err.raw_os_error() == Some(ENOSPC)
}
