//! Chunk encryption: ChaCha20-Poly1305 in the STREAM construction.
//!
//! Why STREAM rather than one AEAD call per file: a file is sealed as a
//! sequence of chunks, and each chunk's nonce holds the file's random prefix,
//! the chunk's index and a "last chunk" flag. That gives us three properties
//! the download path needs:
//!
//! * random access: any chunk opens on its own, so an HTTP Range request
//!   decrypts only the chunks it covers;
//! * order: a chunk moved to another index fails authentication;
//! * completeness: a file cut short fails, because the chunk that is now at
//!   the end was sealed without the "last" flag.
//!
//! Each file gets its own key, derived from the master key and the file id,
//! and the file id is also the associated data, so a chunk copied from one
//! file into another fails too. Nothing here touches the disk.
//!
//! The sealed chunks of a file lie back to back, wherever they are kept (a
//! blob file, or the database for a small file): chunk `i` of a file sealed
//! in chunks of `c` plaintext bytes starts at `chunk_offset(i, c)` =
//! `i * (c + TAG_LEN)`, since every chunk but the last is exactly
//! `c + TAG_LEN` bytes, so a reader finds any chunk without an index.

use chacha20poly1305::aead::stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20poly1305::aead::Buffer;
use chacha20poly1305::ChaCha20Poly1305;

use super::records::FileId;

/// Bytes the Poly1305 tag adds to every sealed chunk.
pub const TAG_LEN: usize = 16;

/// BLAKE3 `derive_key` context; changing it changes every file key.
const FILE_KEY_CONTEXT: &str = "satchel 2026 file key v1";

/// The key of one file, bound to that file's id.
///
/// Deliberately not `Debug`: key bytes must never reach a log line.
pub struct FileKey {
    key: [u8; 32],
    file_id: FileId,
}

/// A chunk could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Only possible for a chunk larger than ChaCha20 can encrypt.
    #[error("could not seal chunk {index}")]
    Seal { index: u32 },
    /// The chunk was altered, moved, cut short, belongs to another file, or
    /// was sealed under another key.
    #[error("chunk {index} failed authentication")]
    Open { index: u32 },
}

/// The key for `file_id`: BLAKE3 in key derivation mode over the master key
/// followed by the file id. Callers go through
/// [`MasterKey::file_key`](super::master_key::MasterKey::file_key).
pub(super) fn derive_file_key(master_key: &[u8; 32], file_id: &FileId) -> FileKey {
    let mut material = [0u8; 48];
    material[..32].copy_from_slice(master_key);
    material[32..].copy_from_slice(&file_id.0);
    FileKey {
        key: blake3::derive_key(FILE_KEY_CONTEXT, &material),
        file_id: *file_id,
    }
}

/// Encrypts the plaintext in `buf` as chunk `index` of the file, in place,
/// appending the [`TAG_LEN`]-byte tag. `last` must be true for the final
/// chunk of the file and only for it.
pub fn seal_chunk(
    key: &FileKey,
    nonce_prefix: &[u8; 7],
    index: u32,
    last: bool,
    buf: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    stream(key, nonce_prefix)
        .encrypt_in_place(index, last, &key.file_id.0, buf)
        .map_err(|_| CryptoError::Seal { index })
}

/// Decrypts chunk `index` in `buf` in place, removing the tag. On failure
/// `buf` must be discarded: its bytes are not authentic.
pub fn open_chunk(
    key: &FileKey,
    nonce_prefix: &[u8; 7],
    index: u32,
    last: bool,
    buf: &mut impl Buffer,
) -> Result<(), CryptoError> {
    stream(key, nonce_prefix)
        .decrypt_in_place(index, last, &key.file_id.0, buf)
        .map_err(|_| CryptoError::Open { index })
}

/// Byte offset of chunk `index` among the sealed chunks of a file sealed in
/// chunks of `chunk_size` plaintext bytes (at most
/// [`MAX_CHUNK_SIZE`](super::records::MAX_CHUNK_SIZE), so this cannot overflow).
pub(super) fn chunk_offset(index: u32, chunk_size: u64) -> u64 {
    u64::from(index) * (chunk_size + TAG_LEN as u64)
}

fn stream(key: &FileKey, nonce_prefix: &[u8; 7]) -> StreamBE32<ChaCha20Poly1305> {
    StreamBE32::new(&key.key.into(), nonce_prefix.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: [u8; 7] = [7, 6, 5, 4, 3, 2, 1];

    fn key_for(master_byte: u8, id_byte: u8) -> FileKey {
        derive_file_key(&[master_byte; 32], &FileId([id_byte; 16]))
    }

    /// Seals `chunks` as one file, marking the final one as last.
    fn seal_all(key: &FileKey, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        chunks
            .iter()
            .enumerate()
            .map(|(index, plain)| {
                let mut buf = plain.to_vec();
                let last = index + 1 == chunks.len();
                seal_chunk(key, &PREFIX, index as u32, last, &mut buf).unwrap();
                buf
            })
            .collect()
    }

    #[test]
    fn round_trip() {
        let key = key_for(1, 2);
        let plain: [&[u8]; 3] = [b"first chunk", b"second chunk", b"end"];
        let sealed = seal_all(&key, &plain);
        for (index, (mut buf, expected)) in sealed.into_iter().zip(plain).enumerate() {
            assert_eq!(buf.len(), expected.len() + TAG_LEN);
            assert_ne!(&buf[..expected.len()], expected);
            open_chunk(&key, &PREFIX, index as u32, index == 2, &mut buf).unwrap();
            assert_eq!(buf, expected);
        }
    }

    #[test]
    fn empty_chunk_round_trips() {
        let key = key_for(1, 2);
        let mut buf = Vec::new();
        seal_chunk(&key, &PREFIX, 0, true, &mut buf).unwrap();
        assert_eq!(buf.len(), TAG_LEN);
        open_chunk(&key, &PREFIX, 0, true, &mut buf).unwrap();
        assert!(buf.is_empty());
    }

    #[test]
    fn tampered_byte_is_rejected() {
        let key = key_for(1, 2);
        let mut sealed = seal_all(&key, &[b"attack at dawn"]);
        sealed[0][3] ^= 0x01;
        let result = open_chunk(&key, &PREFIX, 0, true, &mut sealed[0]);
        assert!(matches!(result, Err(CryptoError::Open { index: 0 })));
    }

    #[test]
    fn truncated_stream_is_rejected() {
        let key = key_for(1, 2);
        let mut sealed = seal_all(&key, &[b"one", b"two", b"three"]);
        // Drop the real last chunk: chunk 1 now claims to be the end.
        sealed.pop();
        assert!(open_chunk(&key, &PREFIX, 1, true, &mut sealed[1]).is_err());
    }

    #[test]
    fn reordered_chunks_are_rejected() {
        let key = key_for(1, 2);
        let mut sealed = seal_all(&key, &[b"one", b"two", b"three"]);
        sealed.swap(0, 1);
        assert!(open_chunk(&key, &PREFIX, 0, false, &mut sealed[0]).is_err());
        assert!(open_chunk(&key, &PREFIX, 1, false, &mut sealed[1]).is_err());
    }

    #[test]
    fn wrong_file_id_is_rejected() {
        let mut sealed = seal_all(&key_for(1, 2), &[b"hello"]);
        let other_file = key_for(1, 3);
        assert!(open_chunk(&other_file, &PREFIX, 0, true, &mut sealed[0]).is_err());
    }

    #[test]
    fn wrong_master_key_is_rejected() {
        let mut sealed = seal_all(&key_for(1, 2), &[b"hello"]);
        let other_master = key_for(9, 2);
        assert!(open_chunk(&other_master, &PREFIX, 0, true, &mut sealed[0]).is_err());
    }

    #[test]
    fn wrong_nonce_prefix_is_rejected() {
        let key = key_for(1, 2);
        let mut sealed = seal_all(&key, &[b"hello"]);
        assert!(open_chunk(&key, &[0; 7], 0, true, &mut sealed[0]).is_err());
    }
}
