//! Throwaway stores for tests, here and in the rest of the crate.
//!
//! Tests of other modules that need a store (the router, the relay, the slot
//! service) open one with [`service_store_in`], where
//! `Config::for_tests(dir)` puts it, or take a [`service_test_store`] with
//! its own temporary directory; either has the options the service runs
//! with ([`StoreOptions::new`]). The storage tests use [`test_store`] and
//! its variants: tiny chunks, so that a few bytes span several, and no
//! small files in the database unless asked. They seal with the cipher the
//! CPU suits, as the service does; the tests of sealed bytes (tampering,
//! crashes, round trips) run once per cipher, through [`test_each_cipher`].

use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use super::blobs::BlobState;
use super::cipher::{Cipher, CipherChoice};
use super::{FileId, FileRecord, NewUpload, Purpose, StorageError, Store, StoreOptions};

/// Plaintext bytes per chunk of [`test_store`].
pub const CHUNK: u32 = 16;
/// The clock of the storage tests.
pub const NOW: u64 = 1_800_000_000;
/// The small-file limit of [`small_files_test_store`]: several chunks.
pub const SMALL_FILE_TEST_MAX: u64 = 100;

/// A store in a temporary directory, deleted with it.
pub struct TestStore {
    pub store: Store,
    pub dir: tempfile::TempDir,
    options: StoreOptions,
}

impl TestStore {
    /// Opens a store with `options` (which name a place in `dir`).
    fn open(dir: tempfile::TempDir, options: StoreOptions) -> TestStore {
        TestStore {
            store: Store::open(options.clone()).unwrap(),
            dir,
            options,
        }
    }

    /// The options this store was opened with.
    pub fn options(&self) -> StoreOptions {
        self.options.clone()
    }

    /// Drops this handle and opens the same store again.
    pub fn reopen(self) -> TestStore {
        drop(self.store);
        TestStore {
            store: open_when_released(self.options.clone()).unwrap(),
            dir: self.dir,
            options: self.options,
        }
    }

    /// Bytes of the published blob of `id`, if there is one.
    pub fn blob_len(&self, id: &FileId) -> Option<u64> {
        let path = self.blob_path(id, BlobState::Published);
        std::fs::metadata(path).ok().map(|metadata| metadata.len())
    }

    /// Whether a pending blob (`.part` file) of `id` exists.
    pub fn has_part(&self, id: &FileId) -> bool {
        self.blob_path(id, BlobState::Pending).exists()
    }

    /// Where the blob of `id` in `state` is on disk.
    pub(super) fn blob_path(&self, id: &FileId, state: BlobState) -> std::path::PathBuf {
        self.store.blobs().path_for_tests(id, state)
    }
}

/// A store in `dir/store`, its key in `dir/master.key` (where
/// `Config::for_tests(dir)` puts them), with the options the service runs
/// with but a small page cache.
pub fn service_store_in(dir: &Path) -> Store {
    Store::open(service_options_in(dir)).unwrap()
}

/// [`service_store_in`] a temporary directory of its own.
pub fn service_test_store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let options = service_options_in(dir.path());
    TestStore::open(dir, options)
}

fn service_options_in(dir: &Path) -> StoreOptions {
    StoreOptions::new(dir.join("store"), dir.join("master.key"), 1 << 20)
}

/// Opens a store just dropped. sled's background threads are shared by
/// every database in the process and may hold a dropped database's lock
/// a little longer while other tests keep them busy: wait for it.
pub fn open_when_released(options: StoreOptions) -> Result<Store, StorageError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(options.clone()) {
            Err(StorageError::Db(sled::Error::Io(err)))
                if err.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// The options of [`test_store`]: a store in `dir/store`, its key in
/// `dir/master.key`, chunks of [`CHUNK`] bytes, a blob for every file.
pub fn options_in(dir: &Path) -> StoreOptions {
    StoreOptions {
        chunk_size: CHUNK,
        // `small_files_test_store` for the other way.
        small_file_max_bytes: None,
        ..service_options_in(dir)
    }
}

pub fn test_store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let options = options_in(dir.path());
    TestStore::open(dir, options)
}

/// A [`test_store`] sealing new files with `cipher`.
pub fn test_store_sealing(cipher: Cipher) -> TestStore {
    test_store_sealing_chunks(cipher, CHUNK)
}

/// A [`test_store`] sealing new files with `cipher` in chunks of
/// `chunk_size` bytes instead of [`CHUNK`].
pub fn test_store_sealing_chunks(cipher: Cipher, chunk_size: u32) -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        chunk_size,
        cipher: CipherChoice::Pinned(cipher),
        ..options_in(dir.path())
    };
    TestStore::open(dir, options)
}

/// Keeps files of up to [`SMALL_FILE_TEST_MAX`] bytes in the database
/// (several chunks of [`CHUNK`] bytes each).
pub fn small_files_test_store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        small_file_max_bytes: Some(SMALL_FILE_TEST_MAX),
        ..options_in(dir.path())
    };
    TestStore::open(dir, options)
}

/// A [`small_files_test_store`] sealing new files with `cipher`.
pub fn small_files_test_store_sealing(cipher: Cipher) -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        small_file_max_bytes: Some(SMALL_FILE_TEST_MAX),
        cipher: CipherChoice::Pinned(cipher),
        ..options_in(dir.path())
    };
    TestStore::open(dir, options)
}

/// Runs a test once per [`Cipher`]: each `fn name(cipher) { .. }` inside
/// becomes a module `name` with the tests `chacha20_poly1305` and
/// `aes_256_gcm`, so that a failure names its cipher.
macro_rules! test_each_cipher {
    ($($(#[$meta:meta])* fn $name:ident($cipher:ident) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            use super::*;

            fn run($cipher: $crate::storage::cipher::Cipher) $body

            #[test]
            fn chacha20_poly1305() {
                run($crate::storage::cipher::Cipher::ChaCha20Poly1305)
            }

            #[test]
            fn aes_256_gcm() {
                run($crate::storage::cipher::Cipher::Aes256Gcm)
            }
        }
    )*};
}
pub(crate) use test_each_cipher;

/// An upload of `size` bytes by `user`, of type `text/plain`, kept for a
/// minute after [`NOW`].
pub fn slot_for(user: &str, size: u64) -> NewUpload {
    NewUpload {
        id: FileId::random(),
        uploader: user.into(),
        filename: "notes.txt".into(),
        size,
        content_type: "text/plain".into(),
        purpose: Purpose::Message,
        expires: NOW + 60,
    }
}

/// Deterministic, non-repeating-looking bytes.
pub fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
}

/// Uploads `bytes` as `slot`, kept until `expires`, completed at [`NOW`].
pub fn upload(store: &Store, slot: &NewUpload, bytes: &[u8], expires: u64) -> FileRecord {
    let mut writer = store
        .begin_upload(
            &NewUpload {
                expires,
                ..slot.clone()
            },
            None,
        )
        .unwrap();
    writer.write(bytes).unwrap();
    writer.finish(NOW).unwrap()
}

pub fn read(store: &Store, file: &FileRecord, range: Range<u64>) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::new();
    for piece in store.read_range(file, range)? {
        out.extend_from_slice(&piece?);
    }
    Ok(out)
}
