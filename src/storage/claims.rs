//! Claims: who may touch the blob of an id right now, and the bytes the
//! uploads in progress have reserved.
//!
//! An upload writes its blob, garbage collection deletes blobs, a download
//! may delete its file: two of them on the same id at once would delete a
//! blob being written, or publish one being deleted. So each first claims
//! the id, and an id already claimed is left alone (an upload answers
//! "in progress", a collection skips it until its next run).
//!
//! An upload's claim also reserves its size against its uploader's quota,
//! taken in one step with the quota check: otherwise concurrent uploads
//! would each see the same room and all take it. The commit counts the file
//! in the usage; the claim's end frees the reservation.
//!
//! With one instance, claims live in memory: after a restart nobody holds
//! one. In cluster mode they are rows in PostgreSQL with a lease (see
//! `metadata::postgres`), renewed while the upload runs, so that an upload
//! cut off by a dead instance can be retried on another once the lease
//! has run out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::error::StorageError;
use super::metadata::{Metadata, PgMetadata, UploadClaim};
use super::quota::{exceeded, QuotaCheck};
use super::records::{FileId, NewUpload};

/// Where the claims are kept; clones share them.
#[derive(Clone)]
pub(super) enum Claims {
    /// In this process (one instance).
    Local(LocalClaims),
    /// In the cluster's database.
    Shared(PgMetadata),
}

/// The ids claimed in this process, with each upload's reservation.
#[derive(Clone, Default)]
pub(super) struct LocalClaims {
    busy: Arc<Mutex<HashMap<FileId, Option<Reservation>>>>,
}

/// Bytes an upload in progress will add to its uploader's usage.
struct Reservation {
    uploader: String,
    size: u64,
}

/// Proof that its holder alone may write, publish or delete the blob of
/// its id; the claim ends when it is dropped.
pub(super) struct Claim {
    id: FileId,
    holder: Holder,
}

enum Holder {
    Local(LocalClaims),
    Shared {
        metadata: PgMetadata,
        renewed: Instant,
    },
}

impl Claims {
    /// Claims `id` until the returned claim is dropped, or returns `None` if
    /// someone holds it already.
    pub fn claim(&self, id: FileId) -> Result<Option<Claim>, StorageError> {
        match self {
            Claims::Local(local) => {
                let mut busy = local.lock();
                if busy.contains_key(&id) {
                    return Ok(None);
                }
                busy.insert(id, None);
            }
            Claims::Shared(metadata) => {
                if !metadata.claim(&id)? {
                    return Ok(None);
                }
            }
        }
        Ok(Some(self.held(id)))
    }

    /// The claim on `id`, just taken.
    fn held(&self, id: FileId) -> Claim {
        let holder = match self {
            Claims::Local(local) => Holder::Local(local.clone()),
            Claims::Shared(metadata) => Holder::Shared {
                metadata: metadata.clone(),
                renewed: Instant::now(),
            },
        };
        Claim { id, holder }
    }

    /// Claims the id of `upload` and reserves its size, after checking that
    /// no file was uploaded there yet and, with `quota`, that the upload
    /// fits its uploader's quota with every other upload of theirs in
    /// progress counted.
    pub fn claim_upload(
        &self,
        metadata: &Metadata,
        upload: &NewUpload,
        quota: Option<QuotaCheck>,
    ) -> Result<Claim, StorageError> {
        let id = upload.id;
        let outcome = match self {
            Claims::Local(local) => local.claim_upload(metadata, upload, quota)?,
            Claims::Shared(shared) => {
                shared.claim_upload(&id, &upload.uploader, upload.size, quota)?
            }
        };
        match outcome {
            UploadClaim::Taken => Ok(self.held(id)),
            UploadClaim::InProgress => Err(StorageError::UploadInProgress),
            UploadClaim::AlreadyUploaded => Err(StorageError::AlreadyUploaded),
            UploadClaim::OverQuota(over) => Err(StorageError::OverQuota(over)),
        }
    }
}

impl LocalClaims {
    fn claim_upload(
        &self,
        metadata: &Metadata,
        upload: &NewUpload,
        quota: Option<QuotaCheck>,
    ) -> Result<UploadClaim, StorageError> {
        // Held across the checks, so that two uploads of one user cannot
        // both pass them before either is counted.
        let mut busy = self.lock();
        if busy.contains_key(&upload.id) {
            return Ok(UploadClaim::InProgress);
        }
        if metadata.has_file(&upload.id)? {
            return Ok(UploadClaim::AlreadyUploaded);
        }
        if let Some(QuotaCheck { limits, now }) = quota {
            let reserved = busy
                .values()
                .flatten()
                .filter(|reservation| reservation.uploader == upload.uploader)
                .fold(0u64, |sum, reservation| {
                    sum.saturating_add(reservation.size)
                });
            let usage = metadata.usage(&upload.uploader, now)?;
            if let Some(over) = exceeded(limits, usage.with_reserved(reserved), upload.size) {
                return Ok(UploadClaim::OverQuota(over));
            }
        }
        busy.insert(
            upload.id,
            Some(Reservation {
                uploader: upload.uploader.clone(),
                size: upload.size,
            }),
        );
        Ok(UploadClaim::Taken)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<FileId, Option<Reservation>>> {
        // The map is valid whatever a panicking holder was doing.
        self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Claim {
    /// Keeps a claim of cluster mode alive: renews its lease once a third
    /// of it has passed. Fails with `ClaimLost` if another instance took
    /// the id over meanwhile (the lease ran out while this one was stalled).
    pub fn keep(&mut self) -> Result<(), StorageError> {
        let Holder::Shared { metadata, renewed } = &mut self.holder else {
            return Ok(());
        };
        if renewed.elapsed() < metadata.lease() / 3 {
            return Ok(());
        }
        if !metadata.renew_claim(&self.id)? {
            return Err(StorageError::ClaimLost(self.id));
        }
        *renewed = Instant::now();
        Ok(())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        match &self.holder {
            Holder::Local(local) => {
                local.lock().remove(&self.id);
            }
            Holder::Shared { metadata, .. } => {
                if let Err(err) = metadata.release_claim(&self.id) {
                    tracing::warn!(
                        file = %self.id,
                        error = %err,
                        "could not release a claim; it ends with its lease"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::quota::{Exceeded, QuotaLimits};
    use super::super::test_support::*;
    use super::*;

    /// Room for one upload of 600 bytes, of three begun together.
    #[test]
    fn uploads_in_progress_reserve_their_size_until_they_end() {
        let t = test_store();
        let quota = Some(QuotaCheck {
            limits: QuotaLimits {
                daily_upload_bytes: 10_000,
                user_storage_bytes: 1000,
            },
            now: NOW,
        });
        let first = t
            .store
            .begin_upload(&slot_for("juliet@example.org", 600), quota)
            .unwrap();
        let refused = t
            .store
            .begin_upload(&slot_for("juliet@example.org", 600), quota)
            .map(drop)
            .unwrap_err();
        assert!(
            matches!(refused, StorageError::OverQuota(Exceeded::Storage)),
            "{refused}"
        );
        // Another user's room is their own.
        let other = t
            .store
            .begin_upload(&slot_for("romeo@example.org", 600), quota)
            .unwrap();
        drop((first, other));
        // The reservation ended with its upload.
        assert!(t
            .store
            .begin_upload(&slot_for("juliet@example.org", 600), quota)
            .is_ok());
    }

    #[test]
    fn an_id_has_one_holder_at_a_time() {
        let claims = Claims::Local(LocalClaims::default());
        let id = FileId([1; 16]);
        let claim = claims.claim(id).unwrap().unwrap();
        assert!(claims.claim(id).unwrap().is_none());
        assert!(claims.claim(FileId([2; 16])).unwrap().is_some());
        drop(claim);
        assert!(claims.claim(id).unwrap().is_some());
    }
}
