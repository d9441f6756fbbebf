//! Garbage collection: expired files, expired slots, abandoned uploads.
//!
//! Deleting a file is two steps that cannot share a transaction (a file may
//! have thousands of chunks): first one transaction removes the record and
//! its indexes, lowers the owner's usage, and files the id under `uploads`
//! with start time 0; then the chunks go, and the `uploads` entry with them.
//! If the process dies in between, the file is already invisible and the
//! next collection finds its chunks like those of any abandoned upload.
//!
//! Every id is claimed (see `Store::claim`) while its chunks are deleted, so
//! a collection never races a writer of the same id.

use std::sync::atomic::Ordering;

use super::records::{FileId, FileRecord};
use sled::transaction::{ConflictableTransactionError, Transactional};

use super::store::{by_user_key, decode, expiry_key, parse_expiry_key, update_usage, Store};
use super::{SlotRecord, StorageError};

/// What one [`Store::collect_garbage`] run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    pub files_deleted: u64,
    pub bytes_freed: u64,
    pub slots_deleted: u64,
    pub abandoned_uploads: u64,
}

impl Store {
    /// Deletes expired files (chunks, record, indexes; lowers the owner's stored_bytes), expired slot records,
    /// and chunks of uploads started before `now - abandoned_after_secs` that never completed and are not in progress.
    ///
    /// A file or slot is expired once `now` is past its `expires`. Ids busy
    /// with an upload are skipped and left for the next run.
    pub fn collect_garbage(
        &self,
        now: u64,
        abandoned_after_secs: u64,
    ) -> Result<GcReport, StorageError> {
        let mut report = GcReport::default();
        self.delete_expired_files(now, &mut report)?;
        self.delete_expired_slots(now, &mut report)?;
        self.reclaim_abandoned_uploads(now.saturating_sub(abandoned_after_secs), &mut report)?;
        Ok(report)
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
        for (expires, id) in expired {
            let Some(_claim) = self.claim(id) else {
                continue;
            };
            if let Some(size) = self.unlist_file(expires, &id)? {
                self.inner
                    .stored_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |stored| {
                        Some(stored.saturating_sub(size))
                    })
                    .ok();
                self.discard_upload(&id)?;
                report.files_deleted += 1;
                report.bytes_freed += size;
            }
        }
        Ok(())
    }

    /// Removes the record of file `id` and everything pointing at it, and
    /// lists the id in `uploads` so its chunks are found even if we crash
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
        )
            .transaction(|(files, uploads, usage, expiry, by_user)| {
                expiry.remove(&expiry_key(expires, id))?;
                let Some(bytes) = files.remove(&id.0)? else {
                    return Ok(None);
                };
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

    fn delete_expired_slots(&self, now: u64, report: &mut GcReport) -> Result<(), StorageError> {
        let slots = &self.inner.trees.slots;
        for entry in slots.iter() {
            let (key, bytes) = entry?;
            let slot: SlotRecord = decode(&bytes, "slot record")?;
            // Only if unchanged since read, so a concurrent re-insert survives.
            if slot.expires < now
                && slots
                    .compare_and_swap(&key, Some(bytes), None::<&[u8]>)?
                    .is_ok()
            {
                report.slots_deleted += 1;
            }
        }
        Ok(())
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
                // transaction that adds the file), but the chunks are the
                // file's: keep them.
                trees.uploads.remove(id.0)?;
                continue;
            }
            self.discard_upload(&id)?;
            report.abandoned_uploads += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::{chunk_key, test_support::*};
    use super::*;

    #[test]
    fn deletes_expired_files_and_lowers_usage() {
        let t = test_store();
        let user = "juliet@example.org";
        let old = upload(&t.store, &slot_for(user, 40), &data(40), NOW + 10);
        let fresh = upload(&t.store, &slot_for(user, 25), &data(25), NOW + 1000);
        assert_eq!(t.store.stored_bytes(), 65);

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
        assert_eq!(t.chunk_count(&old.id), 0);
        assert!(t.store.file(&fresh.id).unwrap().is_some());
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
    fn deletes_expired_slots() {
        let t = test_store();
        let mut old = slot_for("juliet@example.org", 5);
        old.expires = NOW + 5;
        let fresh = slot_for("juliet@example.org", 5);
        t.store.insert_slot(&old, NOW).unwrap();
        t.store.insert_slot(&fresh, NOW).unwrap();

        let report = t.store.collect_garbage(NOW + 6, 3600).unwrap();
        assert_eq!(report.slots_deleted, 1);
        assert_eq!(t.store.slot(&old.id).unwrap(), None);
        assert!(t.store.slot(&fresh.id).unwrap().is_some());
    }

    /// Chunks and an `uploads` entry as a process that died mid-upload
    /// leaves them.
    fn leave_abandoned_upload(t: &TestStore, started: u64) -> FileId {
        let id = FileId::random();
        let trees = &t.store.inner.trees;
        trees.uploads.insert(id.0, &started.to_be_bytes()).unwrap();
        for index in 0..3 {
            trees
                .chunks
                .insert(chunk_key(&id, index), &[7u8; 32])
                .unwrap();
        }
        id
    }

    #[test]
    fn reclaims_abandoned_uploads() {
        let t = test_store();
        let id = leave_abandoned_upload(&t, NOW);

        let report = t.store.collect_garbage(NOW + 3600, 3600).unwrap();
        assert_eq!(report.abandoned_uploads, 0, "not old enough yet");
        assert_eq!(t.chunk_count(&id), 3);

        let report = t.store.collect_garbage(NOW + 3601, 3600).unwrap();
        assert_eq!(report.abandoned_uploads, 1);
        assert_eq!(t.chunk_count(&id), 0);
        assert!(t.store.inner.trees.uploads.is_empty());
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
        assert_eq!(t.chunk_count(&file.id), 3);

        let t = t.reopen();
        assert_eq!(t.store.stored_bytes(), 0);
        let report = t.store.collect_garbage(NOW, 3600).unwrap();
        assert_eq!(report.abandoned_uploads, 1);
        assert_eq!(t.chunk_count(&file.id), 0);
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
        assert_eq!(report.abandoned_uploads, 0);
        assert_eq!(t.chunk_count(&slot.id), 1);

        writer.write(&bytes[20..]).unwrap();
        let file = writer.finish(NOW).unwrap();
        assert_eq!(read(&t.store, &file, 0..40).unwrap(), bytes);
    }
}
