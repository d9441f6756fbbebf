//! What of a user may reach the log.
//!
//! Logs travel further than the store: to log collectors, bug reports and
//! screenshots. Tokens, keys and file contents are never logged at all; a
//! user's JID is logged only when the operator asks for it
//! (`logging.show_jids`). Otherwise it appears as a pseudonym, a keyed hash
//! that still tells users apart within one run, so that one user's requests
//! can be followed through the log without saying who they are.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static SHOW_JIDS: AtomicBool = AtomicBool::new(false);

/// Set once at start from the configuration.
pub fn show_jids(show: bool) {
    SHOW_JIDS.store(show, Ordering::Relaxed);
}

/// A JID as the log may show it.
pub struct LoggedJid<'a>(pub &'a str);

impl fmt::Display for LoggedJid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if SHOW_JIDS.load(Ordering::Relaxed) {
            return f.write_str(self.0);
        }
        // Random per process: pseudonyms cannot be matched to JIDs offline.
        static KEY: OnceLock<[u8; 32]> = OnceLock::new();
        let key = KEY.get_or_init(rand::random);
        let hash = blake3::keyed_hash(key, self.0.as_bytes());
        write!(f, "user-{}", hex::encode(&hash.as_bytes()[..5]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jids_are_pseudonyms_unless_asked_for() {
        let alice = LoggedJid("alice@example.org").to_string();
        assert!(
            alice.starts_with("user-") && !alice.contains("alice"),
            "{alice}"
        );
        assert_eq!(
            alice,
            LoggedJid("alice@example.org").to_string(),
            "stable within a run"
        );
        assert_ne!(alice, LoggedJid("bob@example.org").to_string());
        show_jids(true);
        assert_eq!(
            LoggedJid("alice@example.org").to_string(),
            "alice@example.org"
        );
        show_jids(false);
    }
}
