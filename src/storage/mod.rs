//! Storage: encrypted, chunked files in a blob store, metadata in sled.
//!
//! Every file is cut into fixed-size plaintext chunks, each sealed with
//! ChaCha20-Poly1305 in the STREAM construction ([`crypto`]) under a key
//! derived from the master key ([`master_key`]) and the file id, so that the
//! store alone reveals no file content (names, sizes, types and uploaders
//! are metadata in clear), and a Range request decrypts only the chunks it
//! needs.
//!
//! # Structure
//!
//! A stack of layers, each using only those below it:
//!
//! | layer      | files                                                                |
//! |------------|----------------------------------------------------------------------|
//! | facade     | `store` ([`Store`]); [`downloads`], a client of it                   |
//! | operations | `writer` (uploads), `reader` (byte ranges), `gc` (deletions), `migrate` (copying a store) |
//! | backends   | `blobs` (the sealed bytes: local files or S3), `metadata` (records, indexes, usage) |
//! | foundation | [`cipher`], [`records`], [`crypto`], [`master_key`], `claims`, `trees`, `error`, `disk_space` |
//!
//! The two backends each have a small API and are the only code that
//! touches their files and trees: they are the seams where an object store
//! (for the bytes) and another database (for the metadata) can take their
//! place. The writer, the reader and the collector use the backends only
//! through those APIs, and everything outside storage goes through
//! [`Store`], which composes the backends and the master keys.
//!
//! # Layout
//!
//! * `<store>/` is an embedded sled database holding metadata only: file
//!   records, per-user usage, the expiry and per-user indexes, the uploads
//!   in progress, and small files (see `metadata`), beside the trees other
//!   parts keep there (see [`Tree`], and `trees` for every name). Slots are
//!   not stored: each PUT URL carries its own, sealed
//!   ([`crate::slots::ticket`]).
//! * `<store>/content/ab/<id>` holds the sealed chunks of file `<id>`, back
//!   to back, and `<store>/content/ab/<id>.part` an upload being written
//!   (see `blobs`); `ab` is the first byte of the id in hex. (The `blobs/`
//!   directory beside it is sled's own, for large values.) With
//!   `storage.backend = "s3"` the blobs are objects `content/ab/<id>` in a
//!   bucket instead, published by completing their upload.
//!
//! # Why file contents are not in sled
//!
//! They used to be, one sled value per chunk, and that failed on memory:
//! sled 0.34 keeps written values resident whatever its `cache_capacity`
//! (a probe writing 1 GiB in 64 KiB values with a 16 MiB cache reached 1 GB
//! of RSS). It also wrote every value three to four times over (log, then
//! page rewrites), and space freed by deleting values stays inside sled's
//! files for sled to reuse rather than going back to the filesystem. Blob
//! files avoid all three: the kernel's page cache (which is not our memory
//! and is reclaimed under pressure) holds the data, each byte is written
//! once, and unlinking a blob returns its space at once. Memory is one chunk
//! per upload and per download in flight, whatever the number and size of
//! files.
//!
//! # Visibility and crashes
//!
//! An upload writes a pending blob, publishes it (durably, under its final
//! name), and only then commits its `FileRecord` in one transaction with the
//! indexes and usage: a reader sees either the whole file or none of it,
//! because readers start from the record. Deletion goes the other way: the
//! record goes first (and is flushed), the blob after. So a crash can leave
//! a blob without a record, which garbage collection removes, but never a
//! record without its blob. The `uploads` tree lists the ids that may own a
//! blob without a record; a walk of the blob store (`gc`) catches the few
//! blobs sled itself lost track of in a crash. One id is handled by one
//! writer or deleter at a time (`claims`).
//!
//! Small files (up to [`SMALL_FILE_MAX_BYTES`]) are the exception: they get
//! no blob. Their sealed chunks, laid out as in a blob, are a value in the
//! metadata, inserted in the very transaction that commits the record and
//! removed in the one that deletes it, so they can be neither half there nor
//! orphaned. A small PUT then waits for one sync instead of three; sled's
//! memory habits (above) are harmless at a few KiB per file.
mod blobs;
pub mod cipher;
mod claims;
pub mod crypto;
mod disk_space;
pub mod downloads;
mod error;
mod gc;
pub mod master_key;
mod metadata;
mod migrate;
mod quota;
mod reader;
pub mod records;
mod store;
#[cfg(test)]
pub(crate) mod test_support;
mod trees;
mod writer;

pub use blobs::{probe_bucket, BlobBackend, S3Bucket};
pub use disk_space::{DiskSpace, DISK_SPACE_MAX_AGE};
pub use error::StorageError;
pub use gc::GcReport;
pub use metadata::{probe_database, ClientCert, MetadataBackend, PostgresCluster, SideTree};
pub use migrate::MigrationReport;
pub use quota::{exceeded, Exceeded, QuotaCheck, QuotaLimits};
pub use reader::{RangeReader, WINDOW_CHUNKS};
pub use records::{FileId, FileRecord, NewUpload, Purpose, UserUsage};
pub use store::{Census, ErasedUser, Store, StoreOptions, CHUNK_SIZE, SMALL_FILE_MAX_BYTES};
pub use trees::Tree;
pub use writer::UploadWriter;
