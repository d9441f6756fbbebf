//! Chunk encryption: an AEAD in the STREAM construction, ChaCha20-Poly1305
//! or AES-256-GCM.
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
//! # Two ciphers
//!
//! Each file's record names the [`Cipher`] it was sealed with (see
//! [`super::cipher`] for the choice). AES-256-GCM
//! is several times faster than ChaCha20-Poly1305 on a CPU with AES and
//! carry-less multiply instructions, and several times slower (and harder
//! to make constant-time) without them, which is why TLS stacks pick by
//! hardware too: [`super::cipher::CipherChoice::Auto`] does the same for new files, at run
//! time ([`Cipher::for_this_cpu`]). Everything else is the same for both:
//! the nonce (7-byte prefix ‖ chunk index, big-endian u32 ‖ last flag, the
//! layout of `aead`'s `StreamBE32`, which seals the ChaCha20-Poly1305
//! files), the associated data, the 16-byte tag, the chunk layout. Only the
//! key differs: each cipher derives its own from a BLAKE3 context of its
//! own, so no key is ever used with two algorithms.
//!
//! ChaCha20-Poly1305 comes from RustCrypto's `chacha20poly1305` (the files
//! stored before AES-GCM arrived were sealed with it), AES-256-GCM from
//! `ring`, whose assembly runs two to six times as fast as RustCrypto's
//! `aes-gcm` here (see "Design notes" in the README for the figures).
//!
//! The sealed chunks of a file lie back to back, wherever they are kept (a
//! blob file, or the database for a small file): chunk `i` of a file sealed
//! in chunks of `c` plaintext bytes starts at `chunk_offset(i, c)` =
//! `i * (c + TAG_LEN)`, since every chunk but the last is exactly
//! `c + TAG_LEN` bytes, so a reader finds any chunk without an index.

use super::cipher::Cipher;
use super::records::FileId;
use chacha20poly1305::aead::stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20poly1305::aead::Buffer;
use chacha20poly1305::ChaCha20Poly1305;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

/// Bytes the authentication tag (Poly1305 or GHASH) adds to every sealed
/// chunk.
pub const TAG_LEN: usize = 16;

/// The key of one file, bound to that file's id and to one cipher.
///
/// Deliberately not `Debug`: key bytes must never reach a log line.
pub struct FileKey {
    key: CipherKey,
    file_id: FileId,
}

enum CipherKey {
    ChaCha20Poly1305([u8; 32]),
    /// Expanded once per file (the AES key schedule is not free), and
    /// boxed: the expanded key is several hundred bytes.
    Aes256Gcm(Box<LessSafeKey>),
}

/// A chunk could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Only possible for a chunk larger than the cipher can encrypt.
    #[error("could not seal chunk {index}")]
    Seal { index: u32 },
    /// The chunk was altered, moved, cut short, belongs to another file, or
    /// was sealed under another key or cipher.
    #[error("chunk {index} failed authentication")]
    Open { index: u32 },
}

/// The key for `file_id` under `cipher`: BLAKE3 in key derivation mode,
/// with the cipher's context, over the master key followed by the file id.
/// Callers go through
/// [`MasterKey::file_key`](super::master_key::MasterKey::file_key).
pub(super) fn derive_file_key(master_key: &[u8; 32], file_id: &FileId, cipher: Cipher) -> FileKey {
    let mut material = [0u8; 48];
    material[..32].copy_from_slice(master_key);
    material[32..].copy_from_slice(&file_id.0);
    let bytes = blake3::derive_key(cipher.key_context(), &material);
    let key = match cipher {
        Cipher::ChaCha20Poly1305 => CipherKey::ChaCha20Poly1305(bytes),
        Cipher::Aes256Gcm => CipherKey::Aes256Gcm(Box::new(LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &bytes).expect("AES-256-GCM takes 32-byte keys"),
        ))),
    };
    FileKey {
        key,
        file_id: *file_id,
    }
}

impl FileKey {
    /// The cipher this key is for.
    pub fn cipher(&self) -> Cipher {
        match self.key {
            CipherKey::ChaCha20Poly1305(_) => Cipher::ChaCha20Poly1305,
            CipherKey::Aes256Gcm(_) => Cipher::Aes256Gcm,
        }
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
    let aad = &key.file_id.0;
    match &key.key {
        CipherKey::ChaCha20Poly1305(bytes) => stream(bytes, nonce_prefix)
            .encrypt_in_place(index, last, aad, buf)
            .map_err(|_| CryptoError::Seal { index }),
        CipherKey::Aes256Gcm(aes) => {
            let nonce = Nonce::assume_unique_for_key(stream_nonce(nonce_prefix, index, last));
            let tag = aes
                .seal_in_place_separate_tag(nonce, Aad::from(aad), buf)
                .map_err(|_| CryptoError::Seal { index })?;
            buf.extend_from_slice(tag.as_ref());
            Ok(())
        }
    }
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
    let aad = &key.file_id.0;
    match &key.key {
        CipherKey::ChaCha20Poly1305(bytes) => stream(bytes, nonce_prefix)
            .decrypt_in_place(index, last, aad, buf)
            .map_err(|_| CryptoError::Open { index }),
        CipherKey::Aes256Gcm(aes) => {
            let sealed_len = buf.len();
            let plain_len = sealed_len
                .checked_sub(TAG_LEN)
                .ok_or(CryptoError::Open { index })?;
            let nonce = Nonce::assume_unique_for_key(stream_nonce(nonce_prefix, index, last));
            aes.open_in_place(nonce, Aad::from(aad), buf.as_mut())
                .map_err(|_| CryptoError::Open { index })?;
            buf.truncate(plain_len);
            Ok(())
        }
    }
}

/// Byte offset of chunk `index` among the sealed chunks of a file sealed in
/// chunks of `chunk_size` plaintext bytes (at most
/// [`MAX_CHUNK_SIZE`](super::records::MAX_CHUNK_SIZE), so this cannot overflow).
pub(super) fn chunk_offset(index: u32, chunk_size: u64) -> u64 {
    u64::from(index) * (chunk_size + TAG_LEN as u64)
}

fn stream(key: &[u8; 32], nonce_prefix: &[u8; 7]) -> StreamBE32<ChaCha20Poly1305> {
    StreamBE32::new(key.into(), nonce_prefix.into())
}

/// The 96-bit nonce of chunk `index`, laid out as `StreamBE32` lays it out:
/// prefix ‖ index (big-endian) ‖ 1 if last else 0.
fn stream_nonce(nonce_prefix: &[u8; 7], index: u32, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..7].copy_from_slice(nonce_prefix);
    nonce[7..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

#[cfg(test)]
mod tests {
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};

    use super::*;

    const PREFIX: [u8; 7] = [7, 6, 5, 4, 3, 2, 1];

    fn key_for(cipher: Cipher, master_byte: u8, id_byte: u8) -> FileKey {
        derive_file_key(&[master_byte; 32], &FileId([id_byte; 16]), cipher)
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
        for cipher in Cipher::ALL {
            let key = key_for(cipher, 1, 2);
            assert_eq!(key.cipher(), cipher);
            let plain: [&[u8]; 3] = [b"first chunk", b"second chunk", b"end"];
            let sealed = seal_all(&key, &plain);
            for (index, (mut buf, expected)) in sealed.into_iter().zip(plain).enumerate() {
                assert_eq!(buf.len(), expected.len() + TAG_LEN, "{cipher}");
                assert_ne!(&buf[..expected.len()], expected, "{cipher}");
                open_chunk(&key, &PREFIX, index as u32, index == 2, &mut buf).unwrap();
                assert_eq!(buf, expected, "{cipher}");
            }
        }
    }

    #[test]
    fn empty_chunk_round_trips() {
        for cipher in Cipher::ALL {
            let key = key_for(cipher, 1, 2);
            let mut buf = Vec::new();
            seal_chunk(&key, &PREFIX, 0, true, &mut buf).unwrap();
            assert_eq!(buf.len(), TAG_LEN, "{cipher}");
            open_chunk(&key, &PREFIX, 0, true, &mut buf).unwrap();
            assert!(buf.is_empty(), "{cipher}");
        }
    }

    #[test]
    fn tampered_byte_is_rejected() {
        for cipher in Cipher::ALL {
            let key = key_for(cipher, 1, 2);
            for position in [0, 3, 13, 14 + TAG_LEN - 1] {
                let mut sealed = seal_all(&key, &[b"attack at dawn"]);
                sealed[0][position] ^= 0x01;
                let result = open_chunk(&key, &PREFIX, 0, true, &mut sealed[0]);
                assert!(
                    matches!(result, Err(CryptoError::Open { index: 0 })),
                    "{cipher}, byte {position}"
                );
            }
        }
    }

    #[test]
    fn chunks_shorter_than_a_tag_are_rejected() {
        for cipher in Cipher::ALL {
            let key = key_for(cipher, 1, 2);
            for len in [0, 1, TAG_LEN - 1] {
                let mut buf = vec![0u8; len];
                let result = open_chunk(&key, &PREFIX, 0, true, &mut buf);
                assert!(result.is_err(), "{cipher}, {len} bytes");
            }
        }
    }

    #[test]
    fn truncated_stream_is_rejected() {
        for cipher in Cipher::ALL {
            let key = key_for(cipher, 1, 2);
            let mut sealed = seal_all(&key, &[b"one", b"two", b"three"]);
            // Drop the real last chunk: chunk 1 now claims to be the end.
            sealed.pop();
            assert!(
                open_chunk(&key, &PREFIX, 1, true, &mut sealed[1]).is_err(),
                "{cipher}"
            );
        }
    }

    #[test]
    fn reordered_chunks_are_rejected() {
        for cipher in Cipher::ALL {
            let key = key_for(cipher, 1, 2);
            let mut sealed = seal_all(&key, &[b"one", b"two", b"three"]);
            sealed.swap(0, 1);
            assert!(open_chunk(&key, &PREFIX, 0, false, &mut sealed[0]).is_err());
            assert!(open_chunk(&key, &PREFIX, 1, false, &mut sealed[1]).is_err());
        }
    }

    #[test]
    fn wrong_file_id_is_rejected() {
        for cipher in Cipher::ALL {
            let mut sealed = seal_all(&key_for(cipher, 1, 2), &[b"hello"]);
            let other_file = key_for(cipher, 1, 3);
            assert!(open_chunk(&other_file, &PREFIX, 0, true, &mut sealed[0]).is_err());
        }
    }

    #[test]
    fn wrong_master_key_is_rejected() {
        for cipher in Cipher::ALL {
            let mut sealed = seal_all(&key_for(cipher, 1, 2), &[b"hello"]);
            let other_master = key_for(cipher, 9, 2);
            assert!(open_chunk(&other_master, &PREFIX, 0, true, &mut sealed[0]).is_err());
        }
    }

    #[test]
    fn wrong_nonce_prefix_is_rejected() {
        for cipher in Cipher::ALL {
            let key = key_for(cipher, 1, 2);
            let mut sealed = seal_all(&key, &[b"hello"]);
            assert!(open_chunk(&key, &[0; 7], 0, true, &mut sealed[0]).is_err());
        }
    }

    #[test]
    fn a_chunk_never_opens_under_the_other_cipher() {
        for (sealer, opener) in [
            (Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm),
            (Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305),
        ] {
            let mut sealed = seal_all(&key_for(sealer, 1, 2), &[b"hello"]);
            let other = key_for(opener, 1, 2);
            assert!(open_chunk(&other, &PREFIX, 0, true, &mut sealed[0]).is_err());
        }
    }

    /// Each cipher has its own key, so no key is used with two algorithms.
    #[test]
    fn each_cipher_derives_its_own_key() {
        let bytes = |key: FileKey| match key.key {
            CipherKey::ChaCha20Poly1305(bytes) => bytes,
            CipherKey::Aes256Gcm(_) => unreachable!("expanded"),
        };
        let master = [1u8; 32];
        let id = FileId([2; 16]);
        let mut material = [0u8; 48];
        material[..32].copy_from_slice(&master);
        material[32..].copy_from_slice(&id.0);
        let chacha = bytes(derive_file_key(&master, &id, Cipher::ChaCha20Poly1305));
        // The ChaCha20-Poly1305 key is the one every existing file used.
        assert_eq!(
            chacha,
            blake3::derive_key("satchel 2026 file key v1", &material)
        );
        let aes = blake3::derive_key(Cipher::Aes256Gcm.key_context(), &material);
        assert_ne!(chacha, aes);
        // And the AES-GCM file key is that second one: a chunk sealed with
        // it by another implementation opens.
        let reference = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &aes).unwrap());
        let mut buf = b"hello".to_vec();
        let nonce = Nonce::assume_unique_for_key(stream_nonce(&PREFIX, 0, true));
        let tag = reference
            .seal_in_place_separate_tag(nonce, Aad::from(&id.0), &mut buf)
            .unwrap();
        buf.extend_from_slice(tag.as_ref());
        let key = derive_file_key(&master, &id, Cipher::Aes256Gcm);
        open_chunk(&key, &PREFIX, 0, true, &mut buf).unwrap();
        assert_eq!(buf, b"hello");
    }

    /// The AES-GCM nonces are laid out exactly as `StreamBE32` lays out the
    /// ChaCha20-Poly1305 ones: sealing with `stream_nonce` by hand gives
    /// the bytes the STREAM object gives.
    #[test]
    fn stream_nonce_is_the_stream_be32_nonce() {
        let key = [3u8; 32];
        let aad = [4u8; 16];
        for (index, last) in [(0, false), (0, true), (1, false), (0x0102_0304, true)] {
            let mut by_stream = b"some plaintext".to_vec();
            stream(&key, &PREFIX)
                .encrypt_in_place(index, last, &aad, &mut by_stream)
                .unwrap();
            let mut by_hand = b"some plaintext".to_vec();
            ChaCha20Poly1305::new(&key.into())
                .encrypt_in_place(
                    &stream_nonce(&PREFIX, index, last).into(),
                    &aad,
                    &mut by_hand,
                )
                .unwrap();
            assert_eq!(by_stream, by_hand, "index {index}, last {last}");
        }
    }
}
