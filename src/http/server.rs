//! The HTTP server: accepting connections and running hyper on each.
//!
//! Assembled from hyper's HTTP/1 connection handling rather than
//! `axum::serve`, for the header read timeout, which `axum::serve` does not
//! expose, and for the cap on open connections ([`super::connections`]),
//! which sheds idle ones rather than lock out newcomers.
//!
//! With a certificate ([`super::tls`]) every connection is HTTPS. The TLS
//! handshake counts as part of the first request: it must be done within
//! the header timeout, and a connection still in it is shed like one that
//! has sent nothing, so handshakes that never finish cost what silent
//! connections cost. A client speaking plain HTTP to the HTTPS port is told
//! so in a plain 400, and closed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::TlsAcceptor;
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
/// open carry on. `connections` decides who may stay when there are too many;
/// with `tls`, connections speak HTTPS.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &Config,
    connections: Arc<ConnectionLimit>,
    tls: Option<TlsAcceptor>,
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
                let tls = tls.clone();
                tokio::spawn(async move {
                    let served =
                        serve_connection(socket, peer, app, header_timeout, connection, tls);
                    if tokio::time::timeout(MAX_CONNECTION_LIFETIME, served)
                        .await
                        .is_err()
                    {
                        debug!(%peer, "connection open for a day; closed");
                    }
                });
            }
            // A plain 503 means nothing to a TLS client, and a handshake
            // to say it costs what is short at the cap: it is just closed.
            None if tls.is_some() => {
                debug!(%peer, "every connection is busy; refused (closed)");
            }
            None => {
                debug!(%peer, "every connection is busy; refused with 503");
                connections.refuse(socket);
            }
        }
    }
}

/// Runs one connection until it ends, is shed to make room, or fails to
/// send its first request head (and finish its TLS handshake, with `tls`)
/// within `header_timeout` of connecting.
async fn serve_connection(
    socket: TcpStream,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    connection: Arc<OpenConnection>,
    tls: Option<TlsAcceptor>,
) {
    let first_request_deadline = tokio::time::Instant::now() + header_timeout;
    // Small responses must not wait for Nagle's algorithm.
    let _ = socket.set_nodelay(true);
    let Some(first_byte) =
        first_byte_arrives(&socket, &connection, first_request_deadline, peer).await
    else {
        return;
    };
    let Some(tls) = tls else {
        return serve_http(
            socket,
            peer,
            app,
            header_timeout,
            connection,
            first_request_deadline,
        )
        .await;
    };
    if first_byte != TLS_HANDSHAKE_RECORD {
        return refuse_plain_http(socket, peer).await;
    }
    let stream = tokio::select! {
        accepted = tls.accept(socket) => match accepted {
            Ok(stream) => stream,
            Err(error) => return debug!(%peer, %error, "TLS handshake failed"),
        },
        () = connection.shed_requested() => return debug!(%peer, "{SHED}"),
        () = tokio::time::sleep_until(first_request_deadline) => {
            return debug!(%peer, "{NO_REQUEST}")
        }
    };
    serve_http(
        stream,
        peer,
        app,
        header_timeout,
        connection,
        first_request_deadline,
    )
    .await
}

/// Runs hyper on `stream` until the connection ends or is shed.
async fn serve_http<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    header_timeout: Duration,
    connection: Arc<OpenConnection>,
    first_request_deadline: tokio::time::Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Between requests; the first one has `first_request_deadline`.
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_BUFFER_BYTES)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(
            TokioIo::new(stream),
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

/// The first byte of every TLS connection: a handshake record's type.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// How long the request of a plain-HTTP client on the HTTPS port is drained
/// after the answer: closing with it unread would reset the connection and
/// lose the answer.
const PLAIN_HTTP_LINGER: Duration = Duration::from_secs(1);
const PLAIN_HTTP_REASON: &str = "this port speaks HTTPS; use an https:// URL\n";

/// Tells a client that sent plain HTTP to the HTTPS port so, then closes.
async fn refuse_plain_http(mut socket: TcpStream, peer: SocketAddr) {
    debug!(%peer, "plain HTTP on the HTTPS port; refused with 400");
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{PLAIN_HTTP_REASON}",
        PLAIN_HTTP_REASON.len()
    );
    if socket.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    let _ = socket.shutdown().await;
    let mut sink = [0; 4096];
    let drain = async { while socket.read(&mut sink).await.is_ok_and(|n| n > 0) {} };
    let _ = tokio::time::timeout(PLAIN_HTTP_LINGER, drain).await;
}

/// Logged when a connection that has sent no request is closed to make room.
const SHED: &str = "no request yet and the connection cap is reached: shed to make room";
/// Logged when a connection's first request head does not arrive in time.
const NO_REQUEST: &str = "no complete request within the header timeout; closed";

/// Waits for the first byte of a new connection and returns it, without
/// consuming it; None if the connection closes first, is shed, or sends
/// nothing before `deadline`.
///
/// hyper allocates its buffers (16 KiB) when it starts: a connection that
/// never sends a byte does not get them. (`readable` may wake without data;
/// `peek` waits for a byte or the end of the stream.)
async fn first_byte_arrives(
    socket: &TcpStream,
    connection: &OpenConnection,
    deadline: tokio::time::Instant,
    peer: SocketAddr,
) -> Option<u8> {
    let mut first_byte = [0];
    tokio::select! {
        read = socket.peek(&mut first_byte) => match read {
            Ok(bytes) if bytes > 0 => Some(first_byte[0]),
            _ => None,
        },
        () = connection.shed_requested() => {
            debug!(%peer, "{SHED}");
            None
        }
        () = tokio::time::sleep_until(deadline) => {
            debug!(%peer, "{NO_REQUEST}");
            None
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
