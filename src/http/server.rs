//! The HTTP server: accepting connections and running hyper on each.
//!
//! Assembled from hyper's HTTP/1 connection handling rather than
//! `axum::serve`, for the header read timeout, which `axum::serve` does not
//! expose, and for the cap on open connections ([`super::connections`]),
//! which sheds idle ones rather than lock out newcomers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tower::ServiceExt;
use tracing::{debug, warn};

use super::connections::{ConnectionLimit, OpenConnection};
use super::refusals::ClientAddr;
use crate::config::Config;

/// Read buffer of a connection; bounds the memory a stranger's request takes.
const MAX_BUFFER_BYTES: usize = 64 * 1024;
/// Request line and headers together; no client of ours sends more than a few hundred bytes.
const MAX_HEADER_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// Even a busy connection ends after this long.
const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Connections the kernel holds for us to accept (Linux caps it at
/// `net.core.somaxconn`, 4096 by default): a burst of newcomers waits there a
/// moment instead of having its SYNs dropped, which costs a client a second
/// per retry. tokio's default is 1024.
const LISTEN_BACKLOG: u32 = 4096;

/// The listening socket for `address`.
pub fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections until `accepting` turns false; connections already
/// open carry on. `connections` decides who may stay when there are too many.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &Config,
    connections: Arc<ConnectionLimit>,
    mut accepting: tokio::sync::watch::Receiver<bool>,
) {
    let header_timeout = config.http.header_timeout;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = accepting.wait_for(|open| !open) => return,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: wait instead of spinning.
                warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match connections.admit() {
            Some(connection) => {
                let app = app.clone();
                tokio::spawn(async move {
                    let served = serve_connection(socket, peer, app, header_timeout, connection);
                    if tokio::time::timeout(MAX_CONNECTION_LIFETIME, served)
                        .await
                        .is_err()
                    {
                        debug!(%peer, "connection open for a day; closed");
                    }
                });
            }
            None => {
                debug!(%peer, "every connection is busy; refused with 503");
                connections.refuse(socket);
            }
        }
    }
}

/// Runs one connection until it ends, is shed to make room, or fails to
/// send its first request head within `header_timeout` of connecting.
async fn serve_connection(
    socket: TcpStream,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    connection: Arc<OpenConnection>,
) {
    let first_request_deadline = tokio::time::Instant::now() + header_timeout;
    // Small responses must not wait for Nagle's algorithm.
    let _ = socket.set_nodelay(true);
    if !first_byte_arrives(&socket, &connection, first_request_deadline, peer).await {
        return;
    }
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Between requests; the first one has `first_request_deadline`.
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_BUFFER_BYTES)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(
            TokioIo::new(socket),
            busy_while_answering(app, &connection, peer),
        );
    tokio::pin!(http);
    let outcome = loop {
        tokio::select! {
            outcome = http.as_mut() => break outcome,
            () = connection.shed_requested() => {
                if !connection.has_sent_a_request() {
                    return debug!(%peer, "{SHED}");
                }
                // Idle between requests: hyper closes it at once, or after
                // the response it has just begun.
                debug!(%peer, "idle after a response and the connection cap is reached: shed to make room");
                http.as_mut().graceful_shutdown();
                break http.await;
            }
            () = tokio::time::sleep_until(first_request_deadline),
                if !connection.has_sent_a_request() =>
            {
                // The request may have arrived since the loop began.
                if !connection.has_sent_a_request() {
                    return debug!(%peer, "{NO_REQUEST}");
                }
            }
        }
    };
    if let Err(error) = outcome {
        debug!(%peer, %error, "connection ended with an error");
    }
}

/// Logged when a connection that has sent no request is closed to make room.
const SHED: &str = "no request yet and the connection cap is reached: shed to make room";
/// Logged when a connection's first request head does not arrive in time.
const NO_REQUEST: &str = "no complete request within the header timeout; closed";

/// Waits for the first byte of a new connection; false if the connection
/// closes first, is shed, or sends nothing before `deadline`.
///
/// hyper allocates its buffers (16 KiB) when it starts: a connection that
/// never sends a byte does not get them. (`readable` may wake without data;
/// `peek` waits for a byte or the end of the stream.)
async fn first_byte_arrives(
    socket: &TcpStream,
    connection: &OpenConnection,
    deadline: tokio::time::Instant,
    peer: SocketAddr,
) -> bool {
    let mut first_byte = [0];
    tokio::select! {
        read = socket.peek(&mut first_byte) => matches!(read, Ok(bytes) if bytes > 0),
        () = connection.shed_requested() => {
            debug!(%peer, "{SHED}");
            false
        }
        () = tokio::time::sleep_until(deadline) => {
            debug!(%peer, "{NO_REQUEST}");
            false
        }
    }
}

/// `app` as hyper's service on `connection` to `peer`, which counts as busy
/// from a request's head until hyper is done with the response body.
fn busy_while_answering(
    app: Router,
    connection: &Arc<OpenConnection>,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<Body>,
    Error = Infallible,
    Future: Send,
> {
    let connection = connection.clone();
    hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ClientAddr(peer));
        let in_flight = connection.request_started();
        let response = app.clone().oneshot(request);
        async move {
            let response = response.await?;
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _ = &in_flight;
                    frame
                }))
            }))
        }
    })
}
