//! Garbage collection: expired files, abandoned uploads,
//! orphan blobs.
//!
//! Deleting a file is two steps that cannot share a transaction (sled does
//! not own the blob): first one transaction removes the record and its
//! indexes, lowers the owner's usage, and files the id under `uploads` with
//! start time 0, and sled is flushed; then the blob is unlinked (its space
//! goes back to the filesystem), and the `uploads` entry with it. If the
//! process dies in between, the file is already invisible and the next
//! collection finds its blob like that of any abandoned upload. The flush
//! comes first so that a crash can never bring back a record whose blob is
//! already gone.
//!
//! Blobs sled never heard of can still exist after a crash: sled makes its
//! writes durable only on flush (or every half second), so a crash may lose
//! the `uploads` entry of an upload whose `.part` file is on disk, or the
//! commit of a file whose blob was already renamed. A walk of the blob
//! directory finds them. It costs a `readdir` per shard, a `stat` per blob,
//! and a sled lookup or two per blob, so it does not run on every
//! collection: only on the first after the store is opened (when crash
//! leftovers are there to find) and then once per `abandoned_after_secs`
//! (so a blob too young to delete on one walk is old enough on the next).
//!
//! Every id is claimed (see `Store::claim`) while its blob is deleted, so
//! a collection never races a writer of the same id.

use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use super::blob::FoundBlob;
use super::records::{FileId, FileRecord};
use sled::transaction::{ConflictableTransactionError, Transactional};

use super::store::{by_user_key, decode, expiry_key, parse_expiry_key, update_usage, Store};
use super::StorageError;

/// What one [`Store::collect_garbage`] run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    pub files_deleted: u64,
    pub bytes_freed: u64,
    pub abandoned_uploads: u64,
    /// Blobs no sled entry knew of (left by a crash), deleted.
    pub orphan_blobs: u64,
}

impl Store {
    /// Deletes expired files (record, indexes, blob; lowers the owner's stored_bytes)
    /// and blobs of uploads started before `now - abandoned_after_secs` that never completed and are not in progress.
    ///
    /// A file is expired once `now` is past its `expires`. Ids busy
    /// with an upload are skipped and left for the next run. Now and then
    /// (see the module documentation) it also deletes blobs that neither a
    /// `FileRecord` nor an `uploads` entry accounts for and that were last
    /// modified before `now - abandoned_after_secs`.
    pub fn collect_garbage(
        &self,
        now: u64,
        abandoned_after_secs: u64,
    ) -> Result<GcReport, StorageError> {
        let mut report = GcReport::default();
        self.delete_expired_files(now, &mut report)?;
        let cutoff = now.saturating_sub(abandoned_after_secs);
        self.reclaim_abandoned_uploads(cutoff, &mut report)?;
        if self.blob_walk_due(now, abandoned_after_secs) {
            self.delete_orphan_blobs(cutoff, &mut report)?;
            *self.lock_last_blob_walk() = Some(now);
        }
        Ok(report)
    }

    /// Deletes file `id` now, whatever its expiry (for the relay's
    /// delete-after-download). False if it is already gone or being written.
    pub fn delete_file(&self, id: &FileId) -> Result<bool, StorageError> {
        let Some(record) = self.file(id)? else {
            return Ok(false);
        };
        let Some(_claim) = self.claim(*id) else {
            return Ok(false);
        };
        let Some(size) = self.unlist_file(record.expires, id)? else {
            return Ok(false);
        };
        self.forget_stored_bytes(size);
        self.flush()?;
        self.discard_upload(id)?;
        Ok(true)
    }

    fn forget_stored_bytes(&self, size: u64) {
        self.inner
            .stored_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |stored| {
                Some(stored.saturating_sub(size))
            })
            .ok();
    }

    fn delete_expired_files(&self, now: u64, report: &mut GcReport) -> Result<(), StorageError> {
        // Keys sort by expiry: everything before (now, id 0) expired before now.
        let expired = self
            .inner
            .trees
            .expiry
            .range(..expiry_key(now, &FileId([0; 16])))
            .keys()
            .map(|key| parse_expiry_key(&key?))
            .collect::<Result<Vec<_>, _>>()?;
        let mut unlisted = Vec::new();
        for (expires, id) in expired {
            let Some(claim) = self.claim(id) else {
                continue;
            };
            if let Some(size) = self.unlist_file(expires, &id)? {
                self.forget_stored_bytes(size);
                // Claimed until the blob is gone.
                unlisted.push((id, size, claim));
            }
        }
        if unlisted.is_empty() {
            return Ok(());
        }
        // One flush for all: the removals must be durable before any blob
        // goes (see the module documentation).
        self.flush()?;
        for (id, size, _claim) in unlisted {
            self.discard_upload(&id)?;
            report.files_deleted += 1;
            report.bytes_freed += size;
        }
        Ok(())
    }

    /// Removes the record of file `id` and everything pointing at it, and
    /// lists the id in `uploads` so its blob is found even if we crash
    /// before deleting them. Returns the file's size, or `None` if the
    /// record was already gone (then only the stale expiry entry is removed).
    fn unlist_file(&self, expires: u64, id: &FileId) -> Result<Option<u64>, StorageError> {
        let trees = &self.inner.trees;
        let size = (
            &trees.files,
            &trees.uploads,
            &trees.usage,
            &trees.expiry,
            &trees.by_user,
            &trees.inline,
        )
            .transaction(|(files, uploads, usage, expiry, by_user, inline)| {
                expiry.remove(&expiry_key(expires, id))?;
                let Some(bytes) = files.remove(&id.0)? else {
                    return Ok(None);
                };
                inline.remove(&id.0)?;
                let record: FileRecord = decode(&bytes, format_args!("file record {id}"))
                    .map_err(ConflictableTransactionError::Abort)?;
                by_user.remove(by_user_key(&record.uploader, record.expires, id))?;
                uploads.insert(&id.0, &0u64.to_be_bytes())?;
                update_usage(usage, &record.uploader, |current| {
                    current.stored_bytes = current.stored_bytes.saturating_sub(record.size);
                })?;
                Ok(Some(record.size))
            })?;
        Ok(size)
    }

    fn reclaim_abandoned_uploads(
        &self,
        started_before: u64,
        report: &mut GcReport,
    ) -> Result<(), StorageError> {
        let trees = &self.inner.trees;
        let mut abandoned = Vec::new();
        for entry in trees.uploads.iter() {
            let (key, started) = entry?;
            let (Ok(id), Ok(started)) = (
                <[u8; 16]>::try_from(key.as_ref()),
                <[u8; 8]>::try_from(started.as_ref()),
            ) else {
                return Err(StorageError::Decode(format!("uploads entry {key:?}")));
            };
            if u64::from_be_bytes(started) < started_before {
                abandoned.push(FileId(id));
            }
        }
        for id in abandoned {
            // Claimed ids are being written right now: not abandoned.
            let Some(_claim) = self.claim(id) else {
                continue;
            };
            if trees.files.contains_key(id.0)? {
                // Cannot happen (`finish` removes the entry in the same
                // transaction that adds the file), but the blob is the
                // file's: keep it.
                trees.uploads.remove(id.0)?;
                continue;
            }
            self.discard_upload(&id)?;
            report.abandoned_uploads += 1;
        }
        Ok(())
    }

    /// Whether `collect_garbage` at `now` should walk the blob directory:
    /// on its first run, and once `abandoned_after_secs` have passed since
    /// the last walk (or the clock went back).
    fn blob_walk_due(&self, now: u64, abandoned_after_secs: u64) -> bool {
        match *self.lock_last_blob_walk() {
            None => true,
            Some(last) => now < last || now - last >= abandoned_after_secs,
        }
    }

    fn lock_last_blob_walk(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.inner
            .last_blob_walk
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes the blobs modified before `modified_before` that neither a
    /// `FileRecord` nor an `uploads` entry accounts for (ids listed in
    /// `uploads` are `reclaim_abandoned_uploads`' business, by start time).
    fn delete_orphan_blobs(
        &self,
        modified_before: u64,
        report: &mut GcReport,
    ) -> Result<(), StorageError> {
        let trees = &self.inner.trees;
        self.inner.blobs.walk(|found: FoundBlob| {
            if found.modified >= modified_before {
                return Ok(());
            }
            // Claimed ids are being written or deleted right now.
            let Some(_claim) = self.claim(found.id) else {
                return Ok(());
            };
            // A `.part` is never a file's, even beside a record.
            if trees.uploads.contains_key(found.id.0)?
                || (!found.part && trees.files.contains_key(found.id.0)?)
            {
                return Ok(());
            }
            self.inner.blobs.remove_one(&found.id, found.part)?;
            tracing::info!(
                file = %found.id,
                part = found.part,
                "deleted a blob left behind by a crash"
            );
            report.orphan_blobs += 1;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::test_support::*;
    use super::*;
    use crate::clock::unix_now;

    #[test]
    fn deletes_expired_files_and_lowers_usage() {
        let t = test_store();
        let user = "juliet@example.org";
        let old = upload(&t.store, &slot_for(user, 40), &data(40), NOW + 10);
        let fresh = upload(&t.store, &slot_for(user, 25), &data(25), NOW + 1000);
        assert_eq!(t.store.stored_bytes(), 65);
        assert!(t.blob_len(&old.id).is_some());

        // Not yet past expiry.
        let report = t.store.collect_garbage(NOW + 10, 3600).unwrap();
        assert_eq!(report.files_deleted, 0);

        let report = t.store.collect_garbage(NOW + 11, 3600).unwrap();
        assert_eq!(
            report,
            GcReport {
                files_deleted: 1,
                bytes_freed: 40,
                ..GcReport::default()
            }
        );
        assert_eq!(t.store.file(&old.id).unwrap(), None);
        assert_eq!(t.blob_len(&old.id), None);
        assert!(t.store.file(&fresh.id).unwrap().is_some());
        assert!(t.blob_len(&fresh.id).is_some());
        assert_eq!(t.store.stored_bytes(), 25);
        assert_eq!(t.store.usage(user, NOW).unwrap().stored_bytes, 25);
        assert_eq!(
            t.store.user_files_by_expiry(user).unwrap(),
            vec![(NOW + 1000, 25)]
        );
        assert_eq!(t.store.files_by_expiry(10).unwrap(), vec![(NOW + 1000, 25)]);
        assert!(t.store.inner.trees.uploads.is_empty());

        // A second run has nothing left to do.
        let report = t.store.collect_garbage(NOW + 11, 3600).unwrap();
        assert_eq!(report, GcReport::default());
    }

    #[test]
    fn deletes_a_file_on_demand() {
        let t = test_store();
        let slot = slot_for("juliet@example.org", 40);
        let file = upload(&t.store, &slot, &data(40), NOW + 1000);
        assert!(t.store.delete_file(&file.id).unwrap());
        assert_eq!(t.store.file(&file.id).unwrap(), None);
        assert_eq!(t.store.stored_bytes(), 0);
        assert_eq!(
            t.store
                .usage("juliet@example.org", NOW)
                .unwrap()
                .stored_bytes,
            0
        );
        assert!(!t.store.delete_file(&file.id).unwrap(), "already gone");
    }

    #[test]
    fn returns_the_space_of_expired_files() {
        let t = test_store();
        let bytes = data(256 * 1024);
        let slot = slot_for("juliet@example.org", bytes.len() as u64);
        let file = upload(&t.store, &slot, &bytes, NOW + 10);
        let path = t.store.inner.blobs.final_path(&file.id);
        assert!(std::fs::metadata(&path).unwrap().len() > bytes.len() as u64);

        let report = t.store.collect_garbage(NOW + 11, 3600).unwrap();
        assert_eq!(report.files_deleted, 1);
        assert_eq!(report.bytes_freed, bytes.len() as u64);
        // Unlinked, not merely forgotten: nothing is left in its shard.
        assert!(!path.exists());
        let shard = path.parent().unwrap();
        assert_eq!(std::fs::read_dir(shard).unwrap().count(), 0);
    }

    /// A `.part` blob and an `uploads` entry as a process that died
    /// mid-upload leaves them.
    fn leave_abandoned_upload(t: &TestStore, started: u64) -> FileId {
        let id = FileId::random();
        let trees = &t.store.inner.trees;
        trees.uploads.insert(id.0, &started.to_be_bytes()).unwrap();
        leave_part(t, &id);
        id
    }

    fn leave_part(t: &TestStore, id: &FileId) {
        drop(t.store.inner.blobs.create_part(id).unwrap());
        std::fs::write(t.store.inner.blobs.part_path(id), [7u8; 96]).unwrap();
    }

    #[test]
    fn reclaims_abandoned_uploads() {
        let t = test_store();
        let id = leave_abandoned_upload(&t, NOW);

        let report = t.store.collect_garbage(NOW + 3600, 3600).unwrap();
        assert_eq!(report.abandoned_uploads, 0, "not old enough yet");
        assert!(t.has_part(&id));

        let report = t.store.collect_garbage(NOW + 3601, 3600).unwrap();
        assert_eq!(report.abandoned_uploads, 1);
        assert!(!t.has_part(&id));
        assert!(t.store.inner.trees.uploads.is_empty());
    }

    #[test]
    fn reclaims_a_blob_renamed_but_never_committed() {
        let t = test_store();
        // `finish` renamed the blob, then the process died before the
        // commit; the `uploads` entry survived.
        let id = leave_abandoned_upload(&t, NOW);
        let blobs = &t.store.inner.blobs;
        std::fs::rename(blobs.part_path(&id), blobs.final_path(&id)).unwrap();

        let report = t.store.collect_garbage(NOW + 3601, 3600).unwrap();
        assert_eq!(report.abandoned_uploads, 1);
        assert_eq!(report.orphan_blobs, 0, "found through `uploads`");
        assert_eq!(t.blob_len(&id), None);
    }

    #[test]
    fn deletes_old_blobs_that_sled_does_not_know() {
        let t = test_store();
        let blobs = &t.store.inner.blobs;
        // A crash lost the `uploads` entry of an upload...
        let lost_upload = FileId::random();
        leave_part(&t, &lost_upload);
        // ...and the commit of a file whose blob was renamed.
        let lost_commit = FileId::random();
        leave_part(&t, &lost_commit);
        std::fs::rename(
            blobs.part_path(&lost_commit),
            blobs.final_path(&lost_commit),
        )
        .unwrap();
        // A live file, and a stray `.part` beside it.
        let live = upload(
            &t.store,
            &slot_for("juliet@example.org", 40),
            &data(40),
            NOW + 10_000,
        );
        leave_part(&t, &live.id);
        // Files that are not ours.
        let shard = blobs.final_path(&live.id).parent().unwrap().to_owned();
        let strangers = [shard.join("README"), shard.parent().unwrap().join("README")];
        for stranger in &strangers {
            std::fs::write(stranger, b"hello").unwrap();
        }

        // Blob ages are real time: the blobs were all written before `now`.
        let now = unix_now();
        let report = t.store.collect_garbage(now, 3600).unwrap();
        assert_eq!(report, GcReport::default(), "too young");
        let report = t.store.collect_garbage(now + 3601, 3600).unwrap();
        assert_eq!(
            report,
            GcReport {
                orphan_blobs: 3,
                ..GcReport::default()
            }
        );
        assert!(!t.has_part(&lost_upload));
        assert_eq!(t.blob_len(&lost_commit), None);
        assert!(!t.has_part(&live.id));
        assert_eq!(read(&t.store, &live, 0..40).unwrap(), data(40));
        for stranger in &strangers {
            assert!(stranger.exists());
        }
    }

    #[test]
    fn walks_the_blobs_only_now_and_then() {
        let t = test_store();
        let now = unix_now() + 7200;
        assert_eq!(
            t.store.collect_garbage(now, 3600).unwrap(),
            GcReport::default()
        );
        // Left by nobody this process knows.
        let id = FileId::random();
        leave_part(&t, &id);
        let report = t.store.collect_garbage(now + 3599, 3600).unwrap();
        assert_eq!(report.orphan_blobs, 0, "the last walk was too recent");
        assert!(t.has_part(&id));
        let report = t.store.collect_garbage(now + 3600, 3600).unwrap();
        assert_eq!(report.orphan_blobs, 1);
        assert!(!t.has_part(&id));

        // A reopened store walks at once: that is when crash leftovers are
        // there to find.
        leave_part(&t, &id);
        let t = t.reopen();
        let report = t.store.collect_garbage(now + 3601, 3600).unwrap();
        assert_eq!(report.orphan_blobs, 1);
        assert!(!t.has_part(&id));
    }

    #[test]
    fn finishes_deleting_a_file_interrupted_by_a_crash() {
        let t = test_store();
        let file = upload(
            &t.store,
            &slot_for("juliet@example.org", 40),
            &data(40),
            NOW + 10,
        );
        // The first step of a deletion ran, then the process died.
        t.store.unlist_file(file.expires, &file.id).unwrap();
        t.store.flush().unwrap();
        assert!(t.blob_len(&file.id).is_some());

        let t = t.reopen();
        assert_eq!(t.store.stored_bytes(), 0);
        let report = t.store.collect_garbage(NOW, 3600).unwrap();
        assert_eq!(report.abandoned_uploads, 1);
        assert_eq!(report.orphan_blobs, 0);
        assert_eq!(t.blob_len(&file.id), None);
    }

    #[test]
    fn leaves_running_uploads_alone() {
        let t = test_store();
        let bytes = data(40);
        let slot = slot_for("juliet@example.org", 40);
        let mut writer = t.store.begin_upload(&slot, "a/b".into(), NOW + 60).unwrap();
        writer.write(&bytes[..20]).unwrap();

        // Far in the future: the upload looks ancient, but it is running.
        let report = t.store.collect_garbage(u64::MAX, 1).unwrap();
        assert_eq!(report, GcReport::default());
        assert!(t.has_part(&slot.id));

        writer.write(&bytes[20..]).unwrap();
        let file = writer.finish(NOW).unwrap();
        assert_eq!(read(&t.store, &file, 0..40).unwrap(), bytes);
    }
}
