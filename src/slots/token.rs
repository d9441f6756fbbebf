//! The secret in a PUT URL.
//!
//! Many clients drop the headers a slot comes with, so the URL alone has to
//! authorise the upload. The token is 256 random bits; only its BLAKE3 hash is
//! stored, next to the slot it is bound to (uploader, size, content type,
//! expiry), so a leaked database does not leak usable PUT URLs. Comparison runs
//! in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;

/// Length of a token as it appears in the URL (base64url of 32 bytes).
pub const TOKEN_LEN: usize = 43;

/// A freshly minted upload token.
pub struct UploadToken {
    /// The URL-safe text handed to the client.
    pub text: String,
    /// What the store keeps.
    pub hash: [u8; 32],
}

impl UploadToken {
    pub fn generate() -> UploadToken {
        let secret: [u8; 32] = rand::random();
        let text = URL_SAFE_NO_PAD.encode(secret);
        let hash = hash_token(&text);
        UploadToken { text, hash }
    }
}

fn hash_token(text: &str) -> [u8; 32] {
    *blake3::hash(text.as_bytes()).as_bytes()
}

/// Whether `presented` is the token whose hash is `expected_hash`.
///
/// Hashing first makes the comparison independent of the presented length, and
/// `ct_eq` keeps it independent of where the first differing byte is.
pub fn token_matches(presented: &str, expected_hash: &[u8; 32]) -> bool {
    if presented.len() != TOKEN_LEN {
        return false;
    }
    hash_token(presented).ct_eq(expected_hash).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_its_own_hash() {
        let token = UploadToken::generate();
        assert_eq!(token.text.len(), TOKEN_LEN);
        assert!(token_matches(&token.text, &token.hash));
    }

    #[test]
    fn tokens_are_unique_and_url_safe() {
        let tokens: std::collections::HashSet<String> =
            (0..1000).map(|_| UploadToken::generate().text).collect();
        assert_eq!(tokens.len(), 1000);
        assert!(tokens.iter().all(|t| t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')));
    }

    #[test]
    fn other_tokens_and_garbage_do_not_match() {
        let token = UploadToken::generate();
        let other = UploadToken::generate();
        assert!(!token_matches(&other.text, &token.hash));
        let mut flipped = token.text.clone().into_bytes();
        flipped[TOKEN_LEN - 1] = if flipped[TOKEN_LEN - 1] == b'A' {
            b'B'
        } else {
            b'A'
        };
        assert!(!token_matches(
            std::str::from_utf8(&flipped).unwrap(),
            &token.hash
        ));
        for garbage in [
            "",
            "x",
            &token.text[..42],
            &format!("{}x", token.text),
            "\0\u{202e}",
        ] {
            assert!(!token_matches(garbage, &token.hash));
        }
    }
}
