//! The metadata database of a single instance (the default,
//! `metadata.backend = "sled"`): file records, the indexes over them, per-user
//! usage, the uploads in progress, and the bytes of small files; in sled.
//!
//! | tree      | key                                           | value               |
//! |-----------|-----------------------------------------------|---------------------|
//! | `files`   | file id                                       | [`FileRecord`]      |
//! | `uploads` | file id                                       | start time (u64 BE) |
//! | `inline`  | file id                                       | sealed chunks       |
//! | `usage`   | bare JID                                      | [`UserUsage`]       |
//! | `expiry`  | expires (u64 BE) ‖ file id                    | size (u64 BE)       |
//! | `by_user` | JID length (u32 BE) ‖ JID ‖ expires ‖ file id | size (u64 BE)       |
//!
//! Records are `postcard`-encoded (a [`FileRecord`] as
//! [`FileRecord::encode`] lays it out, see `records`). Big-endian numbers make sled's byte order
//! the numeric order, so "soonest expiry first" is a plain scan.
//!
//! `uploads` lists every id that may own a blob without owning a
//! `FileRecord` (uploads running or abandoned, files being deleted), with
//! the time since when: garbage collection looks there first.
//!
//! `inline` (the on-disk name of the small-files tree, see `trees`) holds
//! the sealed chunks of each small file, laid out as in a blob. They are
//! inserted in the very transaction that commits the record and removed in
//! the one that unlists it, so they can be neither half there nor orphaned.
//!
//! Every change that touches several trees is one sled transaction, and the
//! methods here are the only writers of these trees: an index cannot
//! disagree with the records it indexes. sled's calls block: callers run
//! them on `spawn_blocking` threads.

use std::fmt::Display;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, Transactional, TransactionalTree};

use super::FilesPerKey;
use crate::clock::utc_day;
use crate::storage::error::StorageError;
use crate::storage::records::{FileId, FileRecord, UserUsage};
use crate::storage::trees::StoreTree;

/// The metadata of one store in sled; clones share the database.
#[derive(Clone)]
pub(in crate::storage) struct SledMetadata {
    db: sled::Db,
    files: sled::Tree,
    uploads: sled::Tree,
    small_files: sled::Tree,
    usage: sled::Tree,
    expiry: sled::Tree,
    by_user: sled::Tree,
    /// Sum of the sizes of all completed files, counted at open and kept up
    /// to date by [`commit_file`](Self::commit_file) and
    /// [`unlist_file`](Self::unlist_file).
    stored_bytes: Arc<AtomicU64>,
    /// How many completed files there are, kept as `stored_bytes` is.
    stored_files: Arc<AtomicU64>,
}

impl SledMetadata {
    /// Opens (or creates) the database in directory `path`, with a page
    /// cache of `cache_capacity` bytes, and counts the files in it.
    pub fn open(
        path: &Path,
        cache_capacity: u64,
    ) -> Result<(SledMetadata, FilesPerKey), StorageError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity)
            .open()?;
        let tree = |tree: StoreTree| db.open_tree(tree.name());
        let metadata = SledMetadata {
            files: tree(StoreTree::Files)?,
            uploads: tree(StoreTree::Uploads)?,
            small_files: tree(StoreTree::SmallFiles)?,
            usage: tree(StoreTree::Usage)?,
            expiry: tree(StoreTree::Expiry)?,
            by_user: tree(StoreTree::ByUser)?,
            stored_bytes: Arc::default(),
            stored_files: Arc::default(),
            db,
        };
        let files_per_key = metadata.count_files()?;
        Ok((metadata, files_per_key))
    }

    /// Recounts the files and bytes stored, and counts the files per master
    /// key, in one pass over the records.
    fn count_files(&self) -> Result<FilesPerKey, StorageError> {
        let mut stored_bytes = 0u64;
        let mut files_per_key = FilesPerKey::new();
        for entry in self.files.iter() {
            let (id, bytes) = entry?;
            let record = decode_record(&bytes, format_args!("file record {id:?}"))?;
            stored_bytes = stored_bytes.saturating_add(record.size);
            *files_per_key.entry(record.key_id).or_default() += 1;
        }
        self.stored_bytes.store(stored_bytes, Ordering::Relaxed);
        let stored_files = files_per_key.values().sum();
        self.stored_files.store(stored_files, Ordering::Relaxed);
        Ok(files_per_key)
    }

    /// Whether any file was ever committed and is not deleted yet.
    pub fn holds_files(&self) -> Result<bool, StorageError> {
        Ok(!self.files.is_empty())
    }

    pub fn file(&self, id: &FileId) -> Result<Option<FileRecord>, StorageError> {
        self.files
            .get(id.0)?
            .map(|bytes| decode_record(&bytes, format_args!("file record {id}")))
            .transpose()
    }

    pub fn has_file(&self, id: &FileId) -> Result<bool, StorageError> {
        Ok(self.files.contains_key(id.0)?)
    }

    /// The sealed chunks of file `id`, if it is a small file kept here.
    pub fn small_file(&self, id: &FileId) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.small_files.get(id.0)?.map(|sealed| sealed.to_vec()))
    }

    /// Records that `id` may own a blob without a record, since `started`.
    pub fn record_upload(&self, id: &FileId, started: u64) -> Result<(), StorageError> {
        self.uploads.insert(id.0, &started.to_be_bytes())?;
        Ok(())
    }

    /// Forgets the entry of [`record_upload`](Self::record_upload): `id`
    /// owns no blob any more.
    pub fn forget_upload(&self, id: &FileId) -> Result<(), StorageError> {
        self.uploads.remove(id.0)?;
        Ok(())
    }

    /// Whether `id` may own a blob without a record.
    pub fn has_upload(&self, id: &FileId) -> Result<bool, StorageError> {
        Ok(self.uploads.contains_key(id.0)?)
    }

    /// Every id that may own a blob without a record, and since when.
    pub fn uploads(&self) -> Result<Vec<(FileId, u64)>, StorageError> {
        self.uploads
            .iter()
            .map(|entry| {
                let (key, started) = entry?;
                match (
                    <[u8; 16]>::try_from(key.as_ref()),
                    <[u8; 8]>::try_from(started.as_ref()),
                ) {
                    (Ok(id), Ok(started)) => Ok((FileId(id), u64::from_be_bytes(started))),
                    _ => Err(StorageError::Decode(format!("uploads entry {key:?}"))),
                }
            })
            .collect()
    }

    /// Makes `record` visible, in one transaction with its indexes, its
    /// uploader's usage and, for a small file, its sealed chunks; a file
    /// with a blob leaves `uploads` (the blob is the file's now).
    pub fn commit_file(
        &self,
        record: &FileRecord,
        small_file: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        let encoded = record.encode();
        let size = record.size.to_be_bytes();
        let today = utc_day(record.created);
        self.all_trees()
            .transaction(|(files, uploads, usage, expiry, by_user, small_files)| {
                files.insert(&record.id.0, encoded.as_slice())?;
                match small_file {
                    Some(sealed) => {
                        small_files.insert(&record.id.0, sealed)?;
                    }
                    None => {
                        uploads.remove(&record.id.0)?;
                    }
                }
                expiry.insert(&expiry_key(record.expires, &record.id), &size)?;
                by_user.insert(
                    by_user_key(&record.uploader, record.expires, &record.id),
                    &size,
                )?;
                update_usage(usage, &record.uploader, |current| {
                    current.add_upload(today, record.size);
                })
            })?;
        self.stored_bytes.fetch_add(record.size, Ordering::Relaxed);
        self.stored_files.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Removes the record of file `id` and everything pointing at it
    /// (indexes, usage, small-file bytes), and lists the id in `uploads` so
    /// that its blob is found even if we crash before deleting it. Returns
    /// the file's size, or `None` if the record was already gone (then only
    /// the stale expiry entry is removed).
    pub fn unlist_file(&self, expires: u64, id: &FileId) -> Result<Option<u64>, StorageError> {
        let size = self.all_trees().transaction(
            |(files, uploads, usage, expiry, by_user, small_files)| {
                expiry.remove(&expiry_key(expires, id))?;
                let Some(bytes) = files.remove(&id.0)? else {
                    return Ok(None);
                };
                small_files.remove(&id.0)?;
                let record = decode_record(&bytes, format_args!("file record {id}"))
                    .map_err(ConflictableTransactionError::Abort)?;
                by_user.remove(by_user_key(&record.uploader, record.expires, id))?;
                uploads.insert(&id.0, &0u64.to_be_bytes())?;
                update_usage(usage, &record.uploader, |current| {
                    current.stored_bytes = current.stored_bytes.saturating_sub(record.size);
                })?;
                Ok(Some(record.size))
            },
        )?;
        if let Some(size) = size {
            self.stored_files
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |files| {
                    Some(files.saturating_sub(1))
                })
                .ok();
            self.stored_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |stored| {
                    Some(stored.saturating_sub(size))
                })
                .ok();
        }
        Ok(size)
    }

    /// The trees a commit or an unlisting changes together.
    fn all_trees(
        &self,
    ) -> (
        &sled::Tree,
        &sled::Tree,
        &sled::Tree,
        &sled::Tree,
        &sled::Tree,
        &sled::Tree,
    ) {
        (
            &self.files,
            &self.uploads,
            &self.usage,
            &self.expiry,
            &self.by_user,
            &self.small_files,
        )
    }

    /// (expires, id) of the files that expired before `now`, soonest first.
    pub fn expired_before(&self, now: u64) -> Result<Vec<(u64, FileId)>, StorageError> {
        // Keys sort by expiry: everything before (now, id 0) expired before now.
        self.expiry
            .range(..expiry_key(now, &FileId([0; 16])))
            .keys()
            .map(|key| parse_expiry_key(&key?))
            .collect()
    }

    /// `user`'s usage; `day_bytes` is 0 when the stored day is not `now`'s.
    pub fn usage(&self, user: &str, now: u64) -> Result<UserUsage, StorageError> {
        let mut usage: UserUsage = match self.usage.get(user)? {
            Some(bytes) => decode(&bytes, format_args!("usage of {user}"))?,
            None => UserUsage::default(),
        };
        usage.roll_to(utc_day(now));
        Ok(usage)
    }

    /// (expires, size) of `user`'s files, soonest expiry first.
    pub fn user_files_by_expiry(&self, user: &str) -> Result<Vec<(u64, u64)>, StorageError> {
        let prefix = by_user_prefix(user);
        self.by_user
            .scan_prefix(&prefix)
            .map(|entry| {
                let (key, size) = entry?;
                let expires = key
                    .get(prefix.len()..prefix.len() + 8)
                    .and_then(|bytes| bytes.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| StorageError::Decode(format!("by_user key of {user}")))?;
                Ok((expires, decode_u64(&size, "by_user size")?))
            })
            .collect()
    }

    /// The ids of `user`'s completed files, soonest expiry first.
    pub fn user_file_ids(&self, user: &str) -> Result<Vec<FileId>, StorageError> {
        let prefix = by_user_prefix(user);
        self.by_user
            .scan_prefix(&prefix)
            .keys()
            .map(|key| {
                let key = key?;
                let (_, id) = parse_expiry_key(key.get(prefix.len()..).unwrap_or_default())?;
                Ok(id)
            })
            .collect()
    }

    /// Calls `each` with every completed file's record, read as the walk
    /// goes (sled's iterator holds no lock while `each` runs).
    pub fn for_each_file(
        &self,
        mut each: impl FnMut(&FileRecord) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        for entry in self.files.iter() {
            let (id, bytes) = entry?;
            each(&decode_record(&bytes, format_args!("file record {id:?}"))?)?;
        }
        Ok(())
    }

    /// Forgets `user`'s usage (bytes stored and uploaded today).
    pub fn forget_usage(&self, user: &str) -> Result<(), StorageError> {
        self.usage.remove(user)?;
        Ok(())
    }

    /// (expires, size) of all files, soonest first, at most `limit` entries.
    pub fn files_by_expiry(&self, limit: usize) -> Result<Vec<(u64, u64)>, StorageError> {
        self.expiry
            .iter()
            .take(limit)
            .map(|entry| {
                let (key, size) = entry?;
                let (expires, _) = parse_expiry_key(&key)?;
                Ok((expires, decode_u64(&size, "expiry size")?))
            })
            .collect()
    }

    /// Sum of the sizes of all completed files (kept in memory).
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes.load(Ordering::Relaxed)
    }

    /// How many completed files there are (kept in memory).
    pub fn stored_files(&self) -> u64 {
        self.stored_files.load(Ordering::Relaxed)
    }

    /// Makes every change so far durable.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        Ok(())
    }

    /// Another tree of the same database, by its on-disk name (see `trees`).
    pub fn open_tree(&self, name: &str) -> Result<sled::Tree, StorageError> {
        Ok(self.db.open_tree(name)?)
    }

    /// The small-files tree itself, for tests that alter it behind the
    /// store's back.
    #[cfg(test)]
    pub fn small_files_for_tests(&self) -> &sled::Tree {
        &self.small_files
    }
}

/// Reads, changes and writes back `user`'s usage inside a transaction.
fn update_usage(
    usage: &TransactionalTree,
    user: &str,
    change: impl FnOnce(&mut UserUsage),
) -> Result<(), ConflictableTransactionError<StorageError>> {
    let mut current: UserUsage = match usage.get(user)? {
        Some(bytes) => decode(&bytes, format_args!("usage of {user}"))
            .map_err(ConflictableTransactionError::Abort)?,
        None => UserUsage::default(),
    };
    change(&mut current);
    usage.insert(user.as_bytes(), encode(&current))?;
    Ok(())
}

fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    postcard::to_stdvec(record).expect("records have no unencodable fields")
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: impl Display) -> Result<T, StorageError> {
    postcard::from_bytes(bytes).map_err(|err| StorageError::Decode(format!("{what}: {err}")))
}

/// A [`FileRecord`], in either of its stored forms (see `records`).
fn decode_record(bytes: &[u8], what: impl Display) -> Result<FileRecord, StorageError> {
    FileRecord::decode(bytes).map_err(|err| StorageError::Decode(format!("{what}: {err}")))
}

fn decode_u64(bytes: &[u8], what: &str) -> Result<u64, StorageError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StorageError::Decode(format!("{what}: not 8 bytes")))
}

fn expiry_key(expires: u64, id: &FileId) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&expires.to_be_bytes());
    key[8..].copy_from_slice(&id.0);
    key
}

fn parse_expiry_key(key: &[u8]) -> Result<(u64, FileId), StorageError> {
    let key: [u8; 24] = key
        .try_into()
        .map_err(|_| StorageError::Decode("expiry key: not 24 bytes".into()))?;
    let (expires, id) = key.split_at(8);
    let expires = u64::from_be_bytes(expires.try_into().expect("split at 8"));
    Ok((expires, FileId(id.try_into().expect("24 - 8 = 16"))))
}

/// The length prefix keeps one JID's keys from running into another's,
/// whatever bytes the JIDs contain.
fn by_user_prefix(user: &str) -> Vec<u8> {
    let length = u32::try_from(user.len()).unwrap_or(u32::MAX);
    let mut prefix = Vec::with_capacity(4 + user.len() + 24);
    prefix.extend_from_slice(&length.to_be_bytes());
    prefix.extend_from_slice(user.as_bytes());
    prefix
}

fn by_user_key(user: &str, expires: u64, id: &FileId) -> Vec<u8> {
    let mut key = by_user_prefix(user);
    key.extend_from_slice(&expiry_key(expires, id));
    key
}
