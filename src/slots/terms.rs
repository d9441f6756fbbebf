//! The terms of a granted slot: what its one upload may be.
//!
//! They are fixed when the slot is granted and travel sealed in the PUT URL
//! (see [`super::ticket`]); nothing else remembers them.

use crate::storage::{FileId, NewUpload, Purpose};

/// A slot handed out over XMPP: what its upload may be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotTerms {
    pub id: FileId,
    /// Bare JID of the requester.
    pub uploader: String,
    pub filename: String,
    pub size: u64,
    /// The content type named in the slot request, if any (empty counts as none).
    pub content_type: Option<String>,
    pub purpose: Purpose,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds after which the PUT URL is refused.
    pub expires: u64,
}

impl SlotTerms {
    /// The upload these terms allow, as the store writes it: served as
    /// `content_type`, deleted after `expires` (unix seconds).
    pub fn new_upload(&self, content_type: String, expires: u64) -> NewUpload {
        NewUpload {
            id: self.id,
            uploader: self.uploader.clone(),
            filename: self.filename.clone(),
            size: self.size,
            content_type,
            purpose: self.purpose,
            expires,
        }
    }
}
