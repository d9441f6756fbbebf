//! Reading a byte range of a file, a window of authenticated chunks at a time.
//!
//! The reader reads (with one positioned read per window of up to
//! [`WINDOW_CHUNKS`] chunks, on the file's sealed bytes, opened once) and
//! opens only the chunks the range covers, and yields a chunk's bytes only
//! after its tag checked out: a download may stop early with `Corrupt`, but
//! it never carries a byte that was altered on disk. A blob that is missing
//! or too short is `Corrupt` too.
//!
//! Why windows: decryption is most of the CPU a download costs, and the
//! chunks of a window are opened in parallel on rayon's pool (one thread
//! per core), so one large download uses every core instead of one. The
//! window is read into one buffer and each chunk is opened in place in its
//! own slice of it, so the bytes are never copied after the read. Up to
//! [`WINDOWS_AHEAD`] windows are read and opened ahead of the one being
//! yielded, so that reading, decrypting and sending overlap (the README
//! has the measurements). The read is part of the window's job on the
//! pool, so the reader itself never blocks: it is a [`Stream`] that the
//! download's task polls, woken when the oldest window is open, and, for
//! blocking callers, an [`Iterator`] that waits for it.
//!
//! The reader is handed the sealed bytes by the store: the published blob,
//! open (so it stays readable even if garbage collection deletes it
//! meanwhile), or a small file's bytes from the database.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use rayon::prelude::*;
use tokio::sync::oneshot;

use super::blobs::PublishedBlob;
use super::crypto::{chunk_offset, open_chunk, FileKey, TAG_LEN};
use super::error::{io_error, StorageError};
use super::master_key::MasterKey;
use super::records::{FileId, FileRecord, MAX_CHUNK_SIZE};

/// Chunks read and opened together; with 64 KiB chunks, 256 KiB per window.
pub const WINDOW_CHUNKS: u32 = 4;
/// Windows being opened on rayon's pool at once, per reader.
pub const WINDOWS_AHEAD: usize = 2;

/// The plaintext of a range, chunk by chunk; see
/// [`Store::read_range`](super::Store::read_range).
///
/// After the first error it yields nothing more.
pub struct RangeReader {
    /// Shared with the windows being read and opened on rayon's pool.
    sealed: Arc<SealedBytes>,
    file: FileId,
    /// Shared with the window being opened on rayon's pool.
    key: Arc<FileKey>,
    nonce_prefix: [u8; 7],
    chunk_size: u64,
    file_size: u64,
    last_index: u32,
    /// The first chunk not yielded yet, and the last one the range needs.
    next_index: u32,
    end_index: u32,
    /// The first chunk not read yet (`None` once every window is launched),
    /// and the windows read and being opened, oldest first.
    launch_index: Option<u32>,
    in_flight: VecDeque<oneshot::Receiver<OpenedWindow>>,
    /// The buffers of windows already opened, used again once their pieces
    /// are sent.
    spent: SpentWindows,
    /// Bytes to drop from the front of the next chunk.
    skip: u64,
    /// Bytes of the range not yet yielded.
    remaining: u64,
    /// Opened pieces of the current window, and the error that cut it short.
    ready: VecDeque<Bytes>,
    failed: Option<StorageError>,
    /// Set once the error is yielded: the range ends there, unfinished.
    cut_short: bool,
}

/// The sealed chunks of a file, back to back, wherever they are kept.
pub(super) enum SealedBytes {
    Blob(PublishedBlob),
    /// A small file's, from the database.
    Database(Vec<u8>),
}

impl RangeReader {
    /// `range` was checked to be non-empty and within the file; `sealed` is
    /// `None` when the file's blob is missing.
    pub(super) fn new(
        master_key: &MasterKey,
        file: &FileRecord,
        range: std::ops::Range<u64>,
        sealed: Option<SealedBytes>,
    ) -> Result<RangeReader, StorageError> {
        let chunk_size = u64::from(file.chunk_size);
        let undecodable = || {
            StorageError::Decode(format!(
                "file record {}: {} bytes in chunks of {chunk_size}",
                file.id, file.size
            ))
        };
        // Chunks are read whole: a record must not make us allocate more
        // than the store would ever have written.
        if chunk_size == 0 || chunk_size > u64::from(MAX_CHUNK_SIZE) {
            return Err(undecodable());
        }
        // The last chunk always exists, even for an empty file.
        let last_index =
            u32::try_from(file.size.saturating_sub(1) / chunk_size).map_err(|_| undecodable())?;
        let first_index = u32::try_from(range.start / chunk_size).map_err(|_| undecodable())?;
        let end_index = u32::try_from((range.end - 1) / chunk_size).map_err(|_| undecodable())?;
        let sealed = sealed.ok_or(StorageError::Corrupt {
            file: file.id,
            chunk: first_index,
        })?;
        Ok(RangeReader {
            sealed: Arc::new(sealed),
            file: file.id,
            key: Arc::new(master_key.file_key(&file.id, file.cipher)),
            nonce_prefix: file.nonce_prefix,
            chunk_size,
            file_size: file.size,
            last_index,
            next_index: first_index,
            end_index,
            launch_index: Some(first_index),
            in_flight: VecDeque::new(),
            spent: SpentWindows::default(),
            skip: range.start % chunk_size,
            remaining: range.end - range.start,
            ready: VecDeque::new(),
            failed: None,
            cut_short: false,
        })
    }

    /// Whether every byte of the range has been yielded: true with the
    /// last piece, before the reader is asked again.
    pub fn is_finished(&self) -> bool {
        self.remaining == 0 && self.ready.is_empty() && self.failed.is_none() && !self.cut_short
    }

    /// Starts reading the next window and opening its chunks on rayon's pool.
    fn launch_window(&mut self) {
        let Some(first) = self.launch_index else {
            return;
        };
        let count = (self.end_index - first + 1).min(WINDOW_CHUNKS);
        let last = first + (count - 1);
        self.launch_index = last.checked_add(1).filter(|&next| next <= self.end_index);
        let (opened_tx, opened_rx) = oneshot::channel();
        self.in_flight.push_back(opened_rx);
        // The sealed bytes of chunk `index`: every chunk but the file's last
        // has the full size, so a window is at most
        // WINDOW_CHUNKS * (MAX_CHUNK_SIZE + TAG_LEN) bytes.
        let (chunk_size, file_size, last_index) =
            (self.chunk_size, self.file_size, self.last_index);
        let sealed_len = move |index: u32| {
            let plain = if index == last_index {
                file_size - u64::from(index) * chunk_size
            } else {
                chunk_size
            };
            (plain + TAG_LEN as u64) as usize
        };
        let (sealed, key, nonce_prefix) =
            (self.sealed.clone(), self.key.clone(), self.nonce_prefix);
        let window_len = (first..=last).map(sealed_len).sum::<usize>();
        let mut window = self.spent.take(window_len);
        rayon::spawn(move || {
            window.resize(window_len, 0);
            let offset = chunk_offset(first, chunk_size);
            let filled = match sealed.read_at_most(&mut window, offset) {
                Ok(filled) => filled,
                Err(err) => {
                    let _ = opened_tx.send(OpenedWindow::Unreadable(err));
                    return;
                }
            };
            // A blob cut short: the chunks it still holds whole are served,
            // the first one it cuts is corrupt.
            let mut covered = 0;
            let whole = (first..=last)
                .take_while(|&index| {
                    covered += sealed_len(index);
                    covered <= filled
                })
                .count() as u32;
            let chunks = (first..first + whole)
                .map(|index| (index, window.split_to(sealed_len(index))))
                .collect::<Vec<_>>()
                .into_par_iter()
                .map(|(index, mut chunk)| {
                    let is_last = index == last_index;
                    let ok = open_chunk(&key, &nonce_prefix, index, is_last, &mut chunk).is_ok();
                    (index, chunk, ok)
                })
                .collect();
            let cut_at = (whole < count).then_some(first + whole);
            // The reader may be gone (the download stopped): nothing to do then.
            let _ = opened_tx.send(OpenedWindow::Opened {
                chunks,
                cut_at,
                spent: window,
            });
        });
    }

    /// Launches windows until [`WINDOWS_AHEAD`] are in flight or the range
    /// has none left.
    fn launch_windows(&mut self) {
        while self.in_flight.len() < WINDOWS_AHEAD && self.launch_index.is_some() {
            self.launch_window();
        }
    }

    /// What to yield without waiting, if anything: a piece ready, the
    /// error that ended the range, or its end.
    fn ready_step(&mut self) -> Option<Option<Result<Bytes, StorageError>>> {
        if let Some(piece) = self.ready.pop_front() {
            return Some(Some(Ok(piece)));
        }
        if let Some(err) = self.failed.take() {
            self.remaining = 0;
            self.cut_short = true;
            return Some(Some(Err(err)));
        }
        (self.remaining == 0).then_some(None)
    }

    /// Queues the pieces of the range that the oldest window in flight
    /// holds, as it came back (`None`: no window was in flight); a chunk
    /// that failed stops the range there.
    fn take_window(&mut self, opened: Option<Result<OpenedWindow, oneshot::error::RecvError>>) {
        let Some(opened) = opened else {
            // Only if the record's sizes and the range disagree: stop rather
            // than wait for a window that was never launched.
            self.failed = Some(self.corrupt(self.next_index));
            return;
        };
        match opened {
            Ok(OpenedWindow::Opened {
                chunks,
                cut_at,
                spent,
            }) => {
                self.spent.keep(spent);
                for (index, chunk, ok) in chunks {
                    if !ok {
                        self.failed = Some(self.corrupt(index));
                        return;
                    }
                    self.queue_piece(chunk.freeze());
                }
                if let Some(index) = cut_at {
                    self.failed = Some(self.corrupt(index));
                }
            }
            Ok(OpenedWindow::Unreadable(err)) => {
                self.failed = Some(io_error(
                    format!("reading the blob of file {}", self.file),
                    err,
                ));
            }
            Err(_) => {
                self.failed = Some(io_error(
                    format!("decrypting file {}", self.file),
                    io::Error::other("the decryption task stopped"),
                ));
            }
        }
    }

    /// Queues the part of an opened chunk that the range covers.
    fn queue_piece(&mut self, plain: Bytes) {
        // Both fit in the chunk: its length is the record's, and the range
        // lies within the file.
        let start = self.skip as usize;
        let end = (self.skip + self.remaining).min(plain.len() as u64) as usize;
        let piece = plain.slice(start..end);
        self.remaining -= piece.len() as u64;
        self.skip = 0;
        self.next_index = self.next_index.wrapping_add(1);
        self.ready.push_back(piece);
    }

    fn corrupt(&self, chunk: u32) -> StorageError {
        StorageError::Corrupt {
            file: self.file,
            chunk,
        }
    }
}

/// A window as it comes back from rayon's pool.
enum OpenedWindow {
    /// Its chunks in order, each opened in place or not; and the first chunk
    /// the blob no longer held whole, if it was cut short.
    Opened {
        chunks: Vec<(u32, BytesMut, bool)>,
        cut_at: Option<u32>,
        /// What is left of the window's buffer, to find it again by.
        spent: BytesMut,
    },
    Unreadable(io::Error),
}

/// The buffers of a reader's last windows. A window's pieces share its
/// buffer; once every piece is sent and dropped, the buffer is whole again
/// and the next window reads into it. A new buffer each time was mapped
/// afresh, page by page, by the allocator (which gives memory back above
/// its trim threshold): page faults were about a tenth of a download's CPU.
#[derive(Default)]
struct SpentWindows {
    /// Oldest first.
    kept: VecDeque<BytesMut>,
}

impl SpentWindows {
    /// Windows in flight, the one being yielded and the one in the
    /// connection's write buffer: older ones are free again.
    const KEPT: usize = WINDOWS_AHEAD + 2;

    /// An empty buffer of at least `len` bytes: a spent window's, if one
    /// is free again, else a new one.
    fn take(&mut self, len: usize) -> BytesMut {
        let free = self
            .kept
            .iter_mut()
            .position(|spent| spent.try_reclaim(len));
        match free.and_then(|at| self.kept.remove(at)) {
            Some(buffer) => buffer,
            None => BytesMut::with_capacity(len),
        }
    }

    /// Keeps what is left of a window's buffer: its bytes (chunks a cut
    /// left unread) are never needed again.
    fn keep(&mut self, mut spent: BytesMut) {
        spent.clear();
        if self.kept.len() == Self::KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back(spent);
    }
}

impl SealedBytes {
    /// Fills `buf` from `offset` until it is full or the bytes end; returns
    /// how many bytes it holds.
    fn read_at_most(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match self {
            SealedBytes::Blob(blob) => blob.read_at_most(buf, offset),
            SealedBytes::Database(sealed) => {
                let start = usize::try_from(offset).map_or(sealed.len(), |o| o.min(sealed.len()));
                let len = buf.len().min(sealed.len() - start);
                buf[..len].copy_from_slice(&sealed[start..start + len]);
                Ok(len)
            }
        }
    }
}

/// For blocking callers (thumbnails, tests): waits on the current thread.
impl Iterator for RangeReader {
    type Item = Result<Bytes, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(step) = self.ready_step() {
                return step;
            }
            self.launch_windows();
            let opened = self.in_flight.pop_front().map(|rx| rx.blocking_recv());
            self.take_window(opened);
        }
    }
}

/// For the async side (downloads): the connection's task is woken when a
/// window is open, with no thread of its own waiting between.
impl Stream for RangeReader {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(step) = this.ready_step() {
                return Poll::Ready(step);
            }
            this.launch_windows();
            let opened = match this.in_flight.front_mut() {
                Some(rx) => Some(ready!(Pin::new(rx).poll(cx))),
                None => None,
            };
            this.in_flight.pop_front();
            this.take_window(opened);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::blobs::BlobState;
    use super::super::test_support::*;
    use super::*;

    /// A file of 3½ chunks.
    fn sample(t: &TestStore) -> (Vec<u8>, FileRecord) {
        let bytes = data(3 * CHUNK as usize + CHUNK as usize / 2);
        let slot = slot_for("juliet@example.org", bytes.len() as u64);
        let file = upload(&t.store, &slot, &bytes, NOW + 60);
        (bytes, file)
    }

    fn blob_path(t: &TestStore, file: &FileRecord) -> std::path::PathBuf {
        t.blob_path(&file.id, BlobState::Published)
    }

    /// Where chunk `index` of a sample file lies in its blob.
    fn sealed(index: u32) -> std::ops::Range<usize> {
        let start = chunk_offset(index, u64::from(CHUNK)) as usize;
        start..start + CHUNK as usize + TAG_LEN
    }

    /// Flips a bit of chunk `index` in the blob file on disk.
    fn tamper(t: &TestStore, file: &FileRecord, index: u32) {
        let path = blob_path(t, file);
        let mut blob = std::fs::read(&path).unwrap();
        blob[sealed(index).start] ^= 0x80;
        std::fs::write(&path, blob).unwrap();
    }

    /// Reads every non-empty range of `file` and compares it with `bytes`.
    fn assert_every_range_reads_its_bytes(t: &TestStore, file: &FileRecord, bytes: &[u8]) {
        let size = bytes.len() as u64;
        for start in 0..size {
            for end in start + 1..=size {
                let got = read(&t.store, file, start..end).unwrap();
                assert_eq!(got, &bytes[start as usize..end as usize], "{start}..{end}");
            }
        }
    }

    test_each_cipher! {
        fn every_range_reads_exactly_its_bytes(cipher) {
            let t = test_store_sealing(cipher);
            let (bytes, file) = sample(&t);
            assert_every_range_reads_its_bytes(&t, &file, &bytes);
        }
    }

    #[test]
    fn ranges_across_windows_read_exactly_their_bytes() {
        let t = test_store();
        // Two and a half windows.
        let chunks = 2 * WINDOW_CHUNKS as usize + WINDOW_CHUNKS as usize / 2;
        let bytes = data(chunks * CHUNK as usize + 5);
        let slot = slot_for("juliet@example.org", bytes.len() as u64);
        let file = upload(&t.store, &slot, &bytes, NOW + 60);
        assert_every_range_reads_its_bytes(&t, &file, &bytes);
    }

    /// Window buffers are used again once their pieces are dropped, and a
    /// piece still held keeps its bytes while later windows are read.
    #[test]
    fn pieces_keep_their_bytes_while_window_buffers_are_used_again() {
        let t = test_store();
        let chunks = 6 * WINDOW_CHUNKS as usize;
        let bytes = data(chunks * CHUNK as usize);
        let slot = slot_for("juliet@example.org", bytes.len() as u64);
        let file = upload(&t.store, &slot, &bytes, NOW + 60);
        let mut reader = t.store.read_range(&file, 0..file.size).unwrap();
        let held = reader.next().unwrap().unwrap();
        let mut read = held.to_vec();
        for piece in reader {
            // Each piece dropped at once: its window's buffer is free again.
            read.extend_from_slice(&piece.unwrap());
        }
        assert_eq!(read, bytes);
        assert_eq!(held, &bytes[..CHUNK as usize]);
    }

    #[test]
    fn a_window_buffer_is_taken_again_only_once_its_pieces_are_gone() {
        let mut spent = SpentWindows::default();
        let mut window = spent.take(64);
        window.resize(64, 7);
        let address = window.as_ptr();
        let piece = window.split_to(64).freeze();
        spent.keep(window);
        let other = spent.take(64);
        assert_ne!(other.as_ptr(), address, "a piece still uses it");
        drop(piece);
        let again = spent.take(64);
        assert_eq!(again.as_ptr(), address);
        assert!(again.is_empty() && again.capacity() >= 64);
        for _ in 0..2 * SpentWindows::KEPT {
            spent.keep(BytesMut::new());
        }
        assert_eq!(spent.kept.len(), SpentWindows::KEPT);
    }

    #[test]
    fn yields_one_piece_per_chunk_touched() {
        let t = test_store();
        let (_, file) = sample(&t);
        let chunk = u64::from(CHUNK);
        let pieces = |range| {
            t.store
                .read_range(&file, range)
                .unwrap()
                .map(|piece| piece.unwrap().len())
                .collect::<Vec<_>>()
        };
        assert_eq!(pieces(0..chunk), vec![16]);
        assert_eq!(pieces(chunk..2 * chunk), vec![16]);
        assert_eq!(pieces(chunk - 1..chunk + 1), vec![1, 1]);
        assert_eq!(pieces(3..file.size), vec![13, 16, 16, 8]);
    }

    test_each_cipher! {
        fn reads_only_the_chunks_it_needs(cipher) {
            let t = test_store_sealing(cipher);
            let (bytes, file) = sample(&t);
            let chunk = u64::from(CHUNK);
            tamper(&t, &file, 0);
            tamper(&t, &file, 2);
            // Chunk 1 alone, and the last chunk alone, are untouched.
            assert_eq!(
                read(&t.store, &file, chunk..2 * chunk).unwrap(),
                &bytes[16..32]
            );
            assert_eq!(
                read(&t.store, &file, 3 * chunk..file.size).unwrap(),
                &bytes[48..]
            );
            assert!(matches!(
                read(&t.store, &file, 2 * chunk - 1..2 * chunk + 1),
                Err(StorageError::Corrupt { chunk: 2, .. })
            ));
        }
    }

    test_each_cipher! {
        fn tampered_chunk_is_never_served(cipher) {
            let t = test_store_sealing(cipher);
            let (bytes, file) = sample(&t);
            tamper(&t, &file, 1);
            let pieces: Vec<_> = t.store.read_range(&file, 0..file.size).unwrap().collect();
            assert_eq!(pieces.len(), 2, "stops after the error");
            assert_eq!(pieces[0].as_ref().unwrap(), &bytes[..16]);
            assert!(matches!(
                pieces[1],
                Err(StorageError::Corrupt { chunk: 1, file: id }) if id == file.id
            ));
        }
    }

    /// Downloads read the reader as a stream: the same pieces as blocking
    /// callers get, and the same stop at a tampered chunk.
    #[tokio::test]
    async fn as_a_stream_it_yields_what_it_yields_as_an_iterator() {
        use futures_util::StreamExt;
        let t = test_store();
        let (bytes, file) = sample(&t);
        let mut reader = t.store.read_range(&file, 3..file.size).unwrap();
        let mut streamed = Vec::new();
        while !reader.is_finished() {
            streamed.push(StreamExt::next(&mut reader).await.unwrap().unwrap());
        }
        assert!(StreamExt::next(&mut reader).await.is_none());
        assert_eq!(streamed.len(), 4);
        assert_eq!(streamed.concat(), &bytes[3..]);

        tamper(&t, &file, 2);
        let mut pieces = t.store.read_range(&file, 0..file.size).unwrap();
        assert_eq!(
            StreamExt::next(&mut pieces).await.unwrap().unwrap(),
            &bytes[..16]
        );
        assert_eq!(
            StreamExt::next(&mut pieces).await.unwrap().unwrap(),
            &bytes[16..32]
        );
        assert!(matches!(
            StreamExt::next(&mut pieces).await,
            Some(Err(StorageError::Corrupt { chunk: 2, .. }))
        ));
        assert!(
            StreamExt::next(&mut pieces).await.is_none(),
            "stops after the error"
        );
        assert!(!pieces.is_finished(), "a range cut short is not finished");
    }

    test_each_cipher! {
        fn swapped_chunks_are_corrupt(cipher) {
            let t = test_store_sealing(cipher);
            let (_, file) = sample(&t);
            let path = blob_path(&t, &file);
            let mut blob = std::fs::read(&path).unwrap();
            let (first, second) = blob.split_at_mut(sealed(1).start);
            first[sealed(0)].swap_with_slice(&mut second[..sealed(0).len()]);
            std::fs::write(&path, blob).unwrap();
            assert!(matches!(
                read(&t.store, &file, 0..4),
                Err(StorageError::Corrupt { chunk: 0, .. })
            ));
            assert!(matches!(
                read(&t.store, &file, u64::from(CHUNK)..u64::from(CHUNK) + 1),
                Err(StorageError::Corrupt { chunk: 1, .. })
            ));
        }
    }

    test_each_cipher! {
        fn a_truncated_blob_is_corrupt(cipher) {
            let t = test_store_sealing(cipher);
            let (bytes, file) = sample(&t);
            let blob = std::fs::OpenOptions::new()
                .write(true)
                .open(blob_path(&t, &file))
                .unwrap();
            let full = blob.metadata().unwrap().len();
            // One byte short: the tag of the last chunk is cut.
            blob.set_len(full - 1).unwrap();
            assert!(matches!(
                read(&t.store, &file, file.size - 1..file.size),
                Err(StorageError::Corrupt { chunk: 3, .. })
            ));
            // The whole last chunk gone, and part of the one before.
            blob.set_len(sealed(2).start as u64 + 5).unwrap();
            let pieces: Vec<_> = t.store.read_range(&file, 0..file.size).unwrap().collect();
            assert_eq!(pieces.len(), 3, "stops after the error");
            assert_eq!(pieces[1].as_ref().unwrap(), &bytes[16..32]);
            assert!(matches!(
                pieces[2],
                Err(StorageError::Corrupt { chunk: 2, .. })
            ));
        }
    }

    #[test]
    fn a_missing_blob_is_corrupt() {
        let t = test_store();
        let (_, file) = sample(&t);
        std::fs::remove_file(blob_path(&t, &file)).unwrap();
        assert!(matches!(
            t.store.read_range(&file, 20..30),
            Err(StorageError::Corrupt { chunk: 1, .. })
        ));
    }

    test_each_cipher! {
        fn an_open_reader_survives_the_blob_being_unlinked(cipher) {
            let t = test_store_sealing(cipher);
            let (bytes, file) = sample(&t);
            let mut reader = t.store.read_range(&file, 0..file.size).unwrap();
            assert_eq!(reader.next().unwrap().unwrap(), &bytes[..16]);
            std::fs::remove_file(blob_path(&t, &file)).unwrap();
            let rest: Vec<u8> = reader.flat_map(|piece| piece.unwrap()).collect();
            assert_eq!(rest, &bytes[16..]);
        }
    }

    test_each_cipher! {
        fn a_record_cut_short_is_corrupt(cipher) {
            let t = test_store_sealing(cipher);
            let (_, mut file) = sample(&t);
            // A record claiming fewer chunks makes chunk 2 "last": its seal disagrees.
            file.size = 3 * u64::from(CHUNK);
            assert!(matches!(
                read(&t.store, &file, 0..file.size),
                Err(StorageError::Corrupt { chunk: 2, .. })
            ));
        }
    }

    #[test]
    fn rejects_bad_ranges_and_records() {
        let t = test_store();
        let (_, mut file) = sample(&t);
        for (start, end) in [(0, 0), (5, 5), (6, 5), (0, file.size + 1)] {
            assert!(matches!(
                t.store.read_range(&file, start..end),
                Err(StorageError::BadRange { .. })
            ));
        }
        file.key_id ^= 1;
        assert!(matches!(
            t.store.read_range(&file, 0..1),
            Err(StorageError::UnknownKey { .. })
        ));
        file.key_id ^= 1;
        for chunk_size in [0, MAX_CHUNK_SIZE + 1] {
            file.chunk_size = chunk_size;
            assert!(matches!(
                t.store.read_range(&file, 0..1),
                Err(StorageError::Decode(_))
            ));
        }
    }
}
