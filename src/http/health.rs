//! `GET /health`: whether this instance can take uploads, for load
//! balancers and service monitors.
//!
//! 200 `ok` when the XMPP link is up and the store takes writes; otherwise
//! 503 with the reason in one line. The link counts because without it no
//! slot is granted, so no upload can start here; the store counts because
//! a full or read-only disk fails every upload that does start. In a
//! cluster only the leader holds the link: the others take uploads without
//! one, into slots the leader granted, so for them the store alone counts.
//!
//! The store is tried by writing, syncing and removing a small file, at
//! most once a second whoever asks: the answer in between is the last
//! one ([`StoreProbe`](super::state::StoreProbe)), so a stranger polling
//! `/health` cannot make the disk busy.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};

use super::state::HttpState;

pub async fn health(State(state): State<HttpState>) -> Response {
    if *state.leading.borrow() && !state.link.is_up() {
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
