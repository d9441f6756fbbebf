//! Writing one upload: plaintext in, sealed chunks out, record last.
//!
//! The writer seals each chunk as soon as it is full and appends it to the
//! upload's pending blob, so memory stays at one chunk whatever the file
//! size, and hashes the plaintext on the way. A full chunk is held back until
//! more bytes arrive, because only then is it known not to be the last one
//! (the last chunk is sealed differently).
//!
//! Nothing is visible to readers until [`UploadWriter::finish`] has
//! published the blob and committed the `FileRecord`. A writer dropped
//! before that deletes its blob on the spot; should that fail (or the
//! process die), the `uploads` entry written when the upload began lets
//! garbage collection find it.
//!
//! A small file (see [`WriteSettings::small_file_max_bytes`]) gets no blob:
//! its sealed chunks are collected in memory and stored by the commit, with
//! the record, so nothing of it reaches the disk before the commit and
//! nothing is left behind after a failure.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::blobs::{Blobs, PendingBlob};
use super::cipher::Cipher;
use super::claims::{Claim, Claims};
use super::crypto::{seal_chunk, FileKey, TAG_LEN};
use super::error::{io_error, StorageError};
use super::master_key::MasterKey;
use super::metadata::Metadata;
use super::quota::QuotaCheck;
use super::records::{FileRecord, NewUpload};
use crate::clock::unix_now;

/// How a store cuts new files, and which it keeps in the database.
#[derive(Clone, Copy, Debug)]
pub(super) struct WriteSettings {
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// Files of at most this many bytes are kept in the metadata database,
    /// with their record, instead of in a blob; `None`: every file gets a
    /// blob.
    pub small_file_max_bytes: Option<u64>,
    /// The AEAD new files are sealed with.
    pub cipher: Cipher,
}

/// An upload in progress; see [`Store::begin_upload`](super::Store::begin_upload).
///
/// After any error the upload is lost: drop the writer.
pub struct UploadWriter {
    upload: NewUpload,
    blobs: Blobs,
    metadata: Metadata,
    /// Id of the master key the file key was derived from.
    key_id: u32,
    sealer: ChunkSealer,
    /// `None` once `finish` took the digests.
    hashing: Option<Hashing>,
    received: u64,
    finished: bool,
    /// Declared last: released only after `drop` has cleaned up.
    /// Held until the writer is dropped; renewed as bytes come in.
    claim: Claim,
}

/// Cuts plaintext into chunks, seals them and appends them to the sink.
struct ChunkSealer {
    key: FileKey,
    nonce_prefix: [u8; 7],
    chunk_size: usize,
    sink: Sink,
    /// Plaintext of the chunk being filled; sealed in place.
    pending: Vec<u8>,
    next_index: u32,
}

/// Where the sealed chunks of an upload go, back to back.
enum Sink {
    /// A blob, pending until `finish` publishes it.
    Blob(PendingBlob),
    /// The sealed bytes of a small file, which `finish` commits with its
    /// record.
    Database(Vec<u8>),
}

/// The two digests of the plaintext.
struct Hashes {
    blake3: blake3::Hasher,
    sha256: Sha256,
}

impl Hashes {
    fn new() -> Hashes {
        Hashes {
            blake3: blake3::Hasher::new(),
            sha256: Sha256::new(),
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.blake3.update(data);
        self.sha256.update(data);
    }
}

/// Where the plaintext is hashed: on the writer's thread for small files,
/// on a thread of its own for large ones, so that hashing (about half the
/// CPU of an upload) runs beside sealing instead of after it.
enum Hashing {
    OnWriterThread(Box<Hashes>),
    OnOwnThread {
        /// Batches not hashed yet; bounded, so a slow hasher slows the
        /// upload instead of queueing its bytes in memory.
        batches: std::sync::mpsc::SyncSender<Vec<Bytes>>,
        thread: std::thread::JoinHandle<Hashes>,
    },
}

/// Files at least this large are hashed on a thread of their own; below,
/// starting the thread costs more than it saves.
const HASH_THREAD_MIN_FILE_BYTES: u64 = 1 << 20;
/// Batches queued for the hashing thread.
const HASH_QUEUE_BATCHES: usize = 2;

impl Hashing {
    fn for_size(size: u64) -> Result<Hashing, StorageError> {
        if size < HASH_THREAD_MIN_FILE_BYTES {
            return Ok(Hashing::OnWriterThread(Box::new(Hashes::new())));
        }
        let (batches, queue) = std::sync::mpsc::sync_channel::<Vec<Bytes>>(HASH_QUEUE_BATCHES);
        let thread = std::thread::Builder::new()
            .name("satchel-hash".into())
            .spawn(move || {
                let mut hashes = Hashes::new();
                for batch in queue {
                    batch.iter().for_each(|piece| hashes.update(piece));
                }
                hashes
            })
            .map_err(|err| io_error("starting a hashing thread".into(), err))?;
        Ok(Hashing::OnOwnThread { batches, thread })
    }

    fn update(&mut self, batch: &[Bytes]) -> Result<(), StorageError> {
        match self {
            Hashing::OnWriterThread(hashes) => batch.iter().for_each(|piece| hashes.update(piece)),
            // Cloning a `Bytes` shares its buffer: nothing is copied.
            Hashing::OnOwnThread { batches, .. } => batches
                .send(batch.to_vec())
                .map_err(|_| hashing_thread_failed())?,
        }
        Ok(())
    }

    /// Waits for every batch to be hashed.
    fn finish(self) -> Result<Hashes, StorageError> {
        match self {
            Hashing::OnWriterThread(hashes) => Ok(*hashes),
            Hashing::OnOwnThread { batches, thread } => {
                drop(batches);
                thread.join().map_err(|_| hashing_thread_failed())
            }
        }
    }
}

fn hashing_thread_failed() -> StorageError {
    StorageError::Io {
        context: "hashing an upload".into(),
        source: std::io::Error::other("the hashing thread stopped"),
    }
}

impl UploadWriter {
    /// Starts, or restarts after a failed attempt, `upload`, sealed under
    /// `master_key`; see [`Store::begin_upload`](super::Store::begin_upload).
    pub(super) fn begin(
        upload: &NewUpload,
        blobs: &Blobs,
        metadata: &Metadata,
        claims: &Claims,
        quota: Option<QuotaCheck>,
        master_key: &MasterKey,
        settings: WriteSettings,
    ) -> Result<UploadWriter, StorageError> {
        // Chunk indexes are u32, and STREAM nonces must never repeat.
        let max = u64::from(u32::MAX) * u64::from(settings.chunk_size);
        if upload.size > max {
            return Err(StorageError::TooLarge {
                size: upload.size,
                max,
            });
        }
        let claim = claims.claim_upload(metadata, upload, quota)?;
        let sink = if settings
            .small_file_max_bytes
            .is_some_and(|max| upload.size <= max)
        {
            Sink::Database(Vec::new())
        } else {
            // Recorded before the blob is created, so that garbage collection
            // finds a blob left behind by a failure without walking the blobs.
            metadata.record_upload(&upload.id, unix_now())?;
            Sink::Blob(blobs.create_pending(&upload.id)?)
        };
        let chunk_size = settings.chunk_size as usize;
        Ok(UploadWriter {
            hashing: Some(Hashing::for_size(upload.size)?),
            upload: upload.clone(),
            blobs: blobs.clone(),
            metadata: metadata.clone(),
            key_id: master_key.id(),
            sealer: ChunkSealer {
                key: master_key.file_key(&upload.id, settings.cipher),
                nonce_prefix: rand::random(),
                chunk_size,
                sink,
                // A small file needs no more than its own size.
                pending: Vec::with_capacity(
                    chunk_size.min(usize::try_from(upload.size).unwrap_or(usize::MAX)) + TAG_LEN,
                ),
                next_index: 0,
            },
            received: 0,
            finished: false,
            claim,
        })
    }

    /// [`write_pieces`](Self::write_pieces) for one slice.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StorageError> {
        self.write_pieces(&[Bytes::copy_from_slice(data)])
    }

    /// Seals and writes each chunk that fills up, and hashes the plaintext
    /// with BLAKE3 and SHA-256 (for a large file on a second thread, while
    /// this one seals). Fails with `SizeMismatch` as soon as more than the
    /// upload's size arrives.
    pub fn write_pieces(&mut self, pieces: &[Bytes]) -> Result<(), StorageError> {
        let total: usize = pieces.iter().map(|piece| piece.len()).sum();
        self.count(total)?;
        self.claim.keep()?;
        self.hashing
            .as_mut()
            .ok_or_else(hashing_thread_failed)?
            .update(pieces)?;
        for piece in pieces {
            self.sealer.absorb(piece)?;
        }
        Ok(())
    }

    /// Counts `len` more bytes, refusing any beyond the upload's size.
    fn count(&mut self, len: usize) -> Result<(), StorageError> {
        let received = self.received.saturating_add(len as u64);
        if received > self.upload.size {
            return Err(StorageError::SizeMismatch {
                expected: self.upload.size,
                received,
            });
        }
        self.received = received;
        Ok(())
    }

    /// Seals the last chunk, checks the byte count, publishes the blob, then
    /// commits the `FileRecord` with its indexes and the uploader's usage in
    /// one transaction; only then is the file visible to
    /// [`Store::file`](super::Store::file).
    ///
    /// The database is flushed before returning, so a success can be
    /// reported to the uploader as durable.
    pub fn finish(mut self, now: u64) -> Result<FileRecord, StorageError> {
        if self.received != self.upload.size {
            return Err(StorageError::SizeMismatch {
                expected: self.upload.size,
                received: self.received,
            });
        }
        self.sealer.seal_pending(true)?;
        let small_file = match &mut self.sealer.sink {
            // Should the commit below fail, dropping `self` deletes the blob
            // under its final name too.
            Sink::Blob(blob) => {
                blob.publish()?;
                None
            }
            Sink::Database(sealed) => Some(std::mem::take(sealed)),
        };
        let hashes = self
            .hashing
            .take()
            .ok_or_else(hashing_thread_failed)?
            .finish()?;
        let record = self.record(now, hashes);
        self.metadata.commit_file(&record, small_file.as_deref())?;
        // Committed: from here on the blob belongs to the file, and dropping
        // `self` must not delete it, even if the flush below fails.
        self.finished = true;
        self.metadata.flush()?;
        Ok(record)
    }

    /// The record of the file, completed at `now`.
    fn record(&self, now: u64, hashes: Hashes) -> FileRecord {
        let upload = &self.upload;
        FileRecord {
            id: upload.id,
            uploader: upload.uploader.clone(),
            filename: upload.filename.clone(),
            size: upload.size,
            content_type: upload.content_type.clone(),
            purpose: upload.purpose,
            created: now,
            expires: upload.expires,
            blake3: *hashes.blake3.finalize().as_bytes(),
            sha256: hashes.sha256.finalize().into(),
            chunk_size: self.sealer.chunk_size as u32,
            nonce_prefix: self.sealer.nonce_prefix,
            key_id: self.key_id,
            cipher: self.sealer.key.cipher(),
        }
    }
}

impl ChunkSealer {
    /// Appends `data` to the chunk being filled, sealing each chunk that fills up.
    fn absorb(&mut self, data: &[u8]) -> Result<(), StorageError> {
        let mut rest = data;
        while !rest.is_empty() {
            if self.pending.len() == self.chunk_size {
                // More bytes follow, so this full chunk is not the last.
                self.seal_pending(false)?;
            }
            let take = rest.len().min(self.chunk_size - self.pending.len());
            let (now, later) = rest.split_at(take);
            self.pending.extend_from_slice(now);
            rest = later;
        }
        Ok(())
    }

    fn seal_pending(&mut self, last: bool) -> Result<(), StorageError> {
        let index = self.next_index;
        seal_chunk(
            &self.key,
            &self.nonce_prefix,
            index,
            last,
            &mut self.pending,
        )?;
        match &mut self.sink {
            Sink::Blob(blob) => blob.append(&self.pending)?,
            Sink::Database(sealed) => sealed.extend_from_slice(&self.pending),
        }
        self.pending.clear();
        // `begin` refused sizes needing more than u32::MAX chunks.
        self.next_index = index.wrapping_add(1);
        Ok(())
    }
}

impl Drop for UploadWriter {
    fn drop(&mut self) {
        // A small file's upload left nothing outside this writer.
        if self.finished || matches!(self.sealer.sink, Sink::Database(_)) {
            return;
        }
        let id = &self.upload.id;
        let discarded = self
            .blobs
            .delete(id)
            .and_then(|()| self.metadata.forget_upload(id));
        if let Err(err) = discarded {
            tracing::warn!(
                file = %id,
                error = %err,
                "could not delete the blob of an unfinished upload; garbage collection will"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::blobs::BlobState;
    use super::super::test_support::*;
    use super::*;

    fn sha256(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    /// Bytes of the blob of a file of `size` bytes in `chunks` chunks.
    fn sealed_len(size: usize, chunks: usize) -> Option<u64> {
        Some((size + chunks * TAG_LEN) as u64)
    }

    test_each_cipher! {
        fn round_trips_every_size_shape(cipher) {
            let t = test_store_sealing(cipher);
            let chunk = CHUNK as usize;
            // (size, chunks it must be stored in)
            for (size, chunks) in [
                (1, 1),
                (chunk - 1, 1),
                (chunk, 1),
                (chunk + 1, 2),
                (3 * chunk, 3),
                (5 * chunk + 7, 6),
            ] {
                let slot = slot_for("juliet@example.org", size as u64);
                let bytes = data(size);
                let file = upload(&t.store, &slot, &bytes, NOW + 60);

                assert_eq!(file.size, size as u64);
                assert_eq!(file.blake3, *blake3::hash(&bytes).as_bytes());
                assert_eq!(file.sha256, sha256(&bytes));
                assert_eq!(file.content_type, "text/plain");
                assert_eq!(
                    t.blob_len(&file.id),
                    sealed_len(size, chunks),
                    "size {size}"
                );
                assert!(!t.has_part(&file.id));
                assert_eq!(t.store.file(&file.id).unwrap(), Some(file.clone()));
                assert_eq!(read(&t.store, &file, 0..size as u64).unwrap(), bytes);
            }
        }
    }

    #[test]
    fn write_boundaries_do_not_matter() {
        let t = test_store();
        let bytes = data(4 * CHUNK as usize + 3);
        let slot = slot_for("juliet@example.org", bytes.len() as u64);
        let mut writer = t.store.begin_upload(&slot, None).unwrap();
        let mut rest = bytes.as_slice();
        for piece_len in [1, 7, 0, 16, 17, 1].into_iter().cycle() {
            let (piece, later) = rest.split_at(piece_len.min(rest.len()));
            writer.write(piece).unwrap();
            rest = later;
            if rest.is_empty() {
                break;
            }
        }
        let file = writer.finish(NOW).unwrap();
        assert_eq!(file.sha256, sha256(&bytes));
        assert_eq!(read(&t.store, &file, 0..file.size).unwrap(), bytes);
    }

    test_each_cipher! {
        fn batches_hashed_in_parallel_store_the_same_file(cipher) {
            // Real-sized chunks: a file big enough for the hashing thread would
            // take long in 16-byte chunks.
            let t = test_store_sealing_chunks(cipher, 64 * 1024);
            // Big enough for the two-thread path, in uneven pieces.
            let bytes = data(3 * HASH_THREAD_MIN_FILE_BYTES as usize + 5);
            let slot = slot_for("juliet@example.org", bytes.len() as u64);
            let mut writer = t.store.begin_upload(&slot, None).unwrap();
            let pieces: Vec<bytes::Bytes> = bytes
                .chunks(10_007)
                .map(bytes::Bytes::copy_from_slice)
                .collect();
            let (first, second) = pieces.split_at(pieces.len() / 2);
            writer.write_pieces(first).unwrap();
            writer.write_pieces(&second[..1]).unwrap();
            writer.write_pieces(&second[1..]).unwrap();
            let file = writer.finish(NOW).unwrap();
            assert_eq!(file.sha256, sha256(&bytes));
            assert_eq!(file.blake3, *blake3::hash(&bytes).as_bytes());
            assert_eq!(read(&t.store, &file, 0..file.size).unwrap(), bytes);
        }
    }

    #[test]
    fn a_batch_beyond_the_slot_size_is_refused() {
        let t = test_store();
        let slot = slot_for("juliet@example.org", 10);
        let mut writer = t.store.begin_upload(&slot, None).unwrap();
        let pieces = [
            bytes::Bytes::from_static(b"0123456"),
            bytes::Bytes::from_static(b"789X"),
        ];
        assert!(matches!(
            writer.write_pieces(&pieces),
            Err(StorageError::SizeMismatch {
                expected: 10,
                received: 11
            })
        ));
    }

    #[test]
    fn empty_file_round_trips() {
        let t = test_store();
        let slot = slot_for("juliet@example.org", 0);
        let file = upload(&t.store, &slot, &[], NOW + 60);
        assert_eq!(file.sha256, sha256(&[]));
        assert_eq!(t.blob_len(&file.id), sealed_len(0, 1));
        assert!(matches!(
            t.store.read_range(&file, 0..0),
            Err(StorageError::BadRange { .. })
        ));
    }

    #[test]
    fn file_is_invisible_until_finished() {
        let t = test_store();
        let bytes = data(3 * CHUNK as usize);
        let slot = slot_for("juliet@example.org", bytes.len() as u64);
        let mut writer = t.store.begin_upload(&slot, None).unwrap();
        writer.write(&bytes).unwrap();
        // Two chunks are out; the third waits to learn whether it is last.
        let part = std::fs::metadata(t.blob_path(&slot.id, BlobState::Pending)).unwrap();
        assert_eq!(part.len(), 2 * (u64::from(CHUNK) + TAG_LEN as u64));
        assert_eq!(t.blob_len(&slot.id), None);
        assert_eq!(t.store.file(&slot.id).unwrap(), None);
        assert_eq!(t.store.stored_bytes(), 0);
        writer.finish(NOW).unwrap();
        assert!(!t.has_part(&slot.id));
        assert!(t.blob_len(&slot.id).is_some());
        assert!(t.store.file(&slot.id).unwrap().is_some());
        assert_eq!(t.store.stored_bytes(), bytes.len() as u64);
    }

    test_each_cipher! {
        fn dropped_writer_leaves_nothing_and_can_restart(cipher) {
            let t = test_store_sealing(cipher);
            let bytes = data(3 * CHUNK as usize + 5);
            let slot = slot_for("juliet@example.org", bytes.len() as u64);

            let mut writer = t.store.begin_upload(&slot, None).unwrap();
            writer.write(&data(2 * CHUNK as usize + 1)).unwrap();
            drop(writer);
            assert!(!t.has_part(&slot.id));
            assert_eq!(t.blob_len(&slot.id), None);
            assert_eq!(t.store.file(&slot.id).unwrap(), None);
            assert!(t.store.metadata().uploads().unwrap().is_empty());

            let file = upload(&t.store, &slot, &bytes, NOW + 60);
            assert_eq!(read(&t.store, &file, 0..file.size).unwrap(), bytes);
        }
    }

    test_each_cipher! {
        fn restart_replaces_the_blob_left_by_an_earlier_attempt(cipher) {
            let t = test_store_sealing(cipher);
            let slot = slot_for("juliet@example.org", 10);
            // The blob of an attempt whose process died, longer than what a
            // new attempt of this size writes, and one that died between the
            // rename and the commit.
            drop(t.store.blobs().create_pending(&slot.id).unwrap());
            std::fs::write(t.blob_path(&slot.id, BlobState::Pending), [0u8; 160]).unwrap();
            std::fs::write(t.blob_path(&slot.id, BlobState::Published), [1u8; 160]).unwrap();
            let file = upload(&t.store, &slot, &data(10), NOW + 60);
            assert_eq!(t.blob_len(&file.id), sealed_len(10, 1));
            assert!(!t.has_part(&file.id));
            assert_eq!(read(&t.store, &file, 0..10).unwrap(), data(10));
        }
    }

    #[test]
    fn blobs_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let t = test_store();
        let slot = slot_for("juliet@example.org", 10);
        let mut writer = t.store.begin_upload(&slot, None).unwrap();
        let part = t.blob_path(&slot.id, BlobState::Pending);
        let mode =
            |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&part), 0o600);
        assert_eq!(mode(part.parent().unwrap()), 0o700);
        assert_eq!(mode(part.parent().unwrap().parent().unwrap()), 0o700);
        writer.write(&data(10)).unwrap();
        writer.finish(NOW).unwrap();
        let blob = t.blob_path(&slot.id, BlobState::Published);
        assert_eq!(mode(&blob), 0o600);
        // content/<first byte of the id in hex>/<id>
        assert_eq!(
            blob.file_name().unwrap().to_str(),
            Some(&*slot.id.to_string())
        );
        assert_eq!(
            blob.parent().unwrap().file_name().unwrap().to_str(),
            Some(&slot.id.to_string()[..2])
        );
    }

    #[test]
    fn begin_after_finish_is_already_uploaded() {
        let t = test_store();
        let slot = slot_for("juliet@example.org", 5);
        upload(&t.store, &slot, &data(5), NOW + 60);
        assert!(matches!(
            t.store.begin_upload(&slot, None),
            Err(StorageError::AlreadyUploaded)
        ));
    }

    #[test]
    fn concurrent_begin_is_upload_in_progress() {
        let t = test_store();
        let slot = slot_for("juliet@example.org", 5);
        let mut first = t.store.begin_upload(&slot, None).unwrap();
        first.write(b"hel").unwrap();
        assert!(matches!(
            t.store.begin_upload(&slot, None),
            Err(StorageError::UploadInProgress)
        ));
        // The refused attempt must not have disturbed the running one.
        first.write(b"lo").unwrap();
        let file = first.finish(NOW).unwrap();
        assert_eq!(read(&t.store, &file, 0..5).unwrap(), b"hello");
    }

    #[test]
    fn in_progress_is_released_when_the_writer_goes() {
        let t = test_store();
        let slot = slot_for("juliet@example.org", 5);
        drop(t.store.begin_upload(&slot, None).unwrap());
        upload(&t.store, &slot, &data(5), NOW + 60);
    }

    #[test]
    fn too_many_bytes_fail_at_once() {
        let t = test_store();
        let slot = slot_for("juliet@example.org", 20);
        let mut writer = t.store.begin_upload(&slot, None).unwrap();
        writer.write(&data(15)).unwrap();
        assert!(matches!(
            writer.write(&data(6)),
            Err(StorageError::SizeMismatch {
                expected: 20,
                received: 21
            })
        ));
    }

    #[test]
    fn too_few_bytes_fail_at_finish() {
        let t = test_store();
        let slot = slot_for("juliet@example.org", 20);
        let mut writer = t.store.begin_upload(&slot, None).unwrap();
        writer.write(&data(19)).unwrap();
        assert!(matches!(
            writer.finish(NOW),
            Err(StorageError::SizeMismatch {
                expected: 20,
                received: 19
            })
        ));
        assert_eq!(t.store.file(&slot.id).unwrap(), None);
        assert!(!t.has_part(&slot.id));
        assert_eq!(t.blob_len(&slot.id), None);
    }

    #[test]
    fn refuses_sizes_beyond_the_chunk_index() {
        let t = test_store();
        let slot = slot_for(
            "juliet@example.org",
            u64::from(u32::MAX) * u64::from(CHUNK) + 1,
        );
        assert!(matches!(
            t.store.begin_upload(&slot, None),
            Err(StorageError::TooLarge { .. })
        ));
    }

    test_each_cipher! {
        fn data_survives_reopen(cipher) {
            let t = test_store_sealing(cipher);
            let bytes = data(4 * CHUNK as usize + 9);
            let slot = slot_for("juliet@example.org", bytes.len() as u64);
            let file = upload(&t.store, &slot, &bytes, NOW + 60);

            let t = t.reopen();
            let reread = t.store.file(&slot.id).unwrap().unwrap();
            assert_eq!(reread, file);
            let plain = read(&t.store, &reread, 0..reread.size).unwrap();
            assert_eq!(sha256(&plain), file.sha256);
            assert_eq!(*blake3::hash(&plain).as_bytes(), file.blake3);
        }
    }

    test_each_cipher! {
        fn plaintext_never_reaches_the_disk(cipher) {
            let t = test_store_sealing(cipher);
            // Shorter than half a chunk, so every chunk holds a whole copy.
            let marker = b"SATCHEL!";
            let bytes = marker.repeat(40);
            let mut slot = slot_for("juliet@example.org", bytes.len() as u64);
            // Metadata is stored in the clear: it shows the search can find
            // what is there.
            slot.filename = "control-filename-in-the-clear".into();
            upload(&t.store, &slot, &bytes, NOW + 60);
            t.store.flush().unwrap();

            let mut disk = Vec::new();
            let mut pending = vec![t.options().path];
            while let Some(path) = pending.pop() {
                if path.is_dir() {
                    for entry in std::fs::read_dir(&path).unwrap() {
                        pending.push(entry.unwrap().path());
                    }
                } else {
                    disk.extend(std::fs::read(&path).unwrap());
                }
            }
            let contains = |needle: &[u8]| disk.windows(needle.len()).any(|w| w == needle);
            assert!(contains(slot.filename.as_bytes()));
            assert!(!contains(marker));
        }
    }

    test_each_cipher! {
        fn small_files_live_in_the_database_and_read_back_like_the_others(cipher) {
            let t = small_files_test_store_sealing(cipher);
            // 0, 1 and 100 bytes go to the database (up to 7 chunks of 16), 101
            // to a blob file.
            for size in [0, 1, 16, 17, 100, 101] {
                let slot = slot_for("juliet@example.org", size);
                let bytes = data(size as usize);
                let mut writer = t.store.begin_upload(&slot, None).unwrap();
                let small = size <= SMALL_FILE_TEST_MAX;
                // A small file's upload touches the disk only when it commits.
                assert_eq!(t.has_part(&slot.id), !small, "size {size}");
                writer.write(&bytes).unwrap();
                let file = writer.finish(NOW).unwrap();
                assert_eq!(t.blob_len(&file.id).is_some(), !small, "size {size}");
                assert_eq!(
                    t.store.metadata().small_file(&file.id).unwrap().is_some(),
                    small
                );
                if size > 0 {
                    assert_eq!(read(&t.store, &file, 0..size).unwrap(), bytes);
                    assert_eq!(
                        read(&t.store, &file, size / 2..size).unwrap(),
                        &bytes[size as usize / 2..]
                    );
                }
                assert_eq!(file.sha256, sha256(&bytes));
            }
        }
    }

    #[test]
    fn an_unfinished_small_upload_leaves_nothing_and_can_restart() {
        let t = small_files_test_store();
        let slot = slot_for("juliet@example.org", 50);
        let mut writer = t.store.begin_upload(&slot, None).unwrap();
        writer.write(&data(20)).unwrap();
        drop(writer);
        assert!(t.store.file(&slot.id).unwrap().is_none());
        assert!(t.store.metadata().small_files_for_tests().is_empty());
        assert!(t.store.metadata().uploads().unwrap().is_empty());
        let file = upload(&t.store, &slot, &data(50), NOW + 60);
        assert_eq!(read(&t.store, &file, 0..50).unwrap(), data(50));
        assert!(matches!(
            t.store.begin_upload(&slot, None),
            Err(StorageError::AlreadyUploaded)
        ));
    }

    test_each_cipher! {
        fn an_altered_small_file_is_corrupt_not_served(cipher) {
            let t = small_files_test_store_sealing(cipher);
            let slot = slot_for("juliet@example.org", 40);
            let file = upload(&t.store, &slot, &data(40), NOW + 60);
            let small_files = t.store.metadata().small_files_for_tests();
            let mut sealed = small_files.get(file.id.0).unwrap().unwrap().to_vec();
            sealed[40] ^= 1; // in the second chunk (bytes 32..64)
            small_files.insert(file.id.0, sealed.clone()).unwrap();
            let mut pieces = t.store.read_range(&file, 0..40).unwrap();
            assert_eq!(pieces.next().unwrap().unwrap(), data(16));
            assert!(matches!(
                pieces.next(),
                Some(Err(StorageError::Corrupt { chunk: 1, .. }))
            ));
            // Cut short: the chunk now at the end was not sealed as the last.
            small_files.insert(file.id.0, &sealed[..32]).unwrap();
            assert!(read(&t.store, &file, 0..40).is_err());
        }
    }

    #[test]
    fn deleting_a_small_file_drops_its_sealed_bytes() {
        let t = small_files_test_store();
        let upload_expiring_at = |expires| {
            upload(
                &t.store,
                &slot_for("juliet@example.org", 30),
                &data(30),
                expires,
            )
        };
        let kept = upload_expiring_at(NOW + 1000);
        let expiring = upload_expiring_at(NOW + 10);
        let deleted = upload_expiring_at(NOW + 1000);
        assert!(t.store.delete_file(&deleted.id).unwrap());
        let report = t.store.collect_garbage(NOW + 20, 3600).unwrap();
        assert_eq!(report.files_deleted, 1);
        let metadata = t.store.metadata();
        assert!(metadata.small_file(&expiring.id).unwrap().is_none());
        assert!(metadata.small_file(&deleted.id).unwrap().is_none());
        assert_eq!(read(&t.store, &kept, 0..30).unwrap(), data(30));
        assert_eq!(t.store.stored_bytes(), 30);
        assert!(t.store.metadata().uploads().unwrap().is_empty());
    }
}
