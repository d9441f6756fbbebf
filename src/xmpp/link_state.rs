//! Whether the link to the XMPP server is up, and since when.
//!
//! Several parts need the answer and none of them owns the link:
//! `admin/stats` shows the uptime, `GET /health` answers 503 while the link
//! is down (a load balancer then sends uploads elsewhere: no slot could be
//! granted for them anyway), and the metrics export it with the count of
//! reconnections. The service sets it as the link comes and goes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::metrics::metrics;

/// The link's state; clones share it.
#[derive(Clone, Debug, Default)]
pub struct LinkState {
    history: Arc<Mutex<History>>,
}

#[derive(Debug, Default)]
struct History {
    up_since: Option<Instant>,
    ever_up: bool,
}

impl LinkState {
    /// The link came up (`true`) or went down; up again while up changes
    /// nothing.
    pub fn set(&self, up: bool) {
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        if up && history.ever_up && history.up_since.is_none() {
            metrics().xmpp_reconnects.inc();
        }
        history.ever_up |= up;
        history.up_since = match (up, history.up_since) {
            (true, Some(since)) => Some(since),
            (true, None) => Some(Instant::now()),
            (false, _) => None,
        };
        metrics().xmpp_link_up.set(i64::from(up));
    }

    /// When the link came up, if it is up.
    pub fn up_since(&self) -> Option<Instant> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .up_since
    }

    pub fn is_up(&self) -> bool {
        self.up_since().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_follows_the_link() {
        let link = LinkState::default();
        assert!(!link.is_up());
        link.set(true);
        let since = link.up_since().expect("up");
        link.set(true);
        assert_eq!(link.up_since(), Some(since), "still the same link");
        link.set(false);
        assert!(!link.is_up());
        let copy = link.clone();
        link.set(true);
        assert!(copy.is_up(), "clones share the state");
    }
}
