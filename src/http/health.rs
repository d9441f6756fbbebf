//! `GET /health`: whether this instance can take uploads, for load
//! balancers and service monitors.
//!
//! 200 `ok` when the XMPP link is up and the store takes writes; otherwise
//! 503 with the reason in one line. The link counts because without it no
//! slot is granted, so no upload can start here; the store counts because
//! a full or read-only disk fails every upload that does start.
//!
//! The store is tried by writing, syncing and removing a small file, at
//! most once a second whoever asks: the answer in between is the last
//! one, so a stranger polling `/health` cannot make the disk busy.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use tracing::warn;

use super::state::HttpState;
use crate::storage::Store;

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
    fn writable(&self, store: &Store) -> Result<(), String> {
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

pub async fn health(State(state): State<HttpState>) -> Response {
    if !state.link.is_up() {
        return unhealthy("the XMPP link is down");
    }
    let (store, probe) = (state.store.clone(), state.store_probe.clone());
    match tokio::task::spawn_blocking(move || probe.writable(&store)).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, "no-store")],
            "ok\n",
        )
            .into_response(),
        Ok(Err(_)) => unhealthy("the store does not take writes"),
        Err(_) => unhealthy("the store check failed"),
    }
}

fn unhealthy(reason: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CACHE_CONTROL, "no-store")],
        format!("{reason}\n"),
    )
        .into_response()
}
