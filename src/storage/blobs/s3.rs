//! The blob store in an S3 bucket (`storage.backend = "s3"`): Garage,
//! SeaweedFS, MinIO or AWS, through the `object_store` crate.
//!
//! ```text
//! content/ab/abcdef…         the object of a published blob (its id in hex)
//! ```
//!
//! Only sealed chunks leave Satchel: the bucket never sees a plaintext byte
//! or a key. Nothing relies on conditional writes (Garage ignores them):
//! ids are 128 random bits and one writer holds an id at a time (`claims`).
//!
//! **Writing.** A pending blob is memory, then a multipart upload. Sealed
//! chunks collect into parts of [`PART_BYTES`]; the first full part starts
//! the multipart upload, and each part is sent while the next one fills (at
//! most two parts, 16 MiB, per upload in flight). A blob that never fills a
//! part (most photos) is sent with one plain PUT when it is published.
//! Either way the object appears whole or not at all: S3 shows a multipart
//! object only once it is completed, and completing it is the publish. A
//! pending blob that is dropped unpublished aborts its multipart upload;
//! one cut off by a crash is left to the bucket's lifecycle rule for
//! incomplete uploads (the README shows it), as `object_store` cannot list
//! them.
//!
//! **Reading.** One ranged GET per read: the reader asks for a window of
//! chunks at a time and keeps two windows in flight, so a download is a
//! stream of 256 KiB ranged GETs, two ahead of the connection.
//!
//! **Blocking.** The store's callers block (the writer's thread, the
//! blocking pool, rayon's pool), and `object_store` is async: each call is
//! driven to completion on the runtime Satchel started with, from the
//! calling thread (`block_in_place` lets an async worker do it too).

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, MultipartUpload, ObjectStore, PutPayload};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::{BlobState, FoundBlob, S3Bucket};
use crate::storage::error::StorageError;
use crate::storage::records::FileId;

/// Bytes per part of a multipart upload: above S3's 5 MiB minimum, and a
/// part size every S3 implementation takes.
pub(crate) const PART_BYTES: usize = 8 << 20;

/// The prefix of every object Satchel writes.
const PREFIX: &str = "content";

/// The bucket, shared by every clone.
#[derive(Clone)]
pub(crate) struct S3Blobs {
    bucket: Arc<Bucket>,
}

struct Bucket {
    store: AmazonS3,
    /// The runtime the calls run on.
    runtime: Handle,
}

/// A blob being written: parts filling and in flight.
pub(crate) struct S3Pending {
    bucket: Arc<Bucket>,
    path: ObjectPath,
    /// Sealed bytes not sent yet, less than a part once `append` returns.
    filling: Vec<u8>,
    /// Started with the first full part.
    upload: Option<Box<dyn MultipartUpload>>,
    /// The part being sent.
    in_flight: Option<JoinHandle<object_store::Result<()>>>,
    published: bool,
}

/// A published blob: its object and its size.
pub(crate) struct S3Published {
    bucket: Arc<Bucket>,
    path: ObjectPath,
    size: u64,
}

impl S3Blobs {
    /// Connects to `bucket` and checks that it answers (one listing
    /// request), so that a wrong endpoint, bucket or key stops the start.
    ///
    /// Must run inside Satchel's runtime (on any of its threads).
    pub fn open(bucket: &S3Bucket) -> Result<S3Blobs, StorageError> {
        let runtime = Handle::try_current().map_err(|_| {
            StorageError::Options("the S3 blob store needs a tokio runtime".to_owned())
        })?;
        let store = AmazonS3Builder::new()
            .with_endpoint(&bucket.endpoint)
            .with_region(&bucket.region)
            .with_bucket_name(&bucket.bucket)
            .with_access_key_id(&bucket.access_key_id)
            .with_secret_access_key(&bucket.secret_access_key)
            .with_allow_http(bucket.endpoint.starts_with("http://"))
            .with_client_options(ClientOptions::new().with_allow_http(true))
            .build()
            .map_err(|source| {
                unavailable(format!("configuring bucket {}", bucket.bucket), source)
            })?;
        let blobs = S3Blobs {
            bucket: Arc::new(Bucket { store, runtime }),
        };
        let prefix = ObjectPath::from(PREFIX);
        blobs
            .bucket
            .wait(blobs.bucket.store.list_with_delimiter(Some(&prefix)))
            .map_err(|source| {
                unavailable(
                    format!("listing bucket {} at {}", bucket.bucket, bucket.endpoint),
                    source,
                )
            })?;
        Ok(blobs)
    }

    pub fn create_pending(&self, id: &FileId) -> S3Pending {
        S3Pending {
            bucket: self.bucket.clone(),
            path: object_path(id),
            filling: Vec::new(),
            upload: None,
            in_flight: None,
            published: false,
        }
    }

    pub fn open_published(&self, id: &FileId) -> Result<Option<S3Published>, StorageError> {
        let path = object_path(id);
        match self.bucket.wait(self.bucket.store.head(&path)) {
            Ok(meta) => Ok(Some(S3Published {
                bucket: self.bucket.clone(),
                path,
                size: meta.size,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(unavailable(format!("looking up {path}"), source)),
        }
    }

    /// A pending blob is no object (its multipart upload is invisible, and
    /// aborted when it is dropped): only a published one is deleted.
    pub fn delete_one(&self, id: &FileId, state: BlobState) -> Result<(), StorageError> {
        if state == BlobState::Pending {
            return Ok(());
        }
        let path = object_path(id);
        match self.bucket.wait(self.bucket.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(unavailable(format!("deleting {path}"), source)),
        }
    }

    /// Lists the objects under `content/`, a page at a time.
    pub fn walk(
        &self,
        mut visit: impl FnMut(FoundBlob) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let prefix = ObjectPath::from(PREFIX);
        let bucket = &self.bucket;
        bucket.wait(async {
            let mut listing = bucket.store.list(Some(&prefix));
            while let Some(meta) = listing.next().await {
                let meta =
                    meta.map_err(|source| unavailable("listing the bucket".into(), source))?;
                if let Some(id) = id_of(&meta.location) {
                    let modified = u64::try_from(meta.last_modified.timestamp()).unwrap_or(0);
                    visit(FoundBlob {
                        id,
                        state: BlobState::Published,
                        modified,
                    })?;
                }
            }
            Ok(())
        })
    }
}

impl S3Pending {
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.filling.extend_from_slice(bytes);
        if self.filling.len() >= PART_BYTES {
            self.send_part()?;
        }
        Ok(())
    }

    /// Sends what is filled as the next part, after the one in flight is in.
    fn send_part(&mut self) -> Result<(), StorageError> {
        self.wait_in_flight()?;
        if self.upload.is_none() {
            let started = self
                .bucket
                .wait(self.bucket.store.put_multipart(&self.path));
            self.upload = Some(started.map_err(|source| {
                unavailable(format!("starting the upload of {}", self.path), source)
            })?);
        }
        let upload = self.upload.as_mut().expect("started above");
        let part = PutPayload::from(Bytes::from(std::mem::replace(
            &mut self.filling,
            Vec::with_capacity(PART_BYTES),
        )));
        self.in_flight = Some(self.bucket.runtime.spawn(upload.put_part(part)));
        Ok(())
    }

    fn wait_in_flight(&mut self) -> Result<(), StorageError> {
        let Some(part) = self.in_flight.take() else {
            return Ok(());
        };
        match self.bucket.wait(part) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(unavailable(
                format!("sending a part of {}", self.path),
                source,
            )),
            Err(_) => Err(StorageError::Io {
                context: format!("sending a part of {}", self.path),
                source: io::Error::other("the part's task stopped"),
            }),
        }
    }

    /// Sends the rest and completes the object: one PUT if it never filled
    /// a part, else the last part and the completion.
    pub fn publish(&mut self) -> Result<(), StorageError> {
        let path = &self.path;
        if self.upload.is_none() {
            let body = PutPayload::from(Bytes::from(std::mem::take(&mut self.filling)));
            self.bucket
                .wait(self.bucket.store.put(path, body))
                .map_err(|source| unavailable(format!("writing {path}"), source))?;
        } else {
            if !self.filling.is_empty() {
                self.send_part()?;
            }
            self.wait_in_flight()?;
            let upload = self.upload.as_mut().expect("checked above");
            self.bucket
                .wait(upload.complete())
                .map_err(|source| unavailable(format!("completing {}", self.path), source))?;
        }
        self.published = true;
        Ok(())
    }
}

impl Drop for S3Pending {
    /// Aborts an unpublished multipart upload, without waiting: the drop may
    /// happen anywhere, and the bucket's lifecycle rule catches what fails.
    fn drop(&mut self) {
        if let Some(part) = self.in_flight.take() {
            part.abort();
        }
        if let (Some(mut upload), false) = (self.upload.take(), self.published) {
            self.bucket.runtime.spawn(async move {
                if let Err(error) = upload.abort().await {
                    tracing::warn!(%error, "could not abort an unfinished multipart upload");
                }
            });
        }
    }
}

impl S3Published {
    pub fn read_at_most(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let end = self.size.min(offset.saturating_add(buf.len() as u64));
        if offset >= end {
            return Ok(0);
        }
        let bytes = self
            .bucket
            .wait(self.bucket.store.get_range(&self.path, offset..end))
            .map_err(io::Error::other)?;
        let len = bytes.len().min(buf.len());
        buf[..len].copy_from_slice(&bytes[..len]);
        Ok(len)
    }
}

impl Bucket {
    /// Runs `call` to completion from a thread that may block.
    fn wait<F: std::future::Future>(&self, call: F) -> F::Output {
        tokio::task::block_in_place(|| self.runtime.block_on(call))
    }
}

/// `content/ab/<id>`, sharded like local blobs so listings can be split.
fn object_path(id: &FileId) -> ObjectPath {
    ObjectPath::from(format!("{PREFIX}/{}/{id}", hex::encode(&id.0[..1])))
}

/// The id an object of ours is named after; `None` for any other name.
fn id_of(path: &ObjectPath) -> Option<FileId> {
    let mut parts = path.parts();
    let (prefix, shard, name) = (parts.next()?, parts.next()?, parts.next()?);
    if prefix.as_ref() != PREFIX || parts.next().is_some() {
        return None;
    }
    let id: FileId = name.as_ref().parse().ok()?;
    (shard.as_ref() == hex::encode(&id.0[..1])).then_some(id)
}

fn unavailable(context: String, source: object_store::Error) -> StorageError {
    StorageError::ObjectStore {
        context,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_named_after_their_id_and_only_those_are_ours() {
        let id = FileId([0xab; 16]);
        let path = object_path(&id);
        assert_eq!(path.as_ref(), format!("content/ab/{id}"));
        assert_eq!(id_of(&path), Some(id));
        for stranger in [
            format!("content/ac/{id}"),
            format!("other/ab/{id}"),
            format!("content/ab/{id}/x"),
            "content/ab/notanid".to_owned(),
            "content/ab".to_owned(),
        ] {
            assert_eq!(
                id_of(&ObjectPath::from(stranger.as_str())),
                None,
                "{stranger}"
            );
        }
    }
}
