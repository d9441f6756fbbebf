//! The metadata: file records, the indexes over them, per-user usage, the
//! uploads in progress and the bytes of small files, in one of two
//! databases behind one API.
//!
//! * `sled` (the default): embedded, one instance; see its module for the
//!   trees.
//! * `postgres` (cluster mode): tables every instance shares, and the
//!   claims that make an upload single-use across them; see its module.
//!
//! An enum rather than a trait object, as the blob store is: the default
//! path stays direct calls, and both backends answer the same questions
//! with the same types, so the writer, the reader and the collector do not
//! know which one they talk to.
//!
//! Both also keep the side trees of other parts of Satchel ([`SideTree`]).

mod pg_tls;
mod postgres;
mod side_tree;
mod sled;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::postgres::probe_database;
pub(super) use self::postgres::{PgMetadata, UploadClaim};
pub use self::side_tree::SideTree;
use self::sled::SledMetadata;
use super::error::StorageError;
use super::records::{FileId, FileRecord, UserUsage};

/// How many files each master key (by id) sealed, counted at open.
pub(super) type FilesPerKey = BTreeMap<u32, u64>;

/// Which database holds the metadata (`[metadata]` and `[cluster]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MetadataBackend {
    /// sled, in `storage.path`: one instance.
    #[default]
    Sled,
    /// PostgreSQL, shared by the instances of a cluster.
    Postgres(PostgresCluster),
}

/// A cluster's shared database, and this instance's place in it.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresCluster {
    /// `postgres://user:password@host:port/database`; it may hold a
    /// password, so it is kept out of `Debug`.
    pub url: String,
    /// The roots that sign the database's certificate, when `url` asks for
    /// TLS (`sslmode=require`); `None`: the system's.
    pub ca_file: Option<PathBuf>,
    /// The certificate Satchel shows the database, if it asks for one.
    pub client_cert: Option<ClientCert>,
    /// This instance's name, unique in the cluster (`cluster.instance`).
    pub instance: String,
    /// How long a claim or the leadership lasts unless renewed.
    pub lease: Duration,
}

/// The PEM files of the client certificate shown to the database
/// (`metadata.client_cert_file`, `metadata.client_key_file`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl fmt::Debug for PostgresCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresCluster")
            .field("url", &"<redacted>")
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("instance", &self.instance)
            .field("lease", &self.lease)
            .finish()
    }
}

/// The metadata of one store; clones share the database.
#[derive(Clone)]
pub(super) enum Metadata {
    Sled(SledMetadata),
    Postgres(PgMetadata),
}

/// Calls the same method on whichever backend `$metadata` is.
macro_rules! on_backend {
    ($metadata:expr, $backend:ident => $call:expr) => {
        match $metadata {
            Metadata::Sled($backend) => $call,
            Metadata::Postgres($backend) => $call,
        }
    };
}

impl Metadata {
    /// Opens (or creates) the metadata `backend` names: sled in directory
    /// `path` with a page cache of `cache_capacity` bytes, or PostgreSQL,
    /// which must be opened inside the runtime.
    pub fn open(
        path: &Path,
        cache_capacity: u64,
        backend: &MetadataBackend,
    ) -> Result<(Metadata, FilesPerKey), StorageError> {
        match backend {
            MetadataBackend::Sled => {
                let (metadata, files_per_key) = SledMetadata::open(path, cache_capacity)?;
                Ok((Metadata::Sled(metadata), files_per_key))
            }
            MetadataBackend::Postgres(cluster) => {
                let (shared, files_per_key) = PgMetadata::open(cluster)?;
                Ok((Metadata::Postgres(shared), files_per_key))
            }
        }
    }

    /// Whether any file was ever committed and is not deleted yet.
    pub fn holds_files(&self) -> Result<bool, StorageError> {
        on_backend!(self, backend => backend.holds_files())
    }

    pub fn file(&self, id: &FileId) -> Result<Option<FileRecord>, StorageError> {
        on_backend!(self, backend => backend.file(id))
    }

    pub fn has_file(&self, id: &FileId) -> Result<bool, StorageError> {
        on_backend!(self, backend => backend.has_file(id))
    }

    /// The sealed chunks of file `id`, if it is a small file kept here.
    pub fn small_file(&self, id: &FileId) -> Result<Option<Vec<u8>>, StorageError> {
        on_backend!(self, backend => backend.small_file(id))
    }

    /// Records that `id` may own a blob without a record, since `started`.
    pub fn record_upload(&self, id: &FileId, started: u64) -> Result<(), StorageError> {
        on_backend!(self, backend => backend.record_upload(id, started))
    }

    /// Forgets the entry of [`record_upload`](Self::record_upload): `id`
    /// owns no blob any more.
    pub fn forget_upload(&self, id: &FileId) -> Result<(), StorageError> {
        on_backend!(self, backend => backend.forget_upload(id))
    }

    /// Whether `id` may own a blob without a record.
    pub fn has_upload(&self, id: &FileId) -> Result<bool, StorageError> {
        on_backend!(self, backend => backend.has_upload(id))
    }

    /// Every id that may own a blob without a record, and since when.
    pub fn uploads(&self) -> Result<Vec<(FileId, u64)>, StorageError> {
        on_backend!(self, backend => backend.uploads())
    }

    /// Makes `record` visible, in one transaction with its indexes, its
    /// uploader's usage and, for a small file, its sealed chunks; a file
    /// with a blob stops being listed as an upload (the blob is the file's
    /// now). In cluster mode the same transaction ends the upload's claim,
    /// and commits nothing if the claim was lost.
    pub fn commit_file(
        &self,
        record: &FileRecord,
        small_file: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        on_backend!(self, backend => backend.commit_file(record, small_file))
    }

    /// Removes the record of file `id` (which expires at `expires`) and
    /// everything pointing at it, and lists the id as an upload so that its
    /// blob is found even if we crash before deleting it. Returns the
    /// file's size, or `None` if the record was already gone.
    pub fn unlist_file(&self, expires: u64, id: &FileId) -> Result<Option<u64>, StorageError> {
        match self {
            Metadata::Sled(sled) => sled.unlist_file(expires, id),
            Metadata::Postgres(shared) => shared.unlist_file(id),
        }
    }

    /// (expires, id) of the files that expired before `now`, soonest first.
    pub fn expired_before(&self, now: u64) -> Result<Vec<(u64, FileId)>, StorageError> {
        on_backend!(self, backend => backend.expired_before(now))
    }

    /// `user`'s usage; `day_bytes` is 0 when the stored day is not `now`'s.
    pub fn usage(&self, user: &str, now: u64) -> Result<UserUsage, StorageError> {
        on_backend!(self, backend => backend.usage(user, now))
    }

    /// (expires, size) of `user`'s files, soonest expiry first.
    pub fn user_files_by_expiry(&self, user: &str) -> Result<Vec<(u64, u64)>, StorageError> {
        on_backend!(self, backend => backend.user_files_by_expiry(user))
    }

    /// The ids of `user`'s completed files, soonest expiry first.
    pub fn user_file_ids(&self, user: &str) -> Result<Vec<FileId>, StorageError> {
        on_backend!(self, backend => backend.user_file_ids(user))
    }

    /// Calls `each` with every completed file's record, one at a time
    /// (memory stays bounded whatever the number of files); the first error
    /// `each` returns stops the walk and is returned.
    pub fn for_each_file(
        &self,
        each: impl FnMut(&FileRecord) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        on_backend!(self, backend => backend.for_each_file(each))
    }

    /// Forgets `user`'s usage (bytes stored and uploaded today).
    pub fn forget_usage(&self, user: &str) -> Result<(), StorageError> {
        on_backend!(self, backend => backend.forget_usage(user))
    }

    /// (expires, size) of all files, soonest first, at most `limit` entries.
    pub fn files_by_expiry(&self, limit: usize) -> Result<Vec<(u64, u64)>, StorageError> {
        on_backend!(self, backend => backend.files_by_expiry(limit))
    }

    /// Sum of the sizes of all completed files (kept in memory; in cluster
    /// mode as this instance last counted, see [`recount`](Self::recount)).
    pub fn stored_bytes(&self) -> u64 {
        on_backend!(self, backend => backend.stored_bytes())
    }

    /// How many completed files there are, kept as `stored_bytes` is.
    pub fn stored_files(&self) -> u64 {
        on_backend!(self, backend => backend.stored_files())
    }

    /// Counts the stored files and bytes again, where other instances may
    /// have changed them; sled's counts are exact already.
    pub fn recount(&self) -> Result<(), StorageError> {
        match self {
            Metadata::Sled(_) => Ok(()),
            Metadata::Postgres(shared) => shared.recount().map(drop),
        }
    }

    /// How long the leadership lasts unless renewed; `None` with sled,
    /// where the one instance always leads.
    pub fn leader_lease(&self) -> Option<Duration> {
        match self {
            Metadata::Sled(_) => None,
            Metadata::Postgres(shared) => Some(shared.lease()),
        }
    }

    /// Takes or renews the leadership (see `postgres`); always granted with
    /// sled.
    pub fn lead(&self) -> Result<bool, StorageError> {
        match self {
            Metadata::Sled(_) => Ok(true),
            Metadata::Postgres(shared) => shared.lead(),
        }
    }

    /// Gives the leadership up, if held.
    pub fn resign(&self) -> Result<(), StorageError> {
        match self {
            Metadata::Sled(_) => Ok(()),
            Metadata::Postgres(shared) => shared.resign(),
        }
    }

    /// Makes every change so far durable (PostgreSQL's are at commit).
    pub fn flush(&self) -> Result<(), StorageError> {
        match self {
            Metadata::Sled(sled) => sled.flush(),
            Metadata::Postgres(_) => Ok(()),
        }
    }

    /// The side tree named `name` (its on-disk name, see `trees`).
    pub fn side_tree(&self, name: &'static str) -> Result<SideTree, StorageError> {
        match self {
            Metadata::Sled(sled) => Ok(SideTree::in_sled(sled.open_tree(name)?)),
            Metadata::Postgres(shared) => Ok(SideTree::in_postgres(shared.clone(), name)),
        }
    }

    /// The small-files tree itself, for tests that alter it behind the
    /// store's back.
    #[cfg(test)]
    pub fn small_files_for_tests(&self) -> &::sled::Tree {
        match self {
            Metadata::Sled(sled) => sled.small_files_for_tests(),
            Metadata::Postgres(_) => panic!("the tests run on sled"),
        }
    }

    /// A tree of sled's database by name, for tests that write what older
    /// code wrote.
    #[cfg(test)]
    pub fn sled_tree_for_tests(&self, name: &str) -> ::sled::Tree {
        match self {
            Metadata::Sled(sled) => sled.open_tree(name).unwrap(),
            Metadata::Postgres(_) => panic!("the tests run on sled"),
        }
    }
}
