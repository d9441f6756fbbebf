//! The XEP-0114 link to the XMPP server, kept up for as long as Satchel runs.
//!
//! tokio-xmpp's `Component` folds a soft read timeout, an unparsable stanza
//! and end-of-stream into the same `None`, and never reconnects. So the login
//! is rebuilt here on tokio-xmpp's lower layer (`xmlstream`), which tells those
//! cases apart: a soft timeout makes us ping the server (an idle link never
//! goes silent, and a dead one is noticed), a stanza error is answered by the
//! router, and only a real loss of the stream leads to a reconnection, with an
//! exponential backoff capped at `reconnect_max_delay`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use minidom::Element;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_xmpp::xmlstream::{initiate_stream, ReadError, StreamHeader, Timeouts, XmlStream};
use tracing::{debug, info, warn, Instrument};
use xmpp_parsers::component::Handshake;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::ns;
use xmpp_parsers::ping::Ping;

use super::router::Router;
use crate::config::ComponentConfig;

type Link = XmlStream<BufStream<TcpStream>, Element>;

/// Stanzas being handled at once; beyond this, reading from the server waits.
const MAX_STANZAS_IN_FLIGHT: usize = 256;
/// Time allowed for TCP connect, stream header and handshake together.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Why a login attempt or a live link ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to {server}: {source}")]
    Connect {
        server: String,
        source: std::io::Error,
    },
    #[error("stream failure: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server sent no stream id")]
    NoStreamId,
    #[error("the server refused the handshake: {0}")]
    Refused(String),
    #[error("login timed out after {0:?}")]
    LoginTimeout(Duration),
    #[error("the server closed the stream")]
    Closed,
    #[error("cannot send to the server: {0}")]
    Send(String),
}

/// Keeps the component connected for ever, handing every stanza to `router`.
pub async fn run(config: ComponentConfig, router: Arc<Router>) {
    let mut delay = FIRST_RETRY_DELAY;
    loop {
        let span = tracing::info_span!("component", jid = %config.jid, server = %config.server);
        let outcome = async {
            let link = tokio::time::timeout(LOGIN_TIMEOUT, login(&config))
                .await
                .map_err(|_| LinkError::LoginTimeout(LOGIN_TIMEOUT))??;
            info!("connected to the XMPP server");
            delay = FIRST_RETRY_DELAY;
            serve(link, &config, router.clone()).await
        }
        .instrument(span.clone())
        .await;
        let _entered = span.enter();
        match outcome {
            Err(LinkError::Refused(reason)) => warn!(
                %reason,
                "the XMPP server refused Satchel; check component.jid and component.secret against its component settings"
            ),
            Err(error) => warn!(%error, "link to the XMPP server lost"),
            Ok(()) => {}
        }
        info!(retry_in = ?delay, "reconnecting");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(config.reconnect_max_delay);
    }
}

/// Opens the stream and performs the XEP-0114 handshake.
async fn login(config: &ComponentConfig) -> Result<Link, LinkError> {
    let tcp = TcpStream::connect(&config.server)
        .await
        .map_err(|source| LinkError::Connect {
            server: config.server.clone(),
            source,
        })?;
    tcp.set_nodelay(true)?;
    let header = StreamHeader {
        to: Some(Cow::Owned(config.jid.to_string())),
        ..StreamHeader::default()
    };
    let timeouts = Timeouts {
        read_timeout: config.keepalive,
        response_timeout: config.keepalive,
    };
    let mut pending = initiate_stream(BufStream::new(tcp), ns::COMPONENT, header, timeouts).await?;
    let stream_id = pending.take_header().id.ok_or(LinkError::NoStreamId)?;
    let mut link: Link = pending.skip_features();
    let handshake = Handshake::from_stream_id_and_password(stream_id.into_owned(), &config.secret);
    link.send(&handshake)
        .await
        .map_err(|e| LinkError::Send(e.to_string()))?;
    loop {
        match link.next().await {
            Some(Ok(reply)) if reply.is("handshake", ns::COMPONENT) => return Ok(link),
            Some(Ok(other)) => return Err(LinkError::Refused(describe_stream_error(&other))),
            Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(ReadError::HardError(e))) => return Err(LinkError::Io(e)),
            Some(Err(ReadError::ParseError(e))) => return Err(LinkError::Refused(e.to_string())),
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                return Err(LinkError::Refused("stream closed during handshake".into()))
            }
        }
    }
}

/// `<stream:error><not-authorized/>...</stream:error>` as `not-authorized`.
fn describe_stream_error(element: &Element) -> String {
    let condition = element
        .children()
        .find(|child| child.name() != "text")
        .map(|child| child.name().to_owned());
    let text = element
        .children()
        .find(|child| child.name() == "text")
        .map(|text| text.text());
    match (condition, text) {
        (Some(condition), Some(text)) => format!("{condition}: {text}"),
        (Some(condition), None) => condition,
        _ => format!("unexpected <{}/>", element.name()),
    }
}

/// Reads stanzas, answers them through the router, pings when idle.
async fn serve(
    mut link: Link,
    config: &ComponentConfig,
    router: Arc<Router>,
) -> Result<(), LinkError> {
    let (replies_tx, mut replies_rx) = mpsc::channel::<Element>(MAX_STANZAS_IN_FLIGHT);
    let in_flight = Arc::new(Semaphore::new(MAX_STANZAS_IN_FLIGHT));
    let mut pings_sent = 0u64;
    loop {
        tokio::select! {
            incoming = link.next() => match incoming {
                Some(Ok(stanza)) => {
                    if stanza.ns() == ns::STREAM {
                        return Err(LinkError::Refused(describe_stream_error(&stanza)));
                    }
                    let permit = in_flight.clone().acquire_owned().await.expect("semaphore never closed");
                    let router = router.clone();
                    let replies_tx = replies_tx.clone();
                    tokio::spawn(async move {
                        if let Some(reply) = router.handle(stanza).await {
                            // A closed channel means the link is gone; the client will retry.
                            let _ = replies_tx.send(reply).await;
                        }
                        drop(permit);
                    });
                }
                Some(Err(ReadError::SoftTimeout)) => {
                    pings_sent += 1;
                    debug!("link idle, pinging the server");
                    let ping = Iq::from_get(format!("satchel-keepalive-{pings_sent}"), Ping)
                        .with_from(config.jid.clone().into())
                        .with_to(server_domain(config).into());
                    link.send(&Element::from(ping)).await.map_err(|e| LinkError::Send(e.to_string()))?;
                }
                Some(Err(ReadError::ParseError(error))) => {
                    // The XML was well-formed (or the stream would be dead) but
                    // not an element we could build; nothing to answer to.
                    warn!(%error, "unreadable stanza from the server");
                }
                Some(Err(ReadError::HardError(error))) => return Err(LinkError::Io(error)),
                Some(Err(ReadError::StreamFooterReceived)) | None => return Err(LinkError::Closed),
            },
            Some(reply) = replies_rx.recv() => {
                link.send(&reply).await.map_err(|e| LinkError::Send(e.to_string()))?;
            }
        }
    }
}

/// The domain of the server the component is attached to, for keepalive pings.
fn server_domain(config: &ComponentConfig) -> jid::BareJid {
    let domain = config.jid.domain().as_str();
    domain
        .split_once('.')
        .and_then(|(_, parent)| parent.parse().ok())
        .unwrap_or_else(|| config.jid.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_errors_are_described_by_condition_and_text() {
        let error: Element = "<error xmlns='http://etherx.jabber.org/streams'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>bad secret</text></error>"
            .parse()
            .unwrap();
        assert_eq!(describe_stream_error(&error), "not-authorized: bad secret");
    }
}
