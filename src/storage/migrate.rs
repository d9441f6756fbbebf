//! Migration: copying a store into another, typically a single node's sled
//! and local files into a cluster's PostgreSQL and S3 bucket
//! (`satchel migrate`).
//!
//! Files are copied as they are stored, sealed: both stores load the same
//! master key, each file's key derives from it and the file's id, and the
//! record names the key and the cipher, so nothing is decrypted on the way
//! but to check. A file is copied in the order a PUT would store it: the
//! bytes first (listed as an upload, so that garbage collection reclaims
//! them if the copy stops there), then the record with its usage in one
//! commit, then a read of the whole copy through the target, decrypting
//! every chunk and comparing both hashes with the record. A copy that does
//! not verify is deleted again and reported.
//!
//! It is resumable: a file already in the target is skipped, so running it
//! again after an interruption copies what is left (a claim the interrupted
//! run left is waited out: at most one lease). Expired files are not
//! copied. The relay's outbox and the awaited downloads are copied entry by
//! entry, keeping what the target already holds.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::claims::Claim;
use super::error::StorageError;
use super::records::FileRecord;
use super::store::Store;
use super::trees::{StoreTree, Tree};

/// Bytes read from the source blob per append to the target.
const COPY_BUFFER: usize = 8 * 1024 * 1024;
/// How often a claim left by an interrupted run is tried again.
const CLAIM_POLL: Duration = Duration::from_millis(200);

/// What a migration did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Files copied and verified by this run, and their bytes (plaintext).
    pub copied: u64,
    pub copied_bytes: u64,
    /// Files the target held already (an earlier run copied them).
    pub already_there: u64,
    /// Files not copied because they have expired.
    pub expired: u64,
    /// Files that could not be copied (see the log); their source stays.
    pub failed: u64,
    /// Side-tree entries (relays, awaited downloads) copied.
    pub entries: u64,
}

impl Store {
    /// Copies every unexpired file of `source` that this store does not
    /// hold yet, and the side trees' entries; calls `copied` after each
    /// file copied and verified. See the module documentation.
    pub fn import_from(
        &self,
        source: &Store,
        now: u64,
        mut copied: impl FnMut(&FileRecord),
    ) -> Result<MigrationReport, StorageError> {
        let mut report = MigrationReport::default();
        // Copied as the walk goes: a store of millions of files is never
        // held in memory.
        source.metadata().for_each_file(|record| {
            if record.expires <= now {
                report.expired += 1;
            } else if self.metadata().has_file(&record.id)? {
                report.already_there += 1;
            } else {
                match self.import_file(source, record) {
                    Ok(()) => {
                        report.copied += 1;
                        report.copied_bytes += record.size;
                        copied(record);
                    }
                    // The target is unreachable: stop, a rerun resumes.
                    Err(
                        err @ (StorageError::Postgres { .. } | StorageError::ObjectStore { .. }),
                    ) => return Err(err),
                    Err(error) => {
                        tracing::warn!(file = %record.id, %error, "file not migrated");
                        report.failed += 1;
                    }
                }
            }
            Ok(())
        })?;
        for tree in [Tree::Relays.name(), StoreTree::AwaitedDownloads.name()] {
            let (from, to) = (
                source.metadata().side_tree(tree)?,
                self.metadata().side_tree(tree)?,
            );
            for (key, value) in from.entries()? {
                if to.get(&key)?.is_none() {
                    to.insert(&key, &value)?;
                    report.entries += 1;
                }
            }
            to.flush()?;
        }
        Ok(report)
    }

    /// Copies one file, sealed, commits its record, and verifies the copy.
    fn import_file(&self, source: &Store, record: &FileRecord) -> Result<(), StorageError> {
        let id = &record.id;
        let claim = self.wait_for_claim(record)?;
        match source.metadata().small_file(id)? {
            Some(sealed) => self.metadata().commit_file(record, Some(&sealed))?,
            None => {
                let blob =
                    source
                        .blobs()
                        .open_published(id, 0)?
                        .ok_or_else(|| StorageError::Io {
                            context: format!("the blob of file {id} in the source"),
                            source: std::io::ErrorKind::NotFound.into(),
                        })?;
                self.metadata()
                    .record_upload(id, crate::clock::unix_now())?;
                let mut target = self.blobs().create_pending(id)?;
                let mut buffer = vec![0; COPY_BUFFER];
                let mut offset = 0u64;
                loop {
                    let read = blob.read_at_most(&mut buffer, offset).map_err(|source| {
                        StorageError::Io {
                            context: format!("reading the blob of file {id} in the source"),
                            source,
                        }
                    })?;
                    if read == 0 {
                        break;
                    }
                    target.append(&buffer[..read])?;
                    offset += read as u64;
                }
                target.publish()?;
                self.metadata().commit_file(record, None)?;
            }
        }
        if let Err(error) = self.verify(record) {
            // The collector claims it to delete it.
            drop(claim);
            self.delete_file(id)?;
            return Err(error);
        }
        Ok(())
    }

    /// Claims the id of `record`, waiting up to one lease for a claim left
    /// by an interrupted run (in a cluster, claims outlive their process
    /// until their lease runs out).
    fn wait_for_claim(&self, record: &FileRecord) -> Result<Claim, StorageError> {
        let deadline = Instant::now() + self.leader_lease().unwrap_or_default() + CLAIM_POLL;
        loop {
            if let Some(claim) = self.claims().claim(record.id)? {
                return Ok(claim);
            }
            if Instant::now() >= deadline {
                return Err(StorageError::UploadInProgress);
            }
            std::thread::sleep(CLAIM_POLL);
        }
    }

    /// Reads the whole file through this store and compares its hashes
    /// with the record's.
    fn verify(&self, record: &FileRecord) -> Result<(), StorageError> {
        let mut blake3 = blake3::Hasher::new();
        let mut sha256 = Sha256::new();
        if record.size > 0 {
            for piece in self.read_range(record, 0..record.size)? {
                let piece = piece?;
                blake3.update(&piece);
                sha256.update(&piece);
            }
        }
        if *blake3.finalize().as_bytes() != record.blake3
            || <[u8; 32]>::from(sha256.finalize()) != record.sha256
        {
            return Err(StorageError::Corrupt {
                file: record.id,
                chunk: 0,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::blobs::BlobState;
    use crate::storage::test_support::*;
    use crate::storage::StoreOptions;

    /// A second store beside `source`'s, loading the same master key.
    fn target_beside(source: &TestStore) -> Store {
        Store::open(StoreOptions {
            path: source.dir.path().join("target"),
            ..source.options()
        })
        .unwrap()
    }

    #[test]
    fn files_are_copied_as_the_walk_goes_and_a_second_run_copies_nothing() {
        let source = test_store();
        let kept: Vec<(FileRecord, Vec<u8>)> = (0..3)
            .map(|i| {
                let bytes = data(100 + i);
                (
                    upload(
                        &source.store,
                        &slot_for("a@x", bytes.len() as u64),
                        &bytes,
                        NOW + 60,
                    ),
                    bytes,
                )
            })
            .collect();
        let gone = upload(&source.store, &slot_for("a@x", 5), &data(5), NOW + 1);
        let target = target_beside(&source);

        let mut seen = Vec::new();
        let report = target
            .import_from(&source.store, NOW + 10, |record| seen.push(record.id))
            .unwrap();
        assert_eq!((report.copied, report.expired, report.failed), (3, 1, 0));
        assert_eq!(report.copied_bytes, 100 + 101 + 102);
        assert_eq!(seen.len(), 3);
        for (record, bytes) in &kept {
            assert_eq!(&read(&target, record, 0..record.size).unwrap(), bytes);
        }
        assert!(!target.metadata().has_file(&gone.id).unwrap());

        let again = target.import_from(&source.store, NOW + 10, |_| {}).unwrap();
        assert_eq!((again.copied, again.already_there), (0, 3));
    }

    #[test]
    fn a_file_the_source_cannot_read_is_reported_and_the_others_are_copied() {
        let source = test_store();
        let lost = upload(&source.store, &slot_for("a@x", 50), &data(50), NOW + 60);
        let whole = upload(&source.store, &slot_for("a@x", 60), &data(60), NOW + 60);
        std::fs::remove_file(source.blob_path(&lost.id, BlobState::Published)).unwrap();
        let target = target_beside(&source);

        let report = target.import_from(&source.store, NOW, |_| {}).unwrap();
        assert_eq!((report.copied, report.failed), (1, 1));
        assert!(!target.metadata().has_file(&lost.id).unwrap());
        assert_eq!(read(&target, &whole, 0..60).unwrap(), data(60));
    }
}
