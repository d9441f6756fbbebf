//! The AEADs a file may be sealed with, and the choice for new files.
//!
//! Kept apart from [`super::crypto`], which seals and opens chunks, because
//! a file record names its cipher: the records below the crypto need the
//! name, not the machinery.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The AEAD a file is sealed with.
///
/// The order of the variants is their encoding in a file record
/// (`records`): add new ones at the end, never reorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cipher {
    /// ChaCha20-Poly1305: fast everywhere in software, and constant-time
    /// without special instructions. Every file sealed before the record
    /// named its cipher is sealed with this one.
    ChaCha20Poly1305,
    /// AES-256-GCM: the fastest where the CPU has AES and carry-less
    /// multiply instructions.
    Aes256Gcm,
}

impl Cipher {
    /// Both ciphers, in encoding order.
    pub const ALL: [Cipher; 2] = [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm];

    /// The name the configuration and the log use.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
            Cipher::Aes256Gcm => "aes-256-gcm",
        }
    }

    /// BLAKE3 `derive_key` context of this cipher's file keys; changing one
    /// changes every file key of that cipher.
    pub(super) fn key_context(self) -> &'static str {
        match self {
            Cipher::ChaCha20Poly1305 => "satchel 2026 file key v1",
            Cipher::Aes256Gcm => "satchel 2026 file key v1 aes-256-gcm",
        }
    }

    /// The cipher for new files on this CPU, and why: AES-256-GCM if it has
    /// AES and carry-less multiply instructions, ChaCha20-Poly1305 if not.
    pub fn for_this_cpu() -> (Cipher, &'static str) {
        if cpu_has_aes_and_clmul() {
            (
                Cipher::Aes256Gcm,
                "the CPU has AES and carry-less multiply instructions",
            )
        } else {
            (
                Cipher::ChaCha20Poly1305,
                "the CPU lacks AES or carry-less multiply instructions",
            )
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_aes_and_clmul() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
}

/// On aarch64 the ARMv8 Cryptography Extensions bring AESE/AESD and PMULL
/// (the carry-less multiply GHASH needs).
#[cfg(target_arch = "aarch64")]
fn cpu_has_aes_and_clmul() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("pmull")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn cpu_has_aes_and_clmul() -> bool {
    false
}

/// What the operator asks new files to be sealed with
/// (`[storage] cipher`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CipherChoice {
    /// [`Cipher::for_this_cpu`].
    #[default]
    Auto,
    /// This one, whatever the CPU.
    Pinned(Cipher),
}

impl CipherChoice {
    /// The cipher for new files, and why it was chosen.
    pub fn resolve(self) -> (Cipher, &'static str) {
        match self {
            CipherChoice::Auto => Cipher::for_this_cpu(),
            CipherChoice::Pinned(cipher) => (cipher, "the configuration pins it"),
        }
    }
}

/// A cipher name was none of `auto`, `chacha20-poly1305`, `aes-256-gcm`.
#[derive(Debug, thiserror::Error)]
#[error("not a cipher: write \"auto\", \"chacha20-poly1305\" or \"aes-256-gcm\"")]
pub struct UnknownCipher;

impl FromStr for CipherChoice {
    type Err = UnknownCipher;

    fn from_str(s: &str) -> Result<CipherChoice, UnknownCipher> {
        if s == "auto" {
            return Ok(CipherChoice::Auto);
        }
        Cipher::ALL
            .into_iter()
            .find(|cipher| cipher.name() == s)
            .map(CipherChoice::Pinned)
            .ok_or(UnknownCipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_choices_parse() {
        assert_eq!("auto".parse::<CipherChoice>().unwrap(), CipherChoice::Auto);
        for cipher in Cipher::ALL {
            assert_eq!(
                cipher.name().parse::<CipherChoice>().unwrap(),
                CipherChoice::Pinned(cipher)
            );
            assert_eq!(CipherChoice::Pinned(cipher).resolve().0, cipher);
        }
        for bad in ["", "AUTO", "aes", "aes-128-gcm", "chacha20poly1305 "] {
            assert!(bad.parse::<CipherChoice>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn auto_follows_the_cpu() {
        let (cipher, reason) = CipherChoice::Auto.resolve();
        let expected = if cpu_has_aes_and_clmul() {
            Cipher::Aes256Gcm
        } else {
            Cipher::ChaCha20Poly1305
        };
        assert_eq!(cipher, expected, "{reason}");
    }
}
