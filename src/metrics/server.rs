//! The metrics listener: `GET /metrics` on an address of its own
//! (`[metrics] listen`), never on the public HTTP port, so that what the
//! monitoring sees (how much is stored, how busy the service is) is not
//! shown to every stranger who can reach an upload URL.
//!
//! Each scrape takes a [`Snapshot`] of what is stored on a blocking thread
//! (it reads the store and the relay outbox) and writes every series. A
//! scrape that cannot read the store answers 503, so that Prometheus marks
//! the target down rather than recording made-up figures.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, StatusCode};
use tokio::net::TcpListener;
use tracing::warn;

use super::{metrics, Snapshot};

/// Reads what is stored; blocks (the store does).
pub type SnapshotSource = Arc<dyn Fn() -> Result<Snapshot, String> + Send + Sync>;

/// The content type of the OpenMetrics text format, which `prometheus-client` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds the metrics address (before Satchel reports itself started).
pub async fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Serves `/metrics` on `listener` for as long as Satchel runs.
pub async fn serve(listener: TcpListener, snapshot: SnapshotSource) {
    if let Err(error) = axum::serve(listener, router(snapshot)).await {
        warn!(%error, "the metrics listener stopped");
    }
}

fn router(snapshot: SnapshotSource) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(snapshot)
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: the metrics are at /metrics\n",
            )
        })
}

async fn scrape(State(snapshot): State<SnapshotSource>) -> Response {
    match tokio::task::spawn_blocking(move || snapshot()).await {
        Ok(Ok(snapshot)) => (
            [(header::CONTENT_TYPE, OPENMETRICS)],
            metrics().encode(&snapshot),
        )
            .into_response(),
        Ok(Err(cause)) => {
            warn!(%cause, "metrics scrape failed: cannot read the store");
            (StatusCode::SERVICE_UNAVAILABLE, "cannot read the store\n").into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "scrape failed\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get_text(snapshot: SnapshotSource, path: &str) -> (StatusCode, String, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = router(snapshot).oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_scrape_shows_the_snapshot_in_the_openmetrics_format() {
        let source: SnapshotSource = Arc::new(|| {
            Ok(Snapshot {
                relays_pending: 7,
                ..Snapshot::default()
            })
        });
        let (status, content_type, text) = get_text(source, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(text.contains("\nsatchel_relays_pending 7\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn a_store_that_cannot_be_read_fails_the_scrape() {
        let source: SnapshotSource = Arc::new(|| Err("disk gone".to_owned()));
        let (status, _, text) = get_text(source, "/metrics").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!text.contains("satchel_"));
    }

    #[tokio::test]
    async fn other_paths_are_not_found() {
        let source: SnapshotSource = Arc::new(|| Ok(Snapshot::default()));
        for path in ["/", "/metrics/x", "/upload/a/b/c", "/health"] {
            let (status, _, _) = get_text(source.clone(), path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }
    }
}
