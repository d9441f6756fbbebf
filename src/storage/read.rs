//! Reading a byte range of a file, one authenticated chunk at a time.
//!
//! The reader reads (with positioned reads on the file's blob, opened once)
//! and opens only the chunks the range covers, and yields a chunk's bytes
//! only after its tag checked out: a download may stop early with `Corrupt`,
//! but it never carries a byte that was altered on disk. A blob that is
//! missing or too short is `Corrupt` too.
//!
//! The open handle keeps the blob readable even if garbage collection
//! unlinks it meanwhile.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use super::blob::chunk_offset;
use super::crypto::{derive_file_key, open_chunk, FileKey, TAG_LEN};
use super::master_key::MasterKey;
use super::records::{FileId, FileRecord};
use super::store::{Store, MAX_CHUNK_SIZE};
use super::{io_error, StorageError};

/// The plaintext of a range, chunk by chunk; see [`Store::read_range`].
///
/// After the first error it yields nothing more.
pub struct RangeReader {
    blob: File,
    file: FileId,
    key: FileKey,
    nonce_prefix: [u8; 7],
    chunk_size: u64,
    file_size: u64,
    last_index: u32,
    next_index: u32,
    /// Bytes to drop from the front of the next chunk.
    skip: u64,
    /// Bytes of the range not yet yielded.
    remaining: u64,
}

impl RangeReader {
    /// `range` was checked to be non-empty and within the file.
    pub(super) fn new(
        store: &Store,
        master_key: &MasterKey,
        file: &FileRecord,
        range: std::ops::Range<u64>,
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
        let blob = store.inner.blobs.open_final(&file.id).map_err(|err| {
            if err.kind() == io::ErrorKind::NotFound {
                StorageError::Corrupt {
                    file: file.id,
                    chunk: first_index,
                }
            } else {
                let path = store.inner.blobs.final_path(&file.id);
                io_error(format!("opening {}", path.display()), err)
            }
        })?;
        Ok(RangeReader {
            blob,
            file: file.id,
            key: derive_file_key(master_key, &file.id),
            nonce_prefix: file.nonce_prefix,
            chunk_size,
            file_size: file.size,
            last_index,
            next_index: first_index,
            skip: range.start % chunk_size,
            remaining: range.end - range.start,
        })
    }

    /// Reads and opens chunk `index`, of the length the record promises.
    fn open(&self, index: u32) -> Result<Bytes, StorageError> {
        let corrupt = || StorageError::Corrupt {
            file: self.file,
            chunk: index,
        };
        let last = index == self.last_index;
        let expected_len = if last {
            self.file_size - u64::from(index) * self.chunk_size
        } else {
            self.chunk_size
        };
        // At most MAX_CHUNK_SIZE plus the tag, checked in `new`.
        let mut plain = vec![0u8; expected_len as usize + TAG_LEN];
        let offset = chunk_offset(index, self.chunk_size);
        self.blob
            .read_exact_at(&mut plain, offset)
            .map_err(|err| match err.kind() {
                io::ErrorKind::UnexpectedEof => corrupt(),
                _ => io_error(format!("reading the blob of file {}", self.file), err),
            })?;
        open_chunk(&self.key, &self.nonce_prefix, index, last, &mut plain)
            .map_err(|_| corrupt())?;
        Ok(Bytes::from(plain))
    }
}

impl Iterator for RangeReader {
    type Item = Result<Bytes, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let plain = match self.open(self.next_index) {
            Ok(plain) => plain,
            Err(err) => {
                self.remaining = 0;
                return Some(Err(err));
            }
        };
        // Both fit in the chunk: `open` checked its length against the file
        // size, and the range lies within the file.
        let start = self.skip as usize;
        let end = (self.skip + self.remaining).min(plain.len() as u64) as usize;
        let piece = plain.slice(start..end);
        self.remaining -= piece.len() as u64;
        self.skip = 0;
        self.next_index = self.next_index.wrapping_add(1);
        Some(Ok(piece))
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::test_support::*;
    use super::*;

    /// A file of 3½ chunks.
    fn sample(t: &TestStore) -> (Vec<u8>, FileRecord) {
        let bytes = data(3 * CHUNK as usize + CHUNK as usize / 2);
        let slot = slot_for("juliet@example.org", bytes.len() as u64);
        let file = upload(&t.store, &slot, &bytes, NOW + 60);
        (bytes, file)
    }

    fn blob_path(t: &TestStore, file: &FileRecord) -> std::path::PathBuf {
        t.store.inner.blobs.final_path(&file.id)
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

    #[test]
    fn every_range_reads_exactly_its_bytes() {
        let t = test_store();
        let (bytes, file) = sample(&t);
        let size = bytes.len() as u64;
        for start in 0..size {
            for end in start + 1..=size {
                let got = read(&t.store, &file, start..end).unwrap();
                assert_eq!(got, &bytes[start as usize..end as usize], "{start}..{end}");
            }
        }
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

    #[test]
    fn reads_only_the_chunks_it_needs() {
        let t = test_store();
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

    #[test]
    fn tampered_chunk_is_never_served() {
        let t = test_store();
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

    #[test]
    fn swapped_chunks_are_corrupt() {
        let t = test_store();
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

    #[test]
    fn a_truncated_blob_is_corrupt() {
        let t = test_store();
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

    #[test]
    fn an_open_reader_survives_the_blob_being_unlinked() {
        let t = test_store();
        let (bytes, file) = sample(&t);
        let mut reader = t.store.read_range(&file, 0..file.size).unwrap();
        assert_eq!(reader.next().unwrap().unwrap(), &bytes[..16]);
        std::fs::remove_file(blob_path(&t, &file)).unwrap();
        let rest: Vec<u8> = reader.flat_map(|piece| piece.unwrap()).collect();
        assert_eq!(rest, &bytes[16..]);
    }

    #[test]
    fn a_record_cut_short_is_corrupt() {
        let t = test_store();
        let (_, mut file) = sample(&t);
        // A record claiming fewer chunks makes chunk 2 "last": its seal disagrees.
        file.size = 3 * u64::from(CHUNK);
        assert!(matches!(
            read(&t.store, &file, 0..file.size),
            Err(StorageError::Corrupt { chunk: 2, .. })
        ));
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
