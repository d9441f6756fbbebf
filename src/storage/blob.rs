//! Blob files: the sealed chunks of one file, back to back, in one file.
//!
//! Layout under the store directory:
//!
//! ```text
//! content/ab/abcdef…         a complete file (32 hex digits: its id)
//! content/ab/abcdef….part    an upload being written
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
//! Chunk `i` of a file sealed in chunks of `c` plaintext bytes starts at
//! `i * (c + TAG_LEN)`; every chunk but the last is exactly `c + TAG_LEN`
//! bytes, so a reader finds any chunk without an index.
//!
//! A `.part` file becomes visible under its final name only by `rename`,
//! after its bytes were synced, and the rename itself is synced by an fsync
//! of the shard directory.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::crypto::TAG_LEN;
use super::records::FileId;
use super::{io_error, StorageError};

const PART_SUFFIX: &str = ".part";

/// Byte offset of chunk `index` in the blob of a file with `chunk_size`
/// (at most `MAX_CHUNK_SIZE`, so this cannot overflow).
pub(super) fn chunk_offset(index: u32, chunk_size: u64) -> u64 {
    u64::from(index) * (chunk_size + TAG_LEN as u64)
}

/// The blob directory of one store.
pub(super) struct Blobs {
    dir: PathBuf,
}

/// One entry found by [`Blobs::walk`].
pub(super) struct FoundBlob {
    pub id: FileId,
    /// `.part` (an upload) rather than a complete file.
    pub part: bool,
    /// Last modification, in unix seconds (0 if unknown).
    pub modified: u64,
}

impl Blobs {
    /// Creates `<store_dir>/content` and its 256 shard directories if needed.
    ///
    /// All at once, so that an upload neither checks for its shard nor waits
    /// for the `fsync` that makes a new one durable.
    pub fn open(store_dir: &Path) -> Result<Blobs, StorageError> {
        let dir = store_dir.join("content");
        create_dir(&dir, store_dir)?;
        let mut created = false;
        for shard in 0..=u8::MAX {
            created |= create_dir_unsynced(&dir.join(hex::encode([shard])))?;
        }
        if created {
            sync_dir(&dir)?;
        }
        Ok(Blobs { dir })
    }

    fn shard_dir(&self, id: &FileId) -> PathBuf {
        self.dir.join(hex::encode(&id.0[..1]))
    }

    pub fn final_path(&self, id: &FileId) -> PathBuf {
        self.shard_dir(id).join(id.to_string())
    }

    pub fn part_path(&self, id: &FileId) -> PathBuf {
        self.shard_dir(id).join(format!("{id}{PART_SUFFIX}"))
    }

    /// Creates the `.part` file of `id` for writing, emptying any left by an
    /// earlier attempt.
    pub fn create_part(&self, id: &FileId) -> Result<File, StorageError> {
        let path = self.part_path(id);
        let create = || {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
        };
        match create() {
            // The shard was removed behind our back since `open`.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                create_dir(&self.shard_dir(id), &self.dir)?;
                create()
            }
            other => other,
        }
        .map_err(|err| io_error(format!("creating {}", path.display()), err))
    }

    /// Makes the fully written `.part` file of `id` durable and gives it its
    /// final name.
    pub fn publish(&self, id: &FileId, part: &File) -> Result<(), StorageError> {
        let path = self.part_path(id);
        part.sync_all()
            .map_err(|err| io_error(format!("syncing {}", path.display()), err))?;
        fs::rename(&path, self.final_path(id))
            .map_err(|err| io_error(format!("renaming {}", path.display()), err))?;
        sync_dir(&self.shard_dir(id))
    }

    /// Opens the complete blob of `id` for reading.
    pub fn open_final(&self, id: &FileId) -> io::Result<File> {
        File::open(self.final_path(id))
    }

    /// Deletes the `.part` and the complete blob of `id`, whichever exist.
    pub fn remove(&self, id: &FileId) -> Result<(), StorageError> {
        self.remove_one(id, true)?;
        self.remove_one(id, false)
    }

    /// Deletes the `.part` (if `part`) or the complete blob of `id`, if it
    /// exists.
    pub fn remove_one(&self, id: &FileId, part: bool) -> Result<(), StorageError> {
        let path = if part {
            self.part_path(id)
        } else {
            self.final_path(id)
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_error(format!("deleting {}", path.display()), err)),
        }
    }

    /// Calls `visit` for every blob and `.part` file, one directory entry at
    /// a time (memory does not grow with the number of files). Entries whose
    /// names are not ours are skipped, and left alone.
    ///
    /// Cost: one `readdir` of every shard and one `stat` per file.
    pub fn walk(
        &self,
        mut visit: impl FnMut(FoundBlob) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let read_dir = |dir: &Path| {
            fs::read_dir(dir).map_err(|err| io_error(format!("listing {}", dir.display()), err))
        };
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
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    continue;
                };
                let (hex_id, part) = match name.strip_suffix(PART_SUFFIX) {
                    Some(hex_id) => (hex_id, true),
                    None => (name, false),
                };
                let Ok(id) = hex_id.parse::<FileId>() else {
                    continue;
                };
                if !hex_id.starts_with(shard_name) {
                    continue;
                }
                let metadata = match entry.metadata() {
                    Ok(metadata) if metadata.is_file() => metadata,
                    Ok(_) => continue,
                    // Deleted since it was listed.
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
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
                visit(FoundBlob { id, part, modified })?;
            }
        }
        Ok(())
    }
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
        let blobs = Blobs::open(dir.path()).unwrap();
        let shards = fs::read_dir(dir.path().join("content")).unwrap().count();
        assert_eq!(shards, 256);
        // Opening again finds them all and changes nothing.
        let blobs_again = Blobs::open(dir.path()).unwrap();
        assert_eq!(blobs_again.dir, blobs.dir);

        let id = FileId([0xab; 16]);
        fs::remove_dir(blobs.shard_dir(&id)).unwrap();
        drop(blobs.create_part(&id).unwrap());
        assert!(blobs.part_path(&id).is_file());
    }
}
