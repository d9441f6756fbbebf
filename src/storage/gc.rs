//! Garbage collection, and deleting files: expired files, abandoned
//! uploads, orphan blobs.
//!
//! Deleting a file is two steps that cannot share a transaction (the
//! metadata database does not own the blob): first the metadata unlists the
//! file (its record, indexes and usage go, and its id is filed under
//! `uploads` with start time 0) and is flushed; then the blob is deleted
//! (its space goes back to the filesystem), and the `uploads` entry with
//! it. If the process dies in between, the file is already invisible and
//! the next collection finds its blob like that of any abandoned upload.
//! The flush comes first so that a crash can never bring back a record
//! whose blob is already gone.
//!
//! Blobs the metadata never heard of can still exist after a crash: sled
//! makes its writes durable only on flush (or every half second), so a
//! crash may lose the `uploads` entry of an upload whose pending blob is on
//! disk, or the commit of a file whose blob was already published. A walk
//! of the blob store finds them. It costs a `readdir` per shard, a `stat`
//! per blob, and a lookup or two per blob, so it does not run on every
//! collection: only on the first after the store is opened (when crash
//! leftovers are there to find) and then once per `abandoned_after_secs`
//! (so a blob too young to delete on one walk is old enough on the next).
//!
//! Every id is claimed (see `claims`) while its blob is deleted, so a
//! collection never races a writer of the same id.

use std::sync::{Mutex, PoisonError};

use super::blobs::{BlobState, Blobs, FoundBlob};
use super::claims::Claims;
use super::error::StorageError;
use super::metadata::Metadata;
use super::records::FileId;

/// What one [`Store::collect_garbage`](super::Store::collect_garbage) run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    pub files_deleted: u64,
    pub bytes_freed: u64,
    pub abandoned_uploads: u64,
    /// Blobs no metadata entry knew of (left by a crash), deleted.
    pub orphan_blobs: u64,
}

/// Deletes files and blobs of one store.
pub(super) struct GarbageCollector {
    blobs: Blobs,
    metadata: Metadata,
    claims: Claims,
    /// `now` of the last walk of the blob store; `None` before the first.
    last_blob_walk: Mutex<Option<u64>>,
}

impl GarbageCollector {
    pub fn new(blobs: Blobs, metadata: Metadata, claims: Claims) -> GarbageCollector {
        GarbageCollector {
            blobs,
            metadata,
            claims,
            last_blob_walk: Mutex::new(None),
        }
    }

    /// Deletes expired files (record, indexes, blob; lowers the owner's
    /// stored_bytes) and the blobs of uploads started before
    /// `now - abandoned_after_secs` that never completed and are not in
    /// progress.
    ///
    /// A file is expired once `now` is past its `expires`. Ids busy
    /// with an upload are skipped and left for the next run. Now and then
    /// (see the module documentation) it also deletes blobs that neither a
    /// `FileRecord` nor an `uploads` entry accounts for and that were last
    /// modified before `now - abandoned_after_secs`.
    pub fn collect(&self, now: u64, abandoned_after_secs: u64) -> Result<GcReport, StorageError> {
        let mut report = GcReport::default();
        self.delete_expired_files(now, &mut report)?;
        let cutoff = now.saturating_sub(abandoned_after_secs);
        self.reclaim_abandoned_uploads(cutoff, &mut report)?;
        if self.blob_walk_due(now, abandoned_after_secs) {
            self.delete_orphan_blobs(cutoff, &mut report)?;
            *self.lock_last_blob_walk() = Some(now);
        }
        self.metadata.recount()?;
        Ok(report)
    }

    /// Deletes file `id` now, whatever its expiry. False if it is already
    /// gone or being written.
    pub fn delete_file(&self, id: &FileId) -> Result<bool, StorageError> {
        let Some(record) = self.metadata.file(id)? else {
            return Ok(false);
        };
        let Some(_claim) = self.claims.claim(*id)? else {
            return Ok(false);
        };
        if self.metadata.unlist_file(record.expires, id)?.is_none() {
            return Ok(false);
        }
        self.metadata.flush()?;
        self.discard_blob(id)?;
        Ok(true)
    }

    /// Deletes the blob (pending or published) of an id that has no
    /// `FileRecord`, then its `uploads` entry. The caller holds its claim.
    fn discard_blob(&self, id: &FileId) -> Result<(), StorageError> {
        self.blobs.delete(id)?;
        self.metadata.forget_upload(id)
    }

    fn delete_expired_files(&self, now: u64, report: &mut GcReport) -> Result<(), StorageError> {
        let mut unlisted = Vec::new();
        for (expires, id) in self.metadata.expired_before(now)? {
            let Some(claim) = self.claims.claim(id)? else {
                continue;
            };
            if let Some(size) = self.metadata.unlist_file(expires, &id)? {
                // Claimed until the blob is gone.
                unlisted.push((id, size, claim));
            }
        }
        if unlisted.is_empty() {
            return Ok(());
        }
        // One flush for all: the removals must be durable before any blob
        // goes (see the module documentation).
        self.metadata.flush()?;
        for (id, size, _claim) in unlisted {
            self.discard_blob(&id)?;
            report.files_deleted += 1;
            report.bytes_freed += size;
        }
        Ok(())
    }

    fn reclaim_abandoned_uploads(
        &self,
        started_before: u64,
        report: &mut GcReport,
    ) -> Result<(), StorageError> {
        let abandoned = self
            .metadata
            .uploads()?
            .into_iter()
            .filter(|&(_, started)| started < started_before);
        for (id, _) in abandoned {
            // Claimed ids are being written right now: not abandoned.
            let Some(_claim) = self.claims.claim(id)? else {
                continue;
            };
            if self.metadata.has_file(&id)? {
                // Cannot happen (the commit removes the entry in the same
                // transaction that adds the file), but the blob is the
                // file's: keep it.
                self.metadata.forget_upload(&id)?;
                continue;
            }
            self.discard_blob(&id)?;
            report.abandoned_uploads += 1;
        }
        Ok(())
    }

    /// Whether `collect` at `now` should walk the blob store: on its first
    /// run, and once `abandoned_after_secs` have passed since the last walk
    /// (or the clock went back).
    fn blob_walk_due(&self, now: u64, abandoned_after_secs: u64) -> bool {
        match *self.lock_last_blob_walk() {
            None => true,
            Some(last) => now < last || now - last >= abandoned_after_secs,
        }
    }

    fn lock_last_blob_walk(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.last_blob_walk
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
        self.blobs.walk(|found: FoundBlob| {
            if found.modified >= modified_before {
                return Ok(());
            }
            // Claimed ids are being written or deleted right now.
            let Some(_claim) = self.claims.claim(found.id)? else {
                return Ok(());
            };
            // A pending blob is never a file's, even beside a record.
            if self.metadata.has_upload(&found.id)?
                || (found.state == BlobState::Published && self.metadata.has_file(&found.id)?)
            {
                return Ok(());
            }
            self.blobs.delete_one(&found.id, found.state)?;
            tracing::info!(
                file = %found.id,
                pending = found.state == BlobState::Pending,
                "deleted a blob left behind by a crash"
            );
            report.orphan_blobs += 1;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::blobs::BlobState;
    use super::super::test_support::*;
    use super::*;
    use crate::clock::unix_now;

    #[test]
    fn deletes_expired_files_and_lowers_usage() {
        let t = test_store();
        let user = "juliet@example.org";
        let old = upload(&t.store, &slot_for(user, 40), &data(40), NOW + 10);
        let fresh = upload(&t.store, &slot_for(user, 25), &data(25), NOW + 1000);
        assert_eq!(t.store.stored_bytes(), 65);
        assert_eq!(t.store.stored_files(), 2);
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
        assert_eq!(t.store.stored_files(), 1);
        assert_eq!(t.store.usage(user, NOW).unwrap().stored_bytes, 25);
        assert_eq!(
            t.store.user_files_by_expiry(user).unwrap(),
            vec![(NOW + 1000, 25)]
        );
        assert_eq!(t.store.files_by_expiry(10).unwrap(), vec![(NOW + 1000, 25)]);
        assert!(t.store.metadata().uploads().unwrap().is_empty());

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
        assert_eq!(t.store.stored_files(), 0);
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
        let path = t.blob_path(&file.id, BlobState::Published);
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
        t.store.metadata().record_upload(&id, started).unwrap();
        leave_part(t, &id);
        id
    }

    fn leave_part(t: &TestStore, id: &FileId) {
        drop(t.store.blobs().create_pending(id).unwrap());
        std::fs::write(t.blob_path(id, BlobState::Pending), [7u8; 96]).unwrap();
    }

    /// Renames the `.part` blob of `id` to its final name, as publishing does.
    fn rename_part(t: &TestStore, id: &FileId) {
        std::fs::rename(
            t.blob_path(id, BlobState::Pending),
            t.blob_path(id, BlobState::Published),
        )
        .unwrap();
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
        assert!(t.store.metadata().uploads().unwrap().is_empty());
    }

    #[test]
    fn reclaims_a_blob_renamed_but_never_committed() {
        let t = test_store();
        // `finish` renamed the blob, then the process died before the
        // commit; the `uploads` entry survived.
        let id = leave_abandoned_upload(&t, NOW);
        rename_part(&t, &id);

        let report = t.store.collect_garbage(NOW + 3601, 3600).unwrap();
        assert_eq!(report.abandoned_uploads, 1);
        assert_eq!(report.orphan_blobs, 0, "found through `uploads`");
        assert_eq!(t.blob_len(&id), None);
    }

    #[test]
    fn deletes_old_blobs_that_sled_does_not_know() {
        let t = test_store();
        // A crash lost the `uploads` entry of an upload...
        let lost_upload = FileId::random();
        leave_part(&t, &lost_upload);
        // ...and the commit of a file whose blob was renamed.
        let lost_commit = FileId::random();
        leave_part(&t, &lost_commit);
        rename_part(&t, &lost_commit);
        // A live file, and a stray `.part` beside it.
        let live = upload(
            &t.store,
            &slot_for("juliet@example.org", 40),
            &data(40),
            NOW + 10_000,
        );
        leave_part(&t, &live.id);
        // Files that are not ours.
        let shard = t.blob_path(&live.id, BlobState::Published);
        let shard = shard.parent().unwrap();
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

    test_each_cipher! {
        fn finishes_deleting_a_file_interrupted_by_a_crash(cipher) {
            let t = test_store_sealing(cipher);
            let file = upload(
                &t.store,
                &slot_for("juliet@example.org", 40),
                &data(40),
                NOW + 10,
            );
            // The first step of a deletion ran, then the process died.
            t.store
                .metadata()
                .unlist_file(file.expires, &file.id)
                .unwrap();
            t.store.flush().unwrap();
            assert!(t.blob_len(&file.id).is_some());

            let t = t.reopen();
            assert_eq!(t.store.stored_bytes(), 0);
            assert_eq!(t.store.stored_files(), 0);
            let report = t.store.collect_garbage(NOW, 3600).unwrap();
            assert_eq!(report.abandoned_uploads, 1);
            assert_eq!(report.orphan_blobs, 0);
            assert_eq!(t.blob_len(&file.id), None);
        }
    }

    #[test]
    fn leaves_running_uploads_alone() {
        let t = test_store();
        let bytes = data(40);
        let slot = slot_for("juliet@example.org", 40);
        let mut writer = t.store.begin_upload(&slot, None).unwrap();
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
