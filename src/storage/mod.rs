//! Storage: encrypted, chunked files in blob files, metadata in sled.
//!
//! Every file is cut into fixed-size plaintext chunks, each sealed with
//! ChaCha20-Poly1305 in the STREAM construction (`crypto`) under a key derived
//! from the master key (`master_key`) and the file id, so that the store alone
//! reveals no file content (names, sizes, types and uploaders are metadata in
//! clear), and a Range request decrypts only the chunks it needs.
//!
//! # Layout
//!
//! * `<store>/` is an embedded sled database holding metadata only: file
//!   records, per-user usage, the expiry and per-user indexes, and the
//!   uploads in progress (see `store` for the trees). Slots are not stored:
//!   each PUT URL carries its own, sealed (`slots::ticket`).
//! * `<store>/content/ab/<id>` holds the sealed chunks of file `<id>`, back
//!   to back, and `<store>/content/ab/<id>.part` an upload being written (see
//!   `blob`); `ab` is the first byte of the id in hex. (The `blobs/`
//!   directory beside it is sled's own, for large values.)
//!
//! # Why file contents are not in sled
//!
//! They used to be, one sled value per chunk, and that failed on memory:
//! sled 0.34 keeps written values resident whatever its `cache_capacity`
//! (a probe writing 1 GiB in 64 KiB values with a 16 MiB cache reached 1 GB
//! of RSS; the service reached 2.7 GB serving twenty 128 MiB files). It also
//! wrote every value three to four times over (log, then page rewrites), and
//! space freed by deleting values stays inside sled's files for sled to
//! reuse rather than going back to the filesystem. Blob files avoid all three: the kernel's page
//! cache (which is not our memory and is reclaimed under pressure) holds the
//! data, each byte is written once, and unlinking a blob returns its space
//! at once. Memory is one chunk per upload and per download in flight,
//! whatever the number and size of files.
//!
//! # Visibility and crashes
//!
//! An upload writes its `.part` file, syncs it, renames it to its final name
//! (syncing the directory), and only then commits its `FileRecord` in one
//! sled transaction with the indexes and usage: a reader sees either the
//! whole file or none of it, because readers start from the record.
//! Deletion goes the other way: the record goes first (and is flushed), the
//! blob after. So a crash can leave a blob without a record, which garbage
//! collection removes, but never a record without its blob. The `uploads`
//! tree lists the ids that may own a blob without a record; a directory walk
//! (`gc`) catches the few blobs sled itself lost track of in a crash.
//!
//! Small files are the exception: their sealed chunks, laid out as in a
//! blob file, are a value of the `inline` tree, inserted in the very
//! transaction that commits the record and removed in the one that deletes
//! it, so they can be neither half there nor orphaned. A small PUT then
//! waits for one sync instead of three; sled's memory habits (above) are
//! harmless at a few KiB per file.
mod blob;
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
pub use read::{RangeReader, WINDOW_CHUNKS};
pub use records::{FileId, FileRecord, NewUpload, Purpose, UserUsage};
pub use store::{DiskSpace, Store, StoreOptions, DISK_SPACE_MAX_AGE, INLINE_MAX_BYTES};
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

/// An I/O error on the store's files, with ENOSPC as `DiskFull`.
fn io_error(context: String, source: io::Error) -> StorageError {
    if is_disk_full(&source) {
        StorageError::DiskFull
    } else {
        StorageError::Io { context, source }
    }
}

fn is_disk_full(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::StorageFull || err.raw_os_error() == Some(libc::ENOSPC)
}
