//! How often one user may ask for something: slots, relays.
//!
//! A slot request writes nothing (the slot is a sealed ticket), but it reads
//! the user's usage from the store, and over a quota lists their files; a
//! relay multiplies one stanza into up to `max_recipients` messages. Both
//! are cheap ways for a stranger to make Satchel work. A sliding window per
//! bare JID bounds that; the table of users is itself bounded, so a horde of
//! JIDs cannot grow it without limit.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Senders remembered at once; past this, the quietest ones are forgotten.
const MAX_TRACKED_SENDERS: usize = 100_000;

/// At most `per_window` requests per sender in any `window`.
pub struct RateLimiter {
    per_window: usize,
    window: Duration,
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    pub fn new(per_window: usize, window: Duration) -> RateLimiter {
        RateLimiter {
            per_window,
            window,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request from `sender`; false when it is over the limit
    /// (a refused request does not count).
    pub fn allow(&self, sender: &str, now: Instant) -> bool {
        self.allow_up_to(self.per_window, sender, now)
    }

    /// [`RateLimiter::allow`] with a limit of `per_window` for this request,
    /// for a limit a reload may change: a lower one refuses at once those
    /// already over it, a higher one lets them go on.
    pub fn allow_up_to(&self, per_window: usize, sender: &str, now: Instant) -> bool {
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent.len() >= MAX_TRACKED_SENDERS && !recent.contains_key(sender) {
            let window = self.window;
            recent.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let times = recent.entry(sender.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() >= per_window {
            return false;
        }
        times.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_up_to_the_limit_per_window() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.allow("alice@example.org", start));
        }
        assert!(!limiter.allow("alice@example.org", start + Duration::from_secs(59)));
        assert!(
            limiter.allow("bob@example.org", start),
            "limits are per sender"
        );
        assert!(limiter.allow("alice@example.org", start + Duration::from_secs(60)));
    }

    #[test]
    fn refusals_do_not_extend_the_window() {
        let limiter = RateLimiter::new(1, Duration::from_secs(10));
        let start = Instant::now();
        assert!(limiter.allow("a@x", start));
        for second in 1..10 {
            assert!(!limiter.allow("a@x", start + Duration::from_secs(second)));
        }
        assert!(limiter.allow("a@x", start + Duration::from_secs(10)));
    }
}
