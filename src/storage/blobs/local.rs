//! The blob store in local files, beside the database: the default.
//!
//! ```text
//! content/ab/abcdef…         a published blob (32 hex digits: its id)
//! content/ab/abcdef….part    a pending blob
//! ```
//!
//! Not `blobs/`: sled owns that name inside its directory (it keeps large
//! values there, and on recovery deletes entries whose names parse as
//! numbers, such as a shard named `12`).
//!
//! The shard directory is named after the first two hex digits of the id, so
//! that no directory grows beyond a 256th of the files. Ids are 128 random
//! bits chosen by the server: nothing a user names ever reaches a path.
//! Directories are created with mode 0700 and files with mode 0600.
//!
//! Publishing syncs the `.part` file, renames it to its final name, and
//! syncs the shard directory, so that the rename itself survives a crash.
//! An open published blob stays readable after it is deleted (the unlinked
//! file lives on until its last handle closes).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::{BlobState, FoundBlob};
use crate::storage::error::{io_error, StorageError};
use crate::storage::records::FileId;

const PART_SUFFIX: &str = ".part";

/// Every this many bytes, the kernel is asked to start writing a pending
/// blob to disk (`sync_file_range`), as RocksDB's `bytes_per_sync` does: the
/// `fsync` of [`LocalPending::publish`] then waits for the last few MiB
/// instead of the whole file, and the disk works while the upload is still
/// arriving.
const WRITEBACK_EVERY_BYTES: u64 = 4 << 20;

/// The blob directory of one store; clones name the same directory.
#[derive(Clone)]
pub(crate) struct LocalBlobs {
    dir: PathBuf,
}

/// A blob being written; see [`LocalBlobs::create_pending`].
pub(crate) struct LocalPending {
    file: File,
    path: PathBuf,
    final_path: PathBuf,
    shard_dir: PathBuf,
    /// Bytes appended so far, and how many of them the kernel was already
    /// asked to write back.
    written: u64,
    written_back: u64,
}

/// A published blob, open for reading.
pub(crate) struct LocalPublished {
    file: File,
}

impl LocalBlobs {
    /// Creates `<store_dir>/content` and its 256 shard directories if needed.
    ///
    /// All at once, so that an upload neither checks for its shard nor waits
    /// for the `fsync` that makes a new one durable.
    pub fn open(store_dir: &Path) -> Result<LocalBlobs, StorageError> {
        let dir = store_dir.join("content");
        create_dir(&dir, store_dir)?;
        let mut created = false;
        for shard in 0..=u8::MAX {
            created |= create_dir_unsynced(&dir.join(hex::encode([shard])))?;
        }
        if created {
            sync_dir(&dir)?;
        }
        Ok(LocalBlobs { dir })
    }

    /// Starts the pending blob of `id`, emptying any left by an earlier
    /// attempt.
    pub fn create_pending(&self, id: &FileId) -> Result<LocalPending, StorageError> {
        let path = self.path(id, BlobState::Pending);
        let create = || {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
        };
        let file = match create() {
            // The shard was removed behind our back since `open`.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                create_dir(&self.shard_dir(id), &self.dir)?;
                create()
            }
            other => other,
        }
        .map_err(|err| io_error(format!("creating {}", path.display()), err))?;
        Ok(LocalPending {
            file,
            final_path: self.path(id, BlobState::Published),
            shard_dir: self.shard_dir(id),
            path,
            written: 0,
            written_back: 0,
        })
    }

    /// Opens the published blob of `id` for reading; `None` if there is none.
    pub fn open_published(&self, id: &FileId) -> Result<Option<LocalPublished>, StorageError> {
        let path = self.path(id, BlobState::Published);
        match File::open(&path) {
            Ok(file) => Ok(Some(LocalPublished { file })),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_error(format!("opening {}", path.display()), err)),
        }
    }

    /// Deletes the blob of `id` in `state`, if it exists.
    pub fn delete_one(&self, id: &FileId, state: BlobState) -> Result<(), StorageError> {
        let path = self.path(id, state);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_error(format!("deleting {}", path.display()), err)),
        }
    }

    /// Calls `visit` for every blob, pending or published, one directory
    /// entry at a time (memory does not grow with the number of files).
    /// Entries whose names are not ours are skipped, and left alone.
    ///
    /// Cost: one `readdir` of every shard and one `stat` per file.
    pub fn walk(
        &self,
        mut visit: impl FnMut(FoundBlob) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        for shard in read_dir(&self.dir)? {
            let shard =
                shard.map_err(|err| io_error(format!("listing {}", self.dir.display()), err))?;
            let shard_name = shard.file_name();
            let Some(shard_name) = shard_name.to_str().filter(|name| is_hex(name, 2)) else {
                continue;
            };
            if !shard.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            let shard_path = shard.path();
            for entry in read_dir(&shard_path)? {
                let entry = entry
                    .map_err(|err| io_error(format!("listing {}", shard_path.display()), err))?;
                if let Some(found) = found_blob(&entry, shard_name)? {
                    visit(found)?;
                }
            }
        }
        Ok(())
    }

    fn shard_dir(&self, id: &FileId) -> PathBuf {
        self.dir.join(hex::encode(&id.0[..1]))
    }

    fn path(&self, id: &FileId, state: BlobState) -> PathBuf {
        let name = match state {
            BlobState::Pending => format!("{id}{PART_SUFFIX}"),
            BlobState::Published => id.to_string(),
        };
        self.shard_dir(id).join(name)
    }

    /// Where the blob of `id` in `state` is, for tests that alter it behind
    /// the store's back.
    #[cfg(test)]
    pub fn path_for_tests(&self, id: &FileId, state: BlobState) -> PathBuf {
        self.path(id, state)
    }
}

impl LocalPending {
    /// Appends `bytes`.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.file
            .write_all(bytes)
            .map_err(|err| io_error(format!("writing {}", self.path.display()), err))?;
        self.written += bytes.len() as u64;
        if self.written - self.written_back >= WRITEBACK_EVERY_BYTES {
            self.start_writeback();
        }
        Ok(())
    }

    /// Makes the blob durable and gives it its final name; nothing may be
    /// appended after this.
    pub fn publish(&self) -> Result<(), StorageError> {
        let path = &self.path;
        self.file
            .sync_all()
            .map_err(|err| io_error(format!("syncing {}", path.display()), err))?;
        fs::rename(path, &self.final_path)
            .map_err(|err| io_error(format!("renaming {}", path.display()), err))?;
        sync_dir(&self.shard_dir)
    }

    /// Starts (without waiting for it) the write-back of what was written
    /// since the last call. Only an optimisation: `publish` syncs the whole
    /// blob, so a failure here is ignored.
    fn start_writeback(&mut self) {
        let (Ok(offset), Ok(len)) = (
            libc::off64_t::try_from(self.written_back),
            libc::off64_t::try_from(self.written - self.written_back),
        ) else {
            return;
        };
        // SAFETY: the descriptor is the blob's, open for as long as `self`;
        // the call takes no pointers.
        let _ = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                offset,
                len,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        self.written_back = self.written;
    }
}

impl LocalPublished {
    /// Fills `buf` from `offset` until it is full or the blob ends; returns
    /// how many bytes it holds.
    pub fn read_at_most(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self
                .file
                .read_at(&mut buf[filled..], offset + filled as u64)
            {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        Ok(filled)
    }
}

/// The blob a directory entry of shard `shard_name` holds, if it is one of
/// ours and still there.
fn found_blob(entry: &fs::DirEntry, shard_name: &str) -> Result<Option<FoundBlob>, StorageError> {
    let name = entry.file_name();
    let Some(name) = name.to_str() else {
        return Ok(None);
    };
    let (hex_id, state) = match name.strip_suffix(PART_SUFFIX) {
        Some(hex_id) => (hex_id, BlobState::Pending),
        None => (name, BlobState::Published),
    };
    let Ok(id) = hex_id.parse::<FileId>() else {
        return Ok(None);
    };
    if !hex_id.starts_with(shard_name) {
        return Ok(None);
    }
    let metadata = match entry.metadata() {
        Ok(metadata) if metadata.is_file() => metadata,
        Ok(_) => return Ok(None),
        // Deleted since it was listed.
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(io_error(
                format!("inspecting {}", entry.path().display()),
                err,
            ))
        }
    };
    let modified = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |elapsed| elapsed.as_secs());
    Ok(Some(FoundBlob {
        id,
        state,
        modified,
    }))
}

fn read_dir(dir: &Path) -> Result<fs::ReadDir, StorageError> {
    fs::read_dir(dir).map_err(|err| io_error(format!("listing {}", dir.display()), err))
}

fn is_hex(name: &str, len: usize) -> bool {
    name.len() == len && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Creates directory `dir` (mode 0700) in `parent` if it is missing, and
/// syncs `parent` so that the new entry survives a crash.
fn create_dir(dir: &Path, parent: &Path) -> Result<(), StorageError> {
    if create_dir_unsynced(dir)? {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Creates `dir` (mode 0700) unless it exists; true if it was created.
fn create_dir_unsynced(dir: &Path) -> Result<bool, StorageError> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(err) => Err(io_error(format!("creating {}", dir.display()), err)),
    }
}

/// Makes the entries of directory `dir` (creations, renames) durable.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|err| io_error(format!("syncing directory {}", dir.display()), err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shard_exists_after_open_and_a_lost_one_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::open(dir.path()).unwrap();
        let shards = fs::read_dir(dir.path().join("content")).unwrap().count();
        assert_eq!(shards, 256);
        // Opening again finds them all and changes nothing.
        let blobs_again = LocalBlobs::open(dir.path()).unwrap();
        assert_eq!(blobs_again.dir, blobs.dir);

        let id = FileId([0xab; 16]);
        fs::remove_dir(blobs.shard_dir(&id)).unwrap();
        drop(blobs.create_pending(&id).unwrap());
        assert!(blobs.path(&id, BlobState::Pending).is_file());
    }
}
