//! Deleting a relayed file once every recipient has downloaded it.
//!
//! An operator may not want to keep media any longer than it takes to hand it
//! over (`relay.delete_after_download`). Downloads are anonymous GETs, so each
//! recipient's message carries its own URL, the file's URL with a random
//! `?r=` token; a GET that serves the last byte of the file with a token
//! counts as that recipient's download. When no token of the file is
//! outstanding, the file is deleted. Files nobody downloads still go at the
//! end of their retention.
//!
//! The relay hands out the tokens ([`new_token`], [`personal_url`]) and
//! tells the tracker which it awaits; the HTTP side reports the downloads.
//! The tracker lives in storage, below both, because what it keeps is the
//! store's: a side tree beside the file metadata (shared by a cluster's
//! instances, so that a download through any of them counts), and the file
//! it deletes.

use tracing::{info, warn};

use super::error::StorageError;
use super::metadata::SideTree;
use super::records::FileId;
use super::store::Store;
use super::trees::StoreTree;

/// Length of a download token: 128 random bits in hex.
pub const TOKEN_LEN: usize = 32;

/// A fresh token, for one recipient's URL.
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Whether `token` could be one of ours (before touching the database).
pub fn is_well_formed(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `url` for the recipient holding `token`: the query goes before an
/// `aesgcm://` link's key fragment.
pub fn personal_url(url: &str, token: &str) -> String {
    match url.split_once('#') {
        Some((address, fragment)) => format!("{address}?r={token}#{fragment}"),
        None => format!("{url}?r={token}"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("download tracking failed: {0}")]
    Storage(#[from] StorageError),
}

/// The downloads still awaited, per file, in their own side tree:
/// `awaited_downloads`, keyed by file id ‖ token, with empty values.
#[derive(Clone)]
pub struct DownloadTracker {
    awaited: SideTree,
    store: Store,
}

fn key(file: &FileId, token: &str) -> Vec<u8> {
    [&file.0[..], token.as_bytes()].concat()
}

impl DownloadTracker {
    /// Tracks the downloads of `store`'s files, in its database.
    pub fn open(store: Store) -> Result<DownloadTracker, StorageError> {
        Ok(DownloadTracker {
            awaited: store.open_store_tree(StoreTree::AwaitedDownloads)?,
            store,
        })
    }

    /// Records that the holders of `tokens` are to download `file`.
    pub fn expect(&self, file: &FileId, tokens: &[String]) -> Result<(), DownloadError> {
        let keys: Vec<Vec<u8>> = tokens.iter().map(|token| key(file, token)).collect();
        let entries: Vec<(&[u8], &[u8])> =
            keys.iter().map(|key| (key.as_slice(), &[][..])).collect();
        self.awaited.insert_all(&entries)?;
        Ok(())
    }

    /// Counts a complete download of `file` with `token`; deletes the file
    /// when it was the last one awaited. Returns whether the file was deleted.
    pub fn downloaded(&self, file: &FileId, token: &str) -> Result<bool, DownloadError> {
        if !is_well_formed(token) || !self.awaited.remove(&key(file, token))? {
            return Ok(false);
        }
        if self.awaited.has_prefix(&file.0)? {
            return Ok(false);
        }
        let deleted = self.store.delete_file(file)?;
        if deleted {
            info!(%file, "every recipient downloaded the file; deleted");
        } else {
            warn!(%file, "every recipient downloaded the file, but it could not be deleted now; it goes at expiry");
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn the_last_awaited_download_deletes_the_file() {
        let t = service_test_store();
        let slot = slot_for("juliet@example.org", 10);
        let file = upload(&t.store, &slot, &data(10), NOW + 60);
        let tracker = DownloadTracker::open(t.store.clone()).unwrap();
        let (bob, carol) = (new_token(), new_token());
        tracker
            .expect(&file.id, &[bob.clone(), carol.clone()])
            .unwrap();

        assert!(
            !tracker.downloaded(&file.id, &new_token()).unwrap(),
            "not awaited"
        );
        assert!(!tracker.downloaded(&file.id, &bob).unwrap());
        assert!(!tracker.downloaded(&file.id, &bob).unwrap(), "counted once");
        assert!(t.store.file(&file.id).unwrap().is_some());
        assert!(tracker.downloaded(&file.id, &carol).unwrap());
        assert_eq!(t.store.file(&file.id).unwrap(), None);
    }

    #[test]
    fn personal_urls_keep_the_key_fragment_last() {
        assert_eq!(
            personal_url("https://h/file/x/a.jpg", "t"),
            "https://h/file/x/a.jpg?r=t"
        );
        assert_eq!(
            personal_url("aesgcm://h/file/x/a.jpg#00aa", "t"),
            "aesgcm://h/file/x/a.jpg?r=t#00aa"
        );
    }

    #[test]
    fn tokens_are_checked_before_use() {
        assert!(is_well_formed(&new_token()));
        for bad in [
            "",
            "x",
            &"A".repeat(32),
            &"0".repeat(33),
            "../../../etc/passwd",
        ] {
            assert!(!is_well_formed(bad), "{bad}");
        }
    }
}
