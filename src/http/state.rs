//! What the HTTP handlers share: the store, the slots' redeemer, the cap on
//! uploads in flight, the settings of the responses, and what `/health`
//! reads.
//!
//! Kept apart from the routes so that the handlers and the router that names
//! them both build on it, rather than on each other.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{HeaderValue, StatusCode};
use tokio::sync::{watch, Semaphore};
use tracing::warn;

use super::error::HttpError;
use crate::config::Config;
use crate::slots::redeem::Redeemer;
use crate::storage::downloads::DownloadTracker;
use crate::storage::{StorageError, Store};
use crate::xmpp::link_state::LinkState;

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub(super) store: Store,
    /// One per upload in flight.
    pub(super) upload_permits: Arc<Semaphore>,
    max_concurrent_uploads: usize,
    /// How long a body may go without a byte before the upload is dropped.
    pub(super) body_idle_timeout: Duration,
    pub(super) cache_control: HeaderValue,
    /// Counts recipients' downloads when relayed files go once downloaded.
    pub(super) downloads: Option<DownloadTracker>,
    /// Checks each PUT against the slot its URL seals.
    pub(super) redeemer: Redeemer,
    /// Whether the XMPP link is up, and the last try of the store (`/health`).
    pub(super) link: LinkState,
    /// Whether this instance leads its cluster (always, alone): a follower
    /// holds no link and needs none to take uploads.
    pub(super) leading: watch::Receiver<bool>,
    pub(super) store_probe: StoreProbe,
}

impl HttpState {
    /// `redeemer` checks PUTs against the slots granted over XMPP
    /// ([`crate::slots::SlotService::redeemer`]); `link` is the state of
    /// that link.
    pub fn new(
        config: &Config,
        store: Store,
        downloads: Option<DownloadTracker>,
        redeemer: Redeemer,
        link: LinkState,
        leading: watch::Receiver<bool>,
    ) -> HttpState {
        let cache_control = format!(
            "public, max-age={}, immutable",
            config.http.cache_max_age.as_secs()
        );
        HttpState {
            redeemer,
            store,
            upload_permits: Arc::new(Semaphore::new(config.http.max_concurrent_uploads)),
            max_concurrent_uploads: config.http.max_concurrent_uploads,
            body_idle_timeout: config.http.body_idle_timeout,
            cache_control: HeaderValue::from_str(&cache_control)
                .expect("digits and ASCII are a valid header value"),
            downloads,
            link,
            leading,
            store_probe: StoreProbe::default(),
        }
    }

    /// Waits until no upload is in flight, at most `grace`; true if none is left.
    pub async fn uploads_finished(&self, grace: Duration) -> bool {
        let all = u32::try_from(self.max_concurrent_uploads).unwrap_or(u32::MAX);
        // Holding every permit also keeps new uploads out.
        tokio::time::timeout(grace, self.upload_permits.acquire_many(all))
            .await
            .is_ok_and(|permits| permits.map(|p| p.forget()).is_ok())
    }

    /// Runs a store call on the blocking pool (sled blocks) and maps its failure.
    pub(super) async fn blocking<T, F>(&self, call: F) -> Result<T, HttpError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StorageError> + Send + 'static,
    {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || call(&store)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                warn!(%error, "storage call failed");
                Err(HttpError::from(&error))
            }
            Err(_) => Err(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage task failed",
            )),
        }
    }
}

/// How long one try of the store stands for.
const PROBE_MAX_AGE: Duration = Duration::from_secs(1);

/// When the store was last tried, and what that found.
type LastTry = Option<(Instant, Result<(), String>)>;

/// The last try of the store, shared by every request.
#[derive(Clone, Default)]
pub struct StoreProbe {
    last: Arc<Mutex<LastTry>>,
}

impl StoreProbe {
    /// Whether the store takes writes, tried again if the last try is
    /// older than [`PROBE_MAX_AGE`]. Blocks (it writes to the disk).
    pub(super) fn writable(&self, store: &Store) -> Result<(), String> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((tried, outcome)) = &*last {
            if tried.elapsed() < PROBE_MAX_AGE {
                return outcome.clone();
            }
        }
        let outcome = store.check_writable().map_err(|error| error.to_string());
        if let Err(error) = &outcome {
            warn!(%error, "health check: the store does not take writes");
        }
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }
}
