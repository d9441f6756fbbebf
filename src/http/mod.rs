//! The HTTP side: PUT into slots, GET and HEAD of stored files.
//!
//! [`router`] names the routes and adds the headers every response needs:
//! CORS for web clients, and the policies that keep uploads inert in a
//! browser ([`headers`]). `put` receives an upload once the slot's
//! [`Redeemer`](crate::slots::redeem::Redeemer) has accepted it, `download`
//! serves a file whole or by [`range`], both from the [`HttpState`] they
//! share, and `error` turns a refusal into a status and a reason. `health`
//! answers load balancers (`GET /health`).
//! [`serve`] runs the server, within the cap on open connections that
//! [`connections`] keeps, in plain HTTP or, with a certificate, over [`tls`].

pub mod connections;
mod download;
mod error;
pub mod headers;
mod health;
mod put;
pub mod range;
mod refusals;
mod server;
mod state;
pub mod tls;

use std::time::Duration;

use axum::routing::{get, put};
use axum::Router;
use http::{HeaderValue, Method, StatusCode};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::Config;
pub use error::HttpError;
pub use server::{listen, serve};
pub use state::HttpState;

/// The routes and the layers every response goes through.
pub fn router(config: &Config, state: HttpState) -> Router {
    let origins = &config.http.cors_allow_origin;
    let allow_origin = if origins.trim() == "*" {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .split(',')
                .filter_map(|origin| HeaderValue::from_str(origin.trim()).ok()),
        )
    };
    let cors = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::PUT, Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers([http::header::AUTHORIZATION, http::header::CONTENT_TYPE])
        .expose_headers([
            http::header::CONTENT_LENGTH,
            http::header::CONTENT_RANGE,
            http::header::ETAG,
            http::header::ACCEPT_RANGES,
        ])
        .max_age(Duration::from_secs(86_400));

    let health = Router::new()
        .route("/health", get(health::health))
        .with_state(state.clone());
    let mut app = Router::new()
        .route("/upload/{id}/{token}/{filename}", put(put::put))
        .route("/file/{id}/{filename}", get(download::get))
        .with_state(state)
        .fallback(|| async { HttpError::new(StatusCode::NOT_FOUND, "not found") })
        .method_not_allowed_fallback(|| async {
            HttpError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(cors);
    for (name, value) in headers::security_headers() {
        app = app.layer(SetResponseHeaderLayer::overriding(name, value));
    }
    // Outermost, so that it sees every answer, the fallbacks' too; but not
    // those of `/health`, whose 503 is the answer asked for, polled often.
    app.layer(axum::middleware::from_fn_with_state(
        refusals::RefusalLog::new(),
        refusals::log_refusals,
    ))
    .merge(health)
}
