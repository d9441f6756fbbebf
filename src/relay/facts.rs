//! Learning, once, when a relay is accepted, what every recipient's message
//! will say about the file: its metadata from the upload's record, and for
//! an image a thumbnail made from its bytes (or the sender's own).
//!
//! What cannot be known is left out, never guessed: the bytes of a file the
//! clients encrypted (an `aesgcm://` URL) are ciphertext, so its type, size,
//! hash and pixels say nothing, and only its name is stated.

use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::record::{FileFacts, Preview};
use super::request::{RelayRequest, SenderThumbnail};
use super::thumbnail::{make_thumbnail, ImageInfo, Thumbnail, ThumbnailLimits};
use crate::storage::{FileRecord, Store};

/// Largest file Satchel decrypts whole to make a thumbnail.
const MAX_THUMBNAIL_SOURCE_BYTES: u64 = 64 * 1024 * 1024;
/// Thumbnails made at once: each holds a decoded image in memory.
const THUMBNAILS_AT_ONCE: usize = 2;
/// How long a recipient's client may cache a thumbnail Satchel made
/// (XEP-0231 `max-age`).
const THUMBNAIL_MAX_AGE_SECS: u32 = 86_400;

/// Gathers [`FileFacts`] from the store.
pub struct FactGatherer {
    store: Store,
    limits: ThumbnailLimits,
    permits: Semaphore,
}

impl FactGatherer {
    pub fn new(store: Store, limits: ThumbnailLimits) -> FactGatherer {
        FactGatherer {
            store,
            limits,
            permits: Semaphore::new(THUMBNAILS_AT_ONCE),
        }
    }

    /// The facts of `file`, relayed as `request` asks.
    pub async fn gather(&self, file: &FileRecord, request: &RelayRequest) -> FileFacts {
        let mut facts = FileFacts {
            name: Some(file.filename.clone()),
            ..FileFacts::default()
        };
        if request.client_encrypted {
            facts.thumbnail = request.sender_thumbnail.as_ref().map(sender_preview);
            return facts;
        }
        facts.media_type = Some(file.content_type.clone());
        facts.size = Some(file.size);
        facts.sha256 = Some(file.sha256);
        match self.made_thumbnail(file).await {
            Some((info, thumbnail)) => {
                facts.width = Some(info.width);
                facts.height = Some(info.height);
                facts.thumbnail = Some(made_preview(thumbnail));
            }
            None => facts.thumbnail = request.sender_thumbnail.as_ref().map(sender_preview),
        }
        facts
    }

    /// A thumbnail of `file`, if it is an image small enough to decode.
    async fn made_thumbnail(&self, file: &FileRecord) -> Option<(ImageInfo, Thumbnail)> {
        let looks_like_image = file.content_type.starts_with("image/")
            || file.content_type == "application/octet-stream";
        if !looks_like_image || file.size > MAX_THUMBNAIL_SOURCE_BYTES {
            return None;
        }
        let _permit = self.permits.acquire().await.ok()?;
        let store = self.store.clone();
        let record = file.clone();
        let limits = self.limits.clone();
        let made = tokio::task::spawn_blocking(move || {
            let mut bytes = Vec::with_capacity(record.size as usize);
            for chunk in store
                .read_range(&record, 0..record.size)
                .map_err(|e| e.to_string())?
            {
                bytes.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
            }
            make_thumbnail(&bytes, &record.content_type, &limits).map_err(|e| e.to_string())
        })
        .await;
        match made {
            Ok(Ok((info, thumbnail))) => {
                debug!(
                    width = info.width,
                    height = info.height,
                    bytes = thumbnail.bytes.len(),
                    "thumbnail made"
                );
                Some((info, thumbnail))
            }
            Ok(Err(reason)) => {
                info!(%reason, "no thumbnail");
                None
            }
            Err(_) => {
                warn!("thumbnail task panicked");
                None
            }
        }
    }
}

fn made_preview(thumbnail: Thumbnail) -> Preview {
    Preview {
        media_type: thumbnail.media_type.to_owned(),
        width: u16::try_from(thumbnail.width).ok(),
        height: u16::try_from(thumbnail.height).ok(),
        bytes: thumbnail.bytes,
        max_age: Some(THUMBNAIL_MAX_AGE_SECS),
    }
}

/// The sender's thumbnail, passed on as they sent it (already checked
/// against its cid, and small enough).
fn sender_preview(sent: &SenderThumbnail) -> Preview {
    Preview {
        media_type: sent.data.media_type.clone(),
        bytes: sent.data.data.clone(),
        width: sent.width,
        height: sent.height,
        max_age: sent.data.max_age,
    }
}
