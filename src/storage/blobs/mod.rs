//! The blob store: the sealed bytes of each file, one blob per file, in
//! local files ([`local`], the default) or in an S3 bucket ([`s3`]).
//!
//! A blob's life is a contract both keep:
//!
//! 1. [`Blobs::create_pending`] starts a blob that nobody reads, replacing
//!    the pending blob of an earlier attempt at the same id;
//! 2. [`PendingBlob::append`] writes it in order, front to back;
//! 3. [`PendingBlob::publish`] makes all of it durable and then visible
//!    under its id, at once (never a part of it);
//! 4. [`Blobs::open_published`] opens it for reads at any offset;
//! 5. [`Blobs::delete`] removes it, pending or published; deleting what is
//!    not there is no error;
//! 6. [`Blobs::walk`] lists every blob it can see, with its age, for the
//!    garbage collector to find what a crash left behind.
//!
//! The blob store knows ids and bytes, nothing else: what the bytes mean
//! (sealed chunks, see `crypto`) and whether a file owns them (the metadata)
//! are its callers' business, and so is keeping two callers off one id (see
//! `claims`).
//!
//! An enum rather than a trait object: the local store's calls, a few per
//! 64 KiB chunk on the upload path, stay direct calls.

mod local;
mod s3;

use std::io;
use std::path::Path;

use super::error::StorageError;
use super::records::FileId;
use local::{LocalBlobs, LocalPending, LocalPublished};
use s3::{S3Blobs, S3Pending, S3Published};

/// Where the sealed bytes of files go (`storage.backend`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BlobBackend {
    /// Files in `<store>/content`, beside the database.
    #[default]
    Local,
    /// Objects in an S3 bucket.
    S3(S3Bucket),
}

/// The bucket of the S3 backend and how to reach it (`[storage.s3]`).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Bucket {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Bucket")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Whether `bucket` answers a listing with its credentials, as the S3
/// blob store checks when it opens (for `satchel check-config`). Must run
/// on a thread of a multi-threaded tokio runtime that may block.
pub fn probe_bucket(bucket: &S3Bucket) -> Result<(), StorageError> {
    S3Blobs::open(bucket).map(drop)
}

/// The blob store of one store; clones share it.
#[derive(Clone)]
pub(super) enum Blobs {
    Local(LocalBlobs),
    S3(S3Blobs),
}

/// Whether a blob is still being written or was published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BlobState {
    Pending,
    Published,
}

/// One blob found by [`Blobs::walk`].
pub(super) struct FoundBlob {
    pub id: FileId,
    pub state: BlobState,
    /// Last modification, in unix seconds (0 if unknown).
    pub modified: u64,
}

/// A blob being written; see [`Blobs::create_pending`].
pub(super) enum PendingBlob {
    Local(LocalPending),
    S3(S3Pending),
}

/// A published blob, open for reading.
pub(super) enum PublishedBlob {
    Local(LocalPublished),
    S3(S3Published),
}

impl Blobs {
    /// Opens the blob store `backend` names: for local files, creates
    /// `<store_dir>/content`; for a bucket, checks that it answers.
    pub fn open(store_dir: &Path, backend: &BlobBackend) -> Result<Blobs, StorageError> {
        match backend {
            BlobBackend::Local => LocalBlobs::open(store_dir).map(Blobs::Local),
            BlobBackend::S3(bucket) => S3Blobs::open(bucket).map(Blobs::S3),
        }
    }

    /// Starts the pending blob of `id`, emptying any left by an earlier
    /// attempt.
    pub fn create_pending(&self, id: &FileId) -> Result<PendingBlob, StorageError> {
        match self {
            Blobs::Local(blobs) => blobs.create_pending(id).map(PendingBlob::Local),
            Blobs::S3(blobs) => Ok(PendingBlob::S3(blobs.create_pending(id))),
        }
    }

    /// Opens the published blob of `id` for reading, mostly from byte
    /// `from` on (a hint: reads may go anywhere); `None` if there is none.
    pub fn open_published(
        &self,
        id: &FileId,
        from: u64,
    ) -> Result<Option<PublishedBlob>, StorageError> {
        match self {
            Blobs::Local(blobs) => Ok(blobs.open_published(id)?.map(PublishedBlob::Local)),
            Blobs::S3(blobs) => Ok(blobs.open_published(id, from)?.map(PublishedBlob::S3)),
        }
    }

    /// Deletes the blob of `id`, pending and published, whichever exist.
    pub fn delete(&self, id: &FileId) -> Result<(), StorageError> {
        self.delete_one(id, BlobState::Pending)?;
        self.delete_one(id, BlobState::Published)
    }

    /// Deletes the blob of `id` in `state`, if it exists.
    pub fn delete_one(&self, id: &FileId, state: BlobState) -> Result<(), StorageError> {
        match self {
            Blobs::Local(blobs) => blobs.delete_one(id, state),
            Blobs::S3(blobs) => blobs.delete_one(id, state),
        }
    }

    /// Calls `visit` for every blob the store lists (memory does not grow
    /// with the number of files). Names that are not ours are skipped, and
    /// left alone.
    pub fn walk(
        &self,
        visit: impl FnMut(FoundBlob) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        match self {
            Blobs::Local(blobs) => blobs.walk(visit),
            Blobs::S3(blobs) => blobs.walk(visit),
        }
    }

    /// Where the local blob of `id` in `state` is, for tests that alter it
    /// behind the store's back.
    #[cfg(test)]
    pub fn path_for_tests(&self, id: &FileId, state: BlobState) -> std::path::PathBuf {
        match self {
            Blobs::Local(blobs) => blobs.path_for_tests(id, state),
            Blobs::S3(_) => unreachable!("unit tests use local blobs"),
        }
    }
}

impl PendingBlob {
    /// Appends `bytes`.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        match self {
            PendingBlob::Local(blob) => blob.append(bytes),
            PendingBlob::S3(blob) => blob.append(bytes),
        }
    }

    /// Makes the blob durable and visible under its id; nothing may be
    /// appended after this.
    pub fn publish(&mut self) -> Result<(), StorageError> {
        match self {
            PendingBlob::Local(blob) => blob.publish(),
            PendingBlob::S3(blob) => blob.publish(),
        }
    }
}

impl PublishedBlob {
    /// Fills `buf` from `offset` until it is full or the blob ends; returns
    /// how many bytes it holds.
    pub fn read_at_most(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match self {
            PublishedBlob::Local(blob) => blob.read_at_most(buf, offset),
            PublishedBlob::S3(blob) => blob.read_at_most(buf, offset),
        }
    }
}
