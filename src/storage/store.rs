//! The store: sled trees, blob files, the master key, and the bookkeeping
//! around them.
//!
//! Metadata, one sled tree each (file contents are in blob files, see `blob`):
//!
//! | tree      | key                                          | value               |
//! |-----------|----------------------------------------------|---------------------|
//! | `files`   | file id                                      | `FileRecord`        |
//! | `uploads` | file id                                      | start time (u64 BE) |
//! | `inline`  | file id                                      | sealed chunks       |
//! | `usage`   | bare JID                                     | `UserUsage`         |
//! | `expiry`  | expires (u64 BE) ‖ file id                   | size (u64 BE)       |
//! | `by_user` | JID length (u32 BE) ‖ JID ‖ expires ‖ file id | size (u64 BE)      |
//!
//! `inline` holds the blob of a small file (see [`INLINE_MAX_BYTES`]) in the
//! layout of a blob file.
//!
//! Big-endian numbers make sled's byte order the numeric order, so "soonest
//! expiry first" is a plain scan. `uploads` lists every id that may own a
//! blob without owning a `FileRecord` (uploads running or abandoned, files
//! being deleted): garbage collection looks there first, and walks the blob
//! directory only now and then, for what a crash kept sled from recording.
//!
//! Slots are not here: a granted slot travels in its PUT URL, sealed (see
//! `slots::ticket`), so granting one writes nothing.
//!
//! sled and file calls block; callers run the store on `spawn_blocking`
//! threads.

use std::collections::HashSet;
use std::fmt::Display;
use std::fs::DirBuilder;
use std::ops::Range;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::clock::{unix_now, utc_day};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::blob::Blobs;
use super::master_key::MasterKey;
use super::read::RangeReader;
use super::records::{FileId, FileRecord, NewUpload, UserUsage};
use super::upload::{Sink, UploadWriter};
use super::StorageError;

/// Upper bound for `StoreOptions::chunk_size`: every upload and download in
/// flight holds one whole chunk in memory.
pub(super) const MAX_CHUNK_SIZE: u32 = 1 << 20;

/// How to open a [`Store`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Directory of the sled database and of the `content` (blob) directory;
    /// created (mode 0700) if missing.
    pub path: PathBuf,
    /// The master key file; must be outside `path`.
    pub key_file: PathBuf,
    /// Keys of earlier generations, still needed to read the files they
    /// sealed (see "Rotating the master key" in the README).
    pub previous_key_files: Vec<PathBuf>,
    /// Bytes of sled's page cache (metadata only: file contents bypass sled).
    pub cache_capacity: u64,
    /// Plaintext bytes per chunk for new files (64 KiB is a good default).
    /// Existing files keep the chunk size they were written with.
    pub chunk_size: u32,
    /// Files of at most this many bytes are kept in sled with their record
    /// instead of in a blob file ([`INLINE_MAX_BYTES`] is a good default);
    /// `None`: every file gets a blob file.
    pub inline_max_bytes: Option<u64>,
}

/// Files this small go into sled, in the transaction that commits their
/// record, instead of into a blob file of their own: an upload then waits
/// for one sync (sled's log) instead of three (the blob, its directory, the
/// log), which is most of a small PUT's time. Kept small because sled keeps
/// the values it writes in memory.
pub const INLINE_MAX_BYTES: u64 = 4096;

/// A handle to the encrypted file store; clones share one database.
#[derive(Clone)]
pub struct Store {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) db: sled::Db,
    pub(super) trees: Trees,
    pub(super) master_key: MasterKey,
    /// Earlier generations of the master key, for reading only.
    pub(super) previous_keys: Vec<MasterKey>,
    pub(super) blobs: Blobs,
    path: PathBuf,
    pub(super) chunk_size: u32,
    pub(super) inline_max_bytes: Option<u64>,
    /// Sum of the sizes of all completed files.
    pub(super) stored_bytes: AtomicU64,
    /// Ids whose blobs someone is writing or deleting right now.
    busy: Mutex<HashSet<FileId>>,
    /// `now` of the last walk of the blob directory, see `gc`.
    pub(super) last_blob_walk: Mutex<Option<u64>>,
    /// The last measurement of the disk, see `disk_space`.
    disk_space: Mutex<Option<(Instant, DiskSpace)>>,
}

/// How stale [`Store::disk_space`] may be.
pub const DISK_SPACE_MAX_AGE: Duration = Duration::from_secs(1);

/// The filesystem holding the store, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    pub total: u64,
    /// What unprivileged writers may still use.
    pub available: u64,
}

pub(super) struct Trees {
    pub(super) files: sled::Tree,
    pub(super) uploads: sled::Tree,
    pub(super) usage: sled::Tree,
    pub(super) expiry: sled::Tree,
    pub(super) by_user: sled::Tree,
    pub(super) inline: sled::Tree,
}

impl Store {
    /// Creates the store directory if needed, opens the database, and loads
    /// (or, for a new store, creates) the master key.
    pub fn open(opts: StoreOptions) -> Result<Store, StorageError> {
        if opts.chunk_size == 0 || opts.chunk_size > MAX_CHUNK_SIZE {
            return Err(StorageError::Options(format!(
                "chunk size {} is not between 1 and {MAX_CHUNK_SIZE}",
                opts.chunk_size
            )));
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&opts.path)
            .map_err(|source| StorageError::Io {
                context: format!("creating store directory {}", opts.path.display()),
                source,
            })?;
        let db = sled::Config::new()
            .path(&opts.path)
            .cache_capacity(opts.cache_capacity)
            .open()?;
        let trees = Trees {
            files: db.open_tree("files")?,
            uploads: db.open_tree("uploads")?,
            usage: db.open_tree("usage")?,
            expiry: db.open_tree("expiry")?,
            by_user: db.open_tree("by_user")?,
            inline: db.open_tree("inline")?,
        };
        // A fresh key could not decrypt a single existing file: a store with
        // data and no key file means the key was lost or misconfigured.
        if !opts.key_file.exists() && opts.previous_key_files.is_empty() && !trees.files.is_empty()
        {
            return Err(StorageError::KeyFile {
                path: opts.key_file,
                reason: "missing, but the store already holds encrypted data; \
                         restore the key file instead of creating a new one"
                    .into(),
            });
        }
        let master_key = MasterKey::load_or_create(&opts.key_file, &opts.path)?;
        let previous_keys = opts
            .previous_key_files
            .iter()
            .map(|path| MasterKey::load_existing(path, &opts.path))
            .collect::<Result<Vec<_>, _>>()?;
        let blobs = Blobs::open(&opts.path)?;

        let mut stored_bytes = 0u64;
        let mut foreign_key_files = 0u64;
        for entry in trees.files.iter() {
            let (id, bytes) = entry?;
            let record: FileRecord = decode(&bytes, format_args!("file record {id:?}"))?;
            stored_bytes = stored_bytes.saturating_add(record.size);
            if record.key_id != master_key.id()
                && !previous_keys.iter().any(|key| key.id() == record.key_id)
            {
                foreign_key_files += 1;
            }
        }
        if foreign_key_files > 0 {
            tracing::warn!(
                files = foreign_key_files,
                key_id = %format_args!("{:08x}", master_key.id()),
                "files sealed under another master key cannot be read"
            );
        }

        Ok(Store {
            inner: Arc::new(Inner {
                db,
                trees,
                master_key,
                previous_keys,
                blobs,
                path: opts.path,
                chunk_size: opts.chunk_size,
                inline_max_bytes: opts.inline_max_bytes,
                stored_bytes: AtomicU64::new(stored_bytes),
                busy: Mutex::new(HashSet::new()),
                last_blob_walk: Mutex::new(None),
                disk_space: Mutex::new(None),
            }),
        })
    }

    /// Records a granted slot and adds its size to the uploader's bytes of the day.
    ///
    /// Two atomic single-key writes rather than one sled transaction: a
    /// cross-tree transaction costs more than everything else a slot grant
    /// does together (a profile put it at 70% of the grant's instructions).
    /// The day's counter goes first, so a crash in between leaves it a slot's
    /// size too high, on the safe side, and never a slot that was not counted.
    pub fn file(&self, id: &FileId) -> Result<Option<FileRecord>, StorageError> {
        self.inner
            .trees
            .files
            .get(id.0)?
            .map(|bytes| decode(&bytes, format_args!("file record {id}")))
            .transpose()
    }

    /// The user's usage; `day_bytes` is 0 when the stored day is not today's (now / 86400).
    pub fn usage(&self, user: &str, now: u64) -> Result<UserUsage, StorageError> {
        let mut usage: UserUsage = match self.inner.trees.usage.get(user)? {
            Some(bytes) => decode(&bytes, format_args!("usage of {user}"))?,
            None => UserUsage::default(),
        };
        usage.roll_to(utc_day(now));
        Ok(usage)
    }

    /// (expires, size) of the user's completed files, soonest expiry first (for quota retry stamps).
    pub fn user_files_by_expiry(&self, user: &str) -> Result<Vec<(u64, u64)>, StorageError> {
        let prefix = by_user_prefix(user);
        self.inner
            .trees
            .by_user
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

    /// (expires, size) of all files, soonest first, at most `limit` entries.
    pub fn files_by_expiry(&self, limit: usize) -> Result<Vec<(u64, u64)>, StorageError> {
        self.inner
            .trees
            .expiry
            .iter()
            .take(limit)
            .map(|entry| {
                let (key, size) = entry?;
                let (expires, _) = parse_expiry_key(&key)?;
                Ok((expires, decode_u64(&size, "expiry size")?))
            })
            .collect()
    }

    /// Sum of the sizes of all completed files (kept in memory, computed at open and updated on commit/delete).
    pub fn stored_bytes(&self) -> u64 {
        self.inner.stored_bytes.load(Ordering::Relaxed)
    }

    /// Size and free space of the filesystem holding the store, measured at
    /// most [`DISK_SPACE_MAX_AGE`] ago: a `statvfs` per slot request would
    /// cost more than granting the slot.
    pub fn disk_space(&self) -> Result<DiskSpace, StorageError> {
        let mut cached = self
            .inner
            .disk_space
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((measured, space)) = *cached {
            if measured.elapsed() < DISK_SPACE_MAX_AGE {
                return Ok(space);
            }
        }
        let stats = fs4::statvfs(&self.inner.path).map_err(|source| StorageError::Io {
            context: format!("measuring free space of {}", self.inner.path.display()),
            source,
        })?;
        let space = DiskSpace {
            total: stats.total_space(),
            available: stats.available_space(),
        };
        *cached = Some((Instant::now(), space));
        Ok(space)
    }

    /// The master key and the earlier ones, for keys derived from them
    /// outside the store (slot tickets).
    pub(crate) fn master_keys(&self) -> (&MasterKey, &[MasterKey]) {
        (&self.inner.master_key, &self.inner.previous_keys)
    }

    /// Starts, or restarts after a failed attempt, the upload for `slot` (emptying the `.part` blob of the earlier attempt).
    ///
    /// Fails with `AlreadyUploaded` once the slot's file is complete, and with
    /// `UploadInProgress` while another writer for the slot is alive (or,
    /// briefly, while garbage collection deletes the slot's old blob).
    /// The start is stamped with the wall clock, for `collect_garbage`.
    pub fn begin_upload(
        &self,
        slot: &NewUpload,
        content_type: String,
        expires: u64,
    ) -> Result<UploadWriter, StorageError> {
        // Chunk indexes are u32, and STREAM nonces must never repeat.
        let max = u64::from(u32::MAX) * u64::from(self.inner.chunk_size);
        if slot.size > max {
            return Err(StorageError::TooLarge {
                size: slot.size,
                max,
            });
        }
        let claim = self.claim(slot.id).ok_or(StorageError::UploadInProgress)?;
        if self.inner.trees.files.contains_key(slot.id.0)? {
            return Err(StorageError::AlreadyUploaded);
        }
        let sink = if self
            .inner
            .inline_max_bytes
            .is_some_and(|max| slot.size <= max)
        {
            // Nothing reaches the disk before the commit, so nothing is
            // left for garbage collection after a failure.
            Sink::Inline(Vec::new())
        } else {
            // Recorded before the blob is created, so that garbage collection
            // finds a blob left behind by a failure without walking the blobs.
            self.inner
                .trees
                .uploads
                .insert(slot.id.0, &unix_now().to_be_bytes())?;
            Sink::Blob(self.inner.blobs.create_part(&slot.id)?)
        };
        UploadWriter::new(self.clone(), claim, slot, content_type, expires, sink)
    }

    /// Plaintext of `range` (must be within the file, non-empty), decrypting only the chunks it covers.
    pub fn read_range(
        &self,
        file: &FileRecord,
        range: Range<u64>,
    ) -> Result<RangeReader, StorageError> {
        if range.start >= range.end || range.end > file.size {
            return Err(StorageError::BadRange {
                start: range.start,
                end: range.end,
                size: file.size,
            });
        }
        let key = self
            .master_key_by_id(file.key_id)
            .ok_or(StorageError::UnknownKey {
                file: file.id,
                key_id: file.key_id,
            })?;
        RangeReader::new(self, key, file, range)
    }

    /// The master key, current or earlier, whose id is `key_id`.
    fn master_key_by_id(&self, key_id: u32) -> Option<&MasterKey> {
        std::iter::once(&self.inner.master_key)
            .chain(&self.inner.previous_keys)
            .find(|key| key.id() == key_id)
    }

    /// A tree of the same database for another part of Satchel (the relay
    /// outbox), so that one flush covers everything and one directory holds it.
    pub fn open_tree(&self, name: &str) -> Result<sled::Tree, StorageError> {
        Ok(self.inner.db.open_tree(name)?)
    }

    pub fn flush(&self) -> Result<(), StorageError> {
        self.inner.db.flush()?;
        Ok(())
    }

    /// Marks `id` busy until the returned claim is dropped, or returns `None`
    /// if it already is. Whoever holds the claim may write, publish or delete
    /// the id's blob; nobody else may.
    pub(super) fn claim(&self, id: FileId) -> Option<Claim> {
        let newly_claimed = self.lock_busy().insert(id);
        newly_claimed.then(|| Claim {
            store: self.clone(),
            id,
        })
    }

    fn lock_busy(&self) -> MutexGuard<'_, HashSet<FileId>> {
        // The set is valid whatever a panicking holder was doing.
        self.inner
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes the blob (`.part` or complete) of an id that has no
    /// `FileRecord`, then its `uploads` entry. The caller holds its claim.
    pub(super) fn discard_upload(&self, id: &FileId) -> Result<(), StorageError> {
        self.inner.blobs.remove(id)?;
        self.inner.trees.uploads.remove(id.0)?;
        Ok(())
    }
}

/// Proof that its holder alone may touch the blob of `id`; see [`Store::claim`].
pub(super) struct Claim {
    store: Store,
    id: FileId,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.store.lock_busy().remove(&self.id);
    }
}

/// Reads, changes and writes back `user`'s usage inside a transaction.
pub(super) fn update_usage(
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

pub(super) fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    postcard::to_stdvec(record).expect("records have no unencodable fields")
}

pub(super) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    what: impl Display,
) -> Result<T, StorageError> {
    postcard::from_bytes(bytes).map_err(|err| StorageError::Decode(format!("{what}: {err}")))
}

fn decode_u64(bytes: &[u8], what: &str) -> Result<u64, StorageError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StorageError::Decode(format!("{what}: not 8 bytes")))
}

pub(super) fn expiry_key(expires: u64, id: &FileId) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&expires.to_be_bytes());
    key[8..].copy_from_slice(&id.0);
    key
}

pub(super) fn parse_expiry_key(key: &[u8]) -> Result<(u64, FileId), StorageError> {
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

pub(super) fn by_user_key(user: &str, expires: u64, id: &FileId) -> Vec<u8> {
    let mut key = by_user_prefix(user);
    key.extend_from_slice(&expiry_key(expires, id));
    key
}

#[cfg(test)]
pub(super) mod test_support {
    //! A throwaway store and helpers shared by the storage tests.

    use super::*;
    use crate::storage::Purpose;

    pub const CHUNK: u32 = 16;
    pub const NOW: u64 = 1_800_000_000;

    pub struct TestStore {
        pub store: Store,
        pub dir: tempfile::TempDir,
    }

    impl TestStore {
        pub fn options(&self) -> StoreOptions {
            options_in(self.dir.path())
        }

        /// Drops this handle and opens the same store again.
        pub fn reopen(self) -> TestStore {
            let options = self.options();
            let dir = self.dir;
            drop(self.store);
            TestStore {
                store: open_when_released(options).unwrap(),
                dir,
            }
        }

        /// Bytes of the complete blob of `id`, if there is one.
        pub fn blob_len(&self, id: &FileId) -> Option<u64> {
            let path = self.store.inner.blobs.final_path(id);
            std::fs::metadata(path).ok().map(|metadata| metadata.len())
        }

        /// Whether an upload blob (`.part`) of `id` exists.
        pub fn has_part(&self, id: &FileId) -> bool {
            self.store.inner.blobs.part_path(id).exists()
        }
    }

    /// Opens a store just dropped. sled's background threads are shared by
    /// every database in the process and may hold a dropped database's lock
    /// a little longer while other tests keep them busy: wait for it.
    pub fn open_when_released(options: StoreOptions) -> Result<Store, StorageError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Store::open(options.clone()) {
                Err(StorageError::Db(sled::Error::Io(err)))
                    if err.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                result => return result,
            }
        }
    }

    /// A store in `dir/store`, its key in `dir/master.key`.
    pub fn options_in(dir: &std::path::Path) -> StoreOptions {
        StoreOptions {
            path: dir.join("store"),
            key_file: dir.join("master.key"),
            previous_key_files: Vec::new(),
            cache_capacity: 1 << 20,
            chunk_size: CHUNK,
            // Blob files for every size; `inline_test_store` for the other way.
            inline_max_bytes: None,
        }
    }

    pub fn test_store() -> TestStore {
        test_store_with_chunks(CHUNK)
    }

    /// A test store sealing in chunks of `chunk_size` bytes instead of [`CHUNK`].
    pub fn test_store_with_chunks(chunk_size: u32) -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreOptions {
            chunk_size,
            ..options_in(dir.path())
        })
        .unwrap();
        TestStore { store, dir }
    }

    /// Keeps files of up to `INLINE_TEST_MAX` bytes in sled (several
    /// chunks of [`CHUNK`] bytes each).
    pub fn inline_test_store() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreOptions {
            inline_max_bytes: Some(INLINE_TEST_MAX),
            ..options_in(dir.path())
        })
        .unwrap();
        TestStore { store, dir }
    }

    pub const INLINE_TEST_MAX: u64 = 100;

    pub fn slot_for(user: &str, size: u64) -> NewUpload {
        NewUpload {
            id: FileId::random(),
            uploader: user.into(),
            filename: "notes.txt".into(),
            size,
            purpose: Purpose::Message,
        }
    }

    /// Deterministic, non-repeating-looking bytes.
    pub fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    pub fn upload(store: &Store, slot: &NewUpload, bytes: &[u8], expires: u64) -> FileRecord {
        let mut writer = store
            .begin_upload(slot, "text/plain".into(), expires)
            .unwrap();
        writer.write(bytes).unwrap();
        writer.finish(NOW).unwrap()
    }

    pub fn read(
        store: &Store,
        file: &FileRecord,
        range: Range<u64>,
    ) -> Result<Vec<u8>, StorageError> {
        let mut out = Vec::new();
        for piece in store.read_range(file, range)? {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn a_rotated_key_keeps_old_files_readable_and_seals_new_ones() {
        let t = test_store();
        let old_slot = slot_for("juliet@example.org", 40);
        let old = upload(&t.store, &old_slot, &data(40), NOW + 1000);
        let dir = t.dir;
        let options = options_in(dir.path());
        drop(t.store);
        // The operator moves the key aside and names it as a previous key.
        let retired = dir.path().join("master.key.1");
        std::fs::rename(&options.key_file, &retired).unwrap();
        let rotated = StoreOptions {
            previous_key_files: vec![retired.clone()],
            ..options_in(dir.path())
        };
        let store = open_when_released(rotated).unwrap();
        assert_eq!(
            read(&store, &old, 0..40).unwrap(),
            data(40),
            "old files stay readable"
        );
        let new_slot = slot_for("juliet@example.org", 30);
        let new = upload(&store, &new_slot, &data(30), NOW + 1000);
        assert_ne!(new.key_id, old.key_id, "new uploads use the new key");
        assert_eq!(read(&store, &new, 0..30).unwrap(), data(30));
        drop(store);
        // Without the previous key, only the new file can be read.
        let store = open_when_released(options_in(dir.path())).unwrap();
        assert!(matches!(
            store.read_range(&old, 0..40),
            Err(StorageError::UnknownKey { .. })
        ));
        assert_eq!(read(&store, &new, 0..30).unwrap(), data(30));
    }

    #[test]
    fn rejects_bad_chunk_sizes() {
        let dir = tempfile::tempdir().unwrap();
        for chunk_size in [0, MAX_CHUNK_SIZE + 1] {
            let result = Store::open(StoreOptions {
                chunk_size,
                ..options_in(dir.path())
            });
            assert!(matches!(result, Err(StorageError::Options(_))));
        }
    }

    #[test]
    fn completed_uploads_count_towards_the_day_and_the_storage() {
        let t = test_store();
        let upload_at = |size: usize, now: u64| {
            let mut writer = t
                .store
                .begin_upload(
                    &slot_for("juliet@example.org", size as u64),
                    "text/plain".into(),
                    now + 1000,
                )
                .unwrap();
            writer.write(&data(size)).unwrap();
            writer.finish(now).unwrap();
        };
        upload_at(100, NOW);
        upload_at(50, NOW + 10);
        // A slot granted but never used counts for nothing.
        let unused = slot_for("juliet@example.org", 1000);
        drop(
            t.store
                .begin_upload(&unused, "text/plain".into(), NOW + 1000)
                .unwrap(),
        );

        let usage = t.store.usage("juliet@example.org", NOW + 20).unwrap();
        assert_eq!(usage.day_bytes, 150);
        assert_eq!(usage.stored_bytes, 150);
        assert_eq!(usage.day, utc_day(NOW));

        let tomorrow = NOW + crate::clock::SECONDS_PER_DAY;
        let next_day = t.store.usage("juliet@example.org", tomorrow).unwrap();
        assert_eq!((next_day.day_bytes, next_day.stored_bytes), (0, 150));
        upload_at(7, tomorrow);
        let next_day = t.store.usage("juliet@example.org", tomorrow).unwrap();
        assert_eq!((next_day.day_bytes, next_day.stored_bytes), (7, 157));
        assert_eq!(
            t.store.usage("romeo@example.org", NOW).unwrap(),
            UserUsage {
                day: utc_day(NOW),
                ..UserUsage::default()
            }
        );
    }

    #[test]
    fn lists_files_by_expiry() {
        let t = test_store();
        for (user, size, expires) in [
            ("juliet@example.org", 30, NOW + 300),
            ("romeo@example.org", 20, NOW + 100),
            ("juliet@example.org", 10, NOW + 200),
            // A JID that is a prefix of another must not see its files.
            ("juliet@example.or", 5, NOW + 50),
        ] {
            upload(
                &t.store,
                &slot_for(user, size),
                &data(size as usize),
                expires,
            );
        }

        assert_eq!(
            t.store.user_files_by_expiry("juliet@example.org").unwrap(),
            vec![(NOW + 200, 10), (NOW + 300, 30)]
        );
        assert_eq!(
            t.store.files_by_expiry(3).unwrap(),
            vec![(NOW + 50, 5), (NOW + 100, 20), (NOW + 200, 10)]
        );
        assert_eq!(t.store.stored_bytes(), 65);
        assert_eq!(
            t.store
                .usage("juliet@example.org", NOW)
                .unwrap()
                .stored_bytes,
            40
        );
    }

    #[test]
    fn stored_bytes_are_recounted_at_open() {
        let t = test_store();
        upload(
            &t.store,
            &slot_for("juliet@example.org", 40),
            &data(40),
            NOW + 60,
        );
        let t = t.reopen();
        assert_eq!(t.store.stored_bytes(), 40);
    }

    #[test]
    fn refuses_to_replace_a_lost_key_of_a_store_with_data() {
        let t = test_store();
        upload(
            &t.store,
            &slot_for("juliet@example.org", 40),
            &data(40),
            NOW + 60,
        );
        let options = t.options();
        drop(t.store);
        std::fs::remove_file(&options.key_file).unwrap();
        let result = open_when_released(options.clone());
        assert!(matches!(result, Err(StorageError::KeyFile { .. })));
        assert!(!options.key_file.exists());
    }

    #[test]
    fn handles_can_move_to_blocking_threads() {
        fn send_and_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_and_sync::<Store>();
        send::<UploadWriter>();
        send::<RangeReader>();
    }

    #[test]
    fn reports_disk_space() {
        let t = test_store();
        let space = t.store.disk_space().unwrap();
        assert!(space.total > 0);
        assert!(space.available <= space.total);
    }
}
