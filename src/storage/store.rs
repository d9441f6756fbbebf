//! The store: encrypted files, composed of the blob store, the metadata
//! database and the master keys.
//!
//! [`Store`] is the one door other parts of Satchel use. It owns the parts
//! and passes each operation to the one that does it: uploads to the
//! writer, reads to the reader, deletions to the garbage collector,
//! questions about files and usage to the metadata. No part reaches into
//! another; each holds its own invariants (see the module documentation of
//! `storage` for the rules they keep together).
//!
//! sled and file calls block; callers run the store on `spawn_blocking`
//! threads.

use std::fs::DirBuilder;
use std::ops::Range;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::blobs::{BlobBackend, Blobs};
use super::cipher::CipherChoice;
use super::claims::{Claims, LocalClaims};
use super::crypto::chunk_offset;
use super::disk_space::{DiskGauge, DiskSpace};
use super::error::StorageError;
use super::gc::{GarbageCollector, GcReport};
use super::master_key::{MasterKey, MasterKeys};
use super::metadata::{FilesPerKey, Metadata, MetadataBackend, SideTree};
use super::quota::QuotaCheck;
use super::reader::{RangeReader, SealedBytes};
use super::records::{FileId, FileRecord, NewUpload, UserUsage, MAX_CHUNK_SIZE};
use super::trees::{StoreTree, Tree};
use super::writer::{UploadWriter, WriteSettings};

/// Plaintext bytes per chunk of new files, unless the options say otherwise.
pub const CHUNK_SIZE: u32 = 64 * 1024;

/// Files this small are kept in the metadata database, in the transaction
/// that commits their record, instead of in a blob of their own: an upload
/// then waits for one sync (sled's log) instead of three (the blob, its
/// directory, the log), which is most of a small PUT's time. Kept small
/// because sled keeps the values it writes in memory.
pub const SMALL_FILE_MAX_BYTES: u64 = 4096;

/// What the store holds, counted by [`Store::census`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    pub files: u64,
    pub bytes: u64,
    /// Files completed on the UTC day of `now`, and their bytes.
    pub files_today: u64,
    pub bytes_today: u64,
}

/// What [`Store::erase_user`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErasedUser {
    pub files: u64,
    pub bytes: u64,
    /// Files that could not be deleted now (being read for deletion elsewhere).
    pub left: u64,
}

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
    /// Plaintext bytes per chunk for new files, at most [`MAX_CHUNK_SIZE`].
    /// Existing files keep the chunk size they were written with.
    pub chunk_size: u32,
    /// Files of at most this many bytes are kept in the metadata database
    /// with their record instead of in a blob; `None`: every file gets a
    /// blob.
    pub small_file_max_bytes: Option<u64>,
    /// The AEAD new files are sealed with; existing files keep theirs.
    pub cipher: CipherChoice,
    /// Where the sealed bytes of files go; an S3 bucket is checked when the
    /// store opens, which must then happen inside the tokio runtime.
    pub blobs: BlobBackend,
    /// Where the metadata goes; PostgreSQL is reached when the store opens,
    /// which must then happen inside the tokio runtime.
    pub metadata: MetadataBackend,
}

impl StoreOptions {
    /// The options Satchel runs with: a store in `path`, its master key in
    /// `key_file`, no earlier keys, a page cache of `cache_capacity` bytes,
    /// chunks of [`CHUNK_SIZE`], files up to [`SMALL_FILE_MAX_BYTES`] in
    /// the database, and the cipher that suits the CPU
    /// ([`CipherChoice::Auto`]), blobs in local files.
    pub fn new(path: PathBuf, key_file: PathBuf, cache_capacity: u64) -> StoreOptions {
        StoreOptions {
            path,
            key_file,
            previous_key_files: Vec::new(),
            cache_capacity,
            chunk_size: CHUNK_SIZE,
            small_file_max_bytes: Some(SMALL_FILE_MAX_BYTES),
            cipher: CipherChoice::Auto,
            blobs: BlobBackend::Local,
            metadata: MetadataBackend::Sled,
        }
    }
}

/// A handle to the encrypted file store; clones share one store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    metadata: Metadata,
    blobs: Blobs,
    keys: MasterKeys,
    claims: Claims,
    collector: GarbageCollector,
    settings: WriteSettings,
    disk: DiskGauge,
}

impl Store {
    /// Creates the store directory if needed, opens the database, and loads
    /// (or, for a new store, creates) the master key.
    pub fn open(options: StoreOptions) -> Result<Store, StorageError> {
        check_chunk_size(options.chunk_size)?;
        create_store_dir(&options.path)?;
        let (metadata, files_per_key) =
            Metadata::open(&options.path, options.cache_capacity, &options.metadata)?;
        refuse_to_replace_a_lost_key(&options, &metadata)?;
        let keys = MasterKeys::load(
            &options.key_file,
            &options.previous_key_files,
            &options.path,
        )?;
        warn_of_unreadable_files(&files_per_key, &keys);
        let blobs = Blobs::open(&options.path, &options.blobs)?;
        let claims = match &metadata {
            Metadata::Sled(_) => Claims::Local(LocalClaims::default()),
            Metadata::Postgres(shared) => Claims::Shared(shared.clone()),
        };
        let (cipher, why) = options.cipher.resolve();
        tracing::info!(
            %cipher,
            choice = ?options.cipher,
            "new files are sealed with {cipher}: {why}"
        );
        Ok(Store {
            inner: Arc::new(Inner {
                collector: GarbageCollector::new(blobs.clone(), metadata.clone(), claims.clone()),
                settings: WriteSettings {
                    chunk_size: options.chunk_size,
                    small_file_max_bytes: options.small_file_max_bytes,
                    cipher,
                },
                disk: DiskGauge::new(options.path),
                metadata,
                blobs,
                keys,
                claims,
            }),
        })
    }

    /// How long the leadership of a cluster lasts unless renewed; `None`
    /// for a single instance, which always leads.
    pub fn leader_lease(&self) -> Option<std::time::Duration> {
        self.inner.metadata.leader_lease()
    }

    /// Takes or renews this instance's leadership of the cluster: the
    /// right to hold the XMPP link and to run delivery and garbage
    /// collection. False while another instance holds it.
    pub fn lead(&self) -> Result<bool, StorageError> {
        self.inner.metadata.lead()
    }

    /// Counts the stored files and bytes again (see
    /// [`stored_bytes`](Self::stored_bytes)), for an instance of a cluster
    /// that does not collect garbage, where the recount happens; a single
    /// instance's counts are exact already.
    pub fn recount(&self) -> Result<(), StorageError> {
        self.inner.metadata.recount()
    }

    /// Gives the leadership up (at shutdown), so that another instance
    /// takes over at once.
    pub fn resign(&self) -> Result<(), StorageError> {
        self.inner.metadata.resign()
    }

    /// The record of completed file `id`, if it exists.
    pub fn file(&self, id: &FileId) -> Result<Option<FileRecord>, StorageError> {
        self.inner.metadata.file(id)
    }

    /// The user's usage; `day_bytes` is 0 when the stored day is not
    /// today's (`now`'s UTC day).
    pub fn usage(&self, user: &str, now: u64) -> Result<UserUsage, StorageError> {
        self.inner.metadata.usage(user, now)
    }

    /// (expires, size) of the user's completed files, soonest expiry first
    /// (for quota retry stamps).
    pub fn user_files_by_expiry(&self, user: &str) -> Result<Vec<(u64, u64)>, StorageError> {
        self.inner.metadata.user_files_by_expiry(user)
    }

    /// The records of `user`'s completed files, newest upload first.
    pub fn user_files(&self, user: &str) -> Result<Vec<FileRecord>, StorageError> {
        let mut files = Vec::new();
        for id in self.inner.metadata.user_file_ids(user)? {
            // A file deleted since the scan is simply not listed.
            if let Some(record) = self.inner.metadata.file(&id)? {
                files.push(record);
            }
        }
        files.sort_by_key(|f| std::cmp::Reverse((f.created, f.expires, f.id.0)));
        Ok(files)
    }

    /// Counts the completed files, in one pass over the records (for an
    /// admin's question, not for a hot path).
    pub fn census(&self, now: u64) -> Result<Census, StorageError> {
        let today = crate::clock::utc_day(now);
        let mut census = Census::default();
        self.inner.metadata.for_each_file(|record| {
            census.files += 1;
            census.bytes = census.bytes.saturating_add(record.size);
            if crate::clock::utc_day(record.created) == today {
                census.files_today += 1;
                census.bytes_today = census.bytes_today.saturating_add(record.size);
            }
            Ok(())
        })?;
        Ok(census)
    }

    /// Deletes every completed file of `user` and forgets their usage: what
    /// Satchel keeps of a user who leaves. An upload still being written is
    /// not interrupted; its file is counted in [`ErasedUser::left`] and can be
    /// erased once it completes.
    pub fn erase_user(&self, user: &str) -> Result<ErasedUser, StorageError> {
        let mut erased = ErasedUser::default();
        for record in self.user_files(user)? {
            if self.delete_file(&record.id)? {
                erased.files += 1;
                erased.bytes = erased.bytes.saturating_add(record.size);
            } else if self.inner.metadata.has_file(&record.id)? {
                erased.left += 1;
            }
        }
        self.inner.metadata.forget_usage(user)?;
        self.flush()?;
        Ok(erased)
    }

    /// (expires, size) of all files, soonest first, at most `limit` entries.
    pub fn files_by_expiry(&self, limit: usize) -> Result<Vec<(u64, u64)>, StorageError> {
        self.inner.metadata.files_by_expiry(limit)
    }

    /// Sum of the sizes of all completed files (kept in memory, counted at
    /// open and updated on commit and deletion).
    pub fn stored_bytes(&self) -> u64 {
        self.inner.metadata.stored_bytes()
    }

    /// How many completed files there are (kept as [`Self::stored_bytes`] is).
    pub fn stored_files(&self) -> u64 {
        self.inner.metadata.stored_files()
    }

    /// Size and free space of the filesystem holding the store, measured at
    /// most [`DISK_SPACE_MAX_AGE`](super::DISK_SPACE_MAX_AGE) ago.
    pub fn disk_space(&self) -> Result<DiskSpace, StorageError> {
        self.inner.disk.measure()
    }

    /// Whether the store takes writes (room left, and a small file written,
    /// synced and removed beside the database). Blocks on the disk.
    pub fn check_writable(&self) -> Result<(), StorageError> {
        self.inner.disk.try_write()
    }

    /// The master key and the earlier ones, for keys derived from them
    /// outside the store (slot tickets).
    pub(crate) fn master_keys(&self) -> (&MasterKey, &[MasterKey]) {
        (self.inner.keys.current(), self.inner.keys.previous())
    }

    /// Starts, or restarts after a failed attempt, `upload` (emptying the
    /// pending blob of the earlier attempt).
    ///
    /// Fails with `AlreadyUploaded` once the upload's file is complete, and
    /// with `UploadInProgress` while another writer for it is alive (or,
    /// briefly, while garbage collection deletes its old blob). The start is
    /// stamped with the wall clock, for [`collect_garbage`](Self::collect_garbage).
    ///
    /// With `quota`, fails with `OverQuota` unless the upload fits its
    /// uploader's quota with their other uploads in progress counted; its
    /// size stays reserved until the writer is finished or dropped.
    pub fn begin_upload(
        &self,
        upload: &NewUpload,
        quota: Option<QuotaCheck>,
    ) -> Result<UploadWriter, StorageError> {
        let inner = &self.inner;
        UploadWriter::begin(
            upload,
            &inner.blobs,
            &inner.metadata,
            &inner.claims,
            quota,
            inner.keys.current(),
            inner.settings,
        )
    }

    /// Plaintext of `range` (must be within the file, non-empty), decrypting
    /// only the chunks it covers.
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
            .inner
            .keys
            .by_id(file.key_id)
            .ok_or(StorageError::UnknownKey {
                file: file.id,
                key_id: file.key_id,
            })?;
        // Where the sealed chunk that holds the range's first byte starts
        // (a hint; the reader checks the record's sizes).
        let chunk_size = u64::from(file.chunk_size.max(1));
        let from = u32::try_from(range.start / chunk_size).map_or(0, |first_chunk| {
            chunk_offset(first_chunk, u64::from(file.chunk_size))
        });
        RangeReader::new(key, file, range, self.sealed_bytes(&file.id, from)?)
    }

    /// The sealed chunks of file `id`, to be read from byte `from` on: a
    /// small file's from the database, any other's in its blob; `None` if
    /// the blob is missing.
    fn sealed_bytes(&self, id: &FileId, from: u64) -> Result<Option<SealedBytes>, StorageError> {
        if let Some(sealed) = self.inner.metadata.small_file(id)? {
            return Ok(Some(SealedBytes::Database(sealed)));
        }
        Ok(self
            .inner
            .blobs
            .open_published(id, from)?
            .map(SealedBytes::Blob))
    }

    /// Deletes expired files and what abandoned uploads and crashes left
    /// behind; see [`GcReport`] for what it counts. Uploads in progress are
    /// never disturbed; an upload is abandoned once it started more than
    /// `abandoned_after_secs` before `now`.
    pub fn collect_garbage(
        &self,
        now: u64,
        abandoned_after_secs: u64,
    ) -> Result<GcReport, StorageError> {
        self.inner.collector.collect(now, abandoned_after_secs)
    }

    /// Deletes file `id` now, whatever its expiry (for the relay's
    /// delete-after-download). False if it is already gone or being written.
    pub fn delete_file(&self, id: &FileId) -> Result<bool, StorageError> {
        self.inner.collector.delete_file(id)
    }

    /// A tree of the metadata's database for another part of Satchel (see
    /// [`SideTree`]): in sled, so that one flush covers everything; in a
    /// cluster, shared by every instance.
    pub fn open_tree(&self, tree: Tree) -> Result<SideTree, StorageError> {
        self.inner.metadata.side_tree(tree.name())
    }

    /// One of the store's own trees that the metadata does not manage.
    pub(super) fn open_store_tree(&self, tree: StoreTree) -> Result<SideTree, StorageError> {
        self.inner.metadata.side_tree(tree.name())
    }

    /// Makes every change so far durable.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.inner.metadata.flush()
    }

    /// The blob store, for the migration (which copies blobs as they are)
    /// and for tests that look at what reached the disk.
    pub(super) fn blobs(&self) -> &Blobs {
        &self.inner.blobs
    }

    /// The metadata, for the migration (which copies records as they are)
    /// and for tests that look at it or alter it.
    pub(super) fn metadata(&self) -> &Metadata {
        &self.inner.metadata
    }

    /// The claims on ids, for the migration.
    pub(super) fn claims(&self) -> &Claims {
        &self.inner.claims
    }
}

fn check_chunk_size(chunk_size: u32) -> Result<(), StorageError> {
    if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
        return Err(StorageError::Options(format!(
            "chunk size {chunk_size} is not between 1 and {MAX_CHUNK_SIZE}"
        )));
    }
    Ok(())
}

fn create_store_dir(path: &Path) -> Result<(), StorageError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| StorageError::Io {
            context: format!("creating store directory {}", path.display()),
            source,
        })
}

/// A fresh key could not decrypt a single existing file: a store with data
/// and no key file means the key was lost or misconfigured.
fn refuse_to_replace_a_lost_key(
    options: &StoreOptions,
    metadata: &Metadata,
) -> Result<(), StorageError> {
    if !options.key_file.exists()
        && options.previous_key_files.is_empty()
        && metadata.holds_files()?
    {
        return Err(StorageError::KeyFile {
            path: options.key_file.clone(),
            reason: "missing, but the store already holds encrypted data; \
                     restore the key file instead of creating a new one"
                .into(),
        });
    }
    Ok(())
}

/// Tells the operator about files sealed under a master key that is not
/// loaded: they cannot be served.
fn warn_of_unreadable_files(files_per_key: &FilesPerKey, keys: &MasterKeys) {
    let unreadable: u64 = files_per_key
        .iter()
        .filter(|(&key_id, _)| keys.by_id(key_id).is_none())
        .map(|(_, files)| files)
        .sum();
    if unreadable > 0 {
        tracing::warn!(
            files = unreadable,
            key_id = %format_args!("{:08x}", keys.current().id()),
            "files sealed under another master key cannot be read"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::clock::utc_day;

    #[test]
    fn a_users_files_are_listed_newest_first_and_only_theirs() {
        let t = test_store();
        let first = upload(
            &t.store,
            &slot_for("alice@example.org", 10),
            &data(10),
            NOW + 100,
        );
        let second = upload(
            &t.store,
            &slot_for("alice@example.org", 20),
            &data(20),
            NOW + 50,
        );
        upload(
            &t.store,
            &slot_for("bob@example.org", 30),
            &data(30),
            NOW + 100,
        );
        let listed: Vec<FileId> = t
            .store
            .user_files("alice@example.org")
            .unwrap()
            .iter()
            .map(|f| f.id)
            .collect();
        // Same upload time: the one kept longer counts as the newer.
        assert_eq!(listed, [first.id, second.id]);
        assert!(t.store.user_files("carol@example.org").unwrap().is_empty());
        let census = t.store.census(NOW).unwrap();
        assert_eq!(
            census,
            Census {
                files: 3,
                bytes: 60,
                files_today: 3,
                bytes_today: 60
            }
        );
        assert_eq!(t.store.census(NOW + 86_400).unwrap().files_today, 0);
    }

    #[test]
    fn erasing_a_user_deletes_their_files_and_usage_and_nobody_elses() {
        let t = test_store();
        let alice = upload(
            &t.store,
            &slot_for("alice@example.org", 10),
            &data(10),
            NOW + 100,
        );
        upload(
            &t.store,
            &slot_for("alice@example.org", 20),
            &data(20),
            NOW + 100,
        );
        let bob = upload(
            &t.store,
            &slot_for("bob@example.org", 30),
            &data(30),
            NOW + 100,
        );
        let erased = t.store.erase_user("alice@example.org").unwrap();
        assert_eq!(
            erased,
            ErasedUser {
                files: 2,
                bytes: 30,
                left: 0
            }
        );
        assert_eq!(t.store.file(&alice.id).unwrap(), None);
        assert!(t.store.user_files("alice@example.org").unwrap().is_empty());
        let usage = t.store.usage("alice@example.org", NOW).unwrap();
        assert_eq!((usage.stored_bytes, usage.day_bytes), (0, 0));
        assert_eq!(t.store.stored_bytes(), 30);
        assert!(t.store.file(&bob.id).unwrap().is_some());
        assert_eq!(t.blob_len(&alice.id), None, "the bytes are gone");
    }

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

    /// One store holds files of both ciphers: each is read with the cipher
    /// its record names, whatever the store seals new files with, and each
    /// refuses tampering and truncation alike.
    #[test]
    fn files_of_both_ciphers_live_in_one_store() {
        use super::super::blobs::BlobState;
        use super::super::cipher::{Cipher, CipherChoice};
        use super::super::crypto::chunk_offset;

        let t = test_store_sealing(Cipher::ChaCha20Poly1305);
        let dir = t.dir;
        let bytes = data(3 * CHUNK as usize + 5);
        let size = bytes.len() as u64;
        let slot = || slot_for("juliet@example.org", size);
        let chacha = upload(&t.store, &slot(), &bytes, NOW + 1000);
        drop(t.store);
        let pinned_to_aes = StoreOptions {
            cipher: CipherChoice::Pinned(Cipher::Aes256Gcm),
            ..options_in(dir.path())
        };
        let store = open_when_released(pinned_to_aes).unwrap();
        let aes = upload(&store, &slot(), &bytes, NOW + 1000);
        assert_eq!(chacha.cipher, Cipher::ChaCha20Poly1305);
        assert_eq!(aes.cipher, Cipher::Aes256Gcm);
        drop(store);

        let store = open_when_released(options_in(dir.path())).unwrap();
        let chunk = u64::from(CHUNK);
        for (file, other) in [
            (&chacha, Cipher::Aes256Gcm),
            (&aes, Cipher::ChaCha20Poly1305),
        ] {
            let stored = store.file(&file.id).unwrap().unwrap();
            assert_eq!(&stored, file, "the record keeps its cipher");
            assert_eq!(read(&store, &stored, 0..size).unwrap(), bytes);
            assert_eq!(
                read(&store, &stored, chunk + 3..2 * chunk + 1).unwrap(),
                &bytes[chunk as usize + 3..2 * chunk as usize + 1]
            );
            // A record naming the other cipher opens nothing.
            let misnamed = FileRecord {
                cipher: other,
                ..stored.clone()
            };
            assert!(matches!(
                read(&store, &misnamed, 0..4),
                Err(StorageError::Corrupt { chunk: 0, .. })
            ));
        }
        for file in [&chacha, &aes] {
            let path = store.blobs().path_for_tests(&file.id, BlobState::Published);
            let mut blob = std::fs::read(&path).unwrap();
            blob[chunk_offset(1, chunk) as usize + 2] ^= 0x04;
            std::fs::write(&path, &blob).unwrap();
            assert_eq!(
                read(&store, file, 0..chunk).unwrap(),
                &bytes[..CHUNK as usize]
            );
            assert!(matches!(
                read(&store, file, 0..size),
                Err(StorageError::Corrupt { chunk: 1, .. })
            ));
            // Cut short by a byte: the last chunk's tag is incomplete.
            std::fs::write(&path, &blob[..blob.len() - 1]).unwrap();
            assert!(matches!(
                read(&store, file, size - 1..size),
                Err(StorageError::Corrupt { chunk: 3, .. })
            ));
        }
    }

    /// A file stored before records named their cipher (record in its
    /// first form, sealed with ChaCha20-Poly1305) reads after the upgrade,
    /// whatever new files are sealed with.
    #[test]
    fn a_file_of_the_first_record_form_stays_readable() {
        use super::super::cipher::{Cipher, CipherChoice};

        let t = test_store_sealing(Cipher::ChaCha20Poly1305);
        let bytes = data(40);
        let file = upload(
            &t.store,
            &slot_for("juliet@example.org", 40),
            &bytes,
            NOW + 1000,
        );
        let files = t
            .store
            .metadata()
            .sled_tree_for_tests(StoreTree::Files.name());
        // The first form is the current one without its extension (one
        // byte: the cipher), as `records` tests against the first code.
        let encoded = file.encode();
        files
            .insert(file.id.0, &encoded[..encoded.len() - 1])
            .unwrap();
        files.flush().unwrap();
        let dir = t.dir;
        drop((files, t.store));
        let store = open_when_released(StoreOptions {
            cipher: CipherChoice::Pinned(Cipher::Aes256Gcm),
            ..options_in(dir.path())
        })
        .unwrap();
        let stored = store.file(&file.id).unwrap().unwrap();
        assert_eq!(stored, file);
        assert_eq!(read(&store, &stored, 0..40).unwrap(), bytes);
        assert_eq!(read(&store, &stored, 17..33).unwrap(), &bytes[17..33]);
        assert_eq!(store.stored_bytes(), 40);
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
                    &NewUpload {
                        expires: now + 1000,
                        ..slot_for("juliet@example.org", size as u64)
                    },
                    None,
                )
                .unwrap();
            writer.write(&data(size)).unwrap();
            writer.finish(now).unwrap();
        };
        upload_at(100, NOW);
        upload_at(50, NOW + 10);
        // A slot granted but never used counts for nothing.
        let unused = slot_for("juliet@example.org", 1000);
        drop(t.store.begin_upload(&unused, None).unwrap());

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
    fn stored_files_and_bytes_are_recounted_at_open() {
        let t = test_store();
        upload(
            &t.store,
            &slot_for("juliet@example.org", 40),
            &data(40),
            NOW + 60,
        );
        let t = t.reopen();
        assert_eq!(t.store.stored_bytes(), 40);
        assert_eq!(t.store.stored_files(), 1);
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
