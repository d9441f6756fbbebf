//! Claims: who may touch the blob of an id right now.
//!
//! An upload writes its blob, garbage collection deletes blobs, a download
//! may delete its file: two of them on the same id at once would delete a
//! blob being written, or publish one being deleted. So each first claims
//! the id, and an id already claimed is left alone (an upload answers
//! "in progress", a collection skips it until its next run). Claims live in
//! memory only: after a restart nobody holds one.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::records::FileId;

/// The ids claimed in this process; clones share one set.
#[derive(Clone, Default)]
pub(super) struct Claims {
    busy: Arc<Mutex<HashSet<FileId>>>,
}

/// Proof that its holder alone may write, publish or delete the blob of
/// its id; the claim ends when it is dropped.
pub(super) struct Claim {
    claims: Claims,
    id: FileId,
}

impl Claims {
    /// Claims `id` until the returned claim is dropped, or returns `None` if
    /// someone holds it already.
    pub fn claim(&self, id: FileId) -> Option<Claim> {
        let newly_claimed = self.lock().insert(id);
        newly_claimed.then(|| Claim {
            claims: self.clone(),
            id,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<FileId>> {
        // The set is valid whatever a panicking holder was doing.
        self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claims.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_has_one_holder_at_a_time() {
        let claims = Claims::default();
        let id = FileId([1; 16]);
        let claim = claims.claim(id).unwrap();
        assert!(claims.claim(id).is_none());
        assert!(claims.claim(FileId([2; 16])).is_some());
        drop(claim);
        assert!(claims.claim(id).is_some());
    }
}
