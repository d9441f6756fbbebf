//! Leadership of a cluster: which instance holds the XMPP link.
//!
//! Every instance of a cluster serves HTTP, but exactly one may hold the
//! component link (Prosody refuses a second connection; ejabberd accepts it
//! and then hands each stanza, replies included, to either) and run garbage
//! collection. That one holds a lease in the shared database
//! ([`Store::lead`]), renewed every third of it; the others ask as often
//! and take over once a lease has run out, so a dead leader is replaced
//! within the lease plus one interval and a reconnection.
//!
//! Never two links at once: a leader that cannot renew (the database is
//! unreachable, or the lease was taken) drops its link no later than one
//! lease after the start of its last successful renewal, by its own
//! monotonic clock, while the database, which times the lease, grants it to
//! another no sooner than one lease after executing that renewal. A single
//! instance always leads.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::storage::Store;

/// Whether this instance may hold the link and run the leader's work; true
/// from the start for a single instance. `follow` keeps it up to date.
pub fn leadership(store: &Store) -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(store.leader_lease().is_none())
}

/// Follows the cluster's leadership for as long as Satchel runs, telling
/// `leading` when this instance gains or loses it. Returns at once for a
/// single instance.
pub async fn follow(store: Store, leading: watch::Sender<bool>) {
    let Some(lease) = store.leader_lease() else {
        return;
    };
    let interval = lease / 3;
    // When the last lease this instance holds runs out, by its own clock.
    let mut holds_until: Option<Instant> = None;
    // What the log last said, so that it says each change once.
    let mut announced = None;
    loop {
        let asked_at = Instant::now();
        let asking = tokio::task::spawn_blocking({
            let store = store.clone();
            move || store.lead()
        });
        // A database that hangs must not keep the link past the lease.
        match tokio::time::timeout(interval, asking).await {
            Ok(Ok(Ok(true))) => holds_until = Some(asked_at + lease),
            Ok(Ok(Ok(false))) => holds_until = None,
            Ok(Ok(Err(error))) => {
                warn!(%error, "cannot renew the leadership: the cluster's database failed")
            }
            Ok(Err(panicked)) => warn!(error = %panicked, "asking for the leadership failed"),
            Err(_) => {
                warn!(after = ?interval, "cannot renew the leadership: the cluster's database does not answer")
            }
        }
        let now = Instant::now();
        let leads = holds_until.is_some_and(|until| now < until);
        if announced != Some(leads) {
            if leads {
                info!("this instance now leads the cluster: it holds the XMPP link");
            } else {
                info!("this instance does not lead the cluster: another holds the XMPP link");
            }
            announced = Some(leads);
        }
        leading.send_if_modified(|current| std::mem::replace(current, leads) != leads);
        let next = match holds_until {
            // Wake up before the lease runs out, to drop the link in time if
            // the renewal fails.
            Some(until) if leads => (now + interval).min(until),
            _ => now + interval,
        };
        tokio::time::sleep_until(next.max(now + Duration::from_millis(10))).await;
    }
}
