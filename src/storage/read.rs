//! Reading a byte range of a file, one authenticated chunk at a time.
//!
//! The reader fetches and opens only the chunks the range covers, and yields
//! a chunk's bytes only after its tag checked out: a download may stop early
//! with `Corrupt`, but it never carries a byte that was altered on disk.

use bytes::Bytes;

use super::crypto::{derive_file_key, open_chunk, FileKey};
use super::records::{FileId, FileRecord};
use super::store::{chunk_key, Store};
use super::StorageError;

/// The plaintext of a range, chunk by chunk; see [`Store::read_range`].
///
/// After the first error it yields nothing more.
pub struct RangeReader {
    chunks: sled::Tree,
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
        if chunk_size == 0 {
            return Err(undecodable());
        }
        // The last chunk always exists, even for an empty file.
        let last_index = file.size.saturating_sub(1) / chunk_size;
        let first_index = range.start / chunk_size;
        Ok(RangeReader {
            chunks: store.inner.trees.chunks.clone(),
            file: file.id,
            key: derive_file_key(&store.inner.master_key, &file.id),
            nonce_prefix: file.nonce_prefix,
            chunk_size,
            file_size: file.size,
            last_index: u32::try_from(last_index).map_err(|_| undecodable())?,
            next_index: u32::try_from(first_index).map_err(|_| undecodable())?,
            skip: range.start % chunk_size,
            remaining: range.end - range.start,
        })
    }

    /// Fetches and opens chunk `index`, checking it has the length the
    /// record promises.
    fn open(&self, index: u32) -> Result<Bytes, StorageError> {
        let corrupt = || StorageError::Corrupt {
            file: self.file,
            chunk: index,
        };
        let sealed = self
            .chunks
            .get(chunk_key(&self.file, index))?
            .ok_or_else(corrupt)?;
        let mut plain = sealed.to_vec();
        let last = index == self.last_index;
        open_chunk(&self.key, &self.nonce_prefix, index, last, &mut plain)
            .map_err(|_| corrupt())?;
        let expected_len = if last {
            self.file_size - u64::from(index) * self.chunk_size
        } else {
            self.chunk_size
        };
        if plain.len() as u64 != expected_len {
            return Err(corrupt());
        }
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

    fn tamper(t: &TestStore, file: &FileRecord, index: u32) {
        let chunks = &t.store.inner.trees.chunks;
        let key = chunk_key(&file.id, index);
        let mut sealed = chunks.get(key).unwrap().unwrap().to_vec();
        sealed[0] ^= 0x80;
        chunks.insert(key, sealed).unwrap();
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
    fn missing_or_swapped_chunks_are_corrupt() {
        let t = test_store();
        let (_, file) = sample(&t);
        let chunks = &t.store.inner.trees.chunks;
        let first = chunks.get(chunk_key(&file.id, 0)).unwrap().unwrap();
        let second = chunks.get(chunk_key(&file.id, 1)).unwrap().unwrap();
        chunks.insert(chunk_key(&file.id, 0), second).unwrap();
        chunks.insert(chunk_key(&file.id, 1), first).unwrap();
        assert!(matches!(
            read(&t.store, &file, 0..4),
            Err(StorageError::Corrupt { chunk: 0, .. })
        ));

        chunks.remove(chunk_key(&file.id, 3)).unwrap();
        assert!(matches!(
            read(&t.store, &file, file.size - 1..file.size),
            Err(StorageError::Corrupt { chunk: 3, .. })
        ));
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
        file.chunk_size = 0;
        assert!(matches!(
            t.store.read_range(&file, 0..1),
            Err(StorageError::Decode(_))
        ));
    }
}
