//! The XEP-0114 link to the XMPP server, kept up for as long as Satchel runs.
//!
//! The link is built on tokio's TCP stream directly: Satchel writes the
//! stream header and the handshake ([`xmpp_parsers::component::Handshake`])
//! itself, reads with its own [`StanzaReader`] and writes stanzas
//! serialized by minidom. tokio-xmpp's `Component` would
//! do the handshake, but its stream yields the same `None` for a soft read
//! timeout, for a stanza that fails to parse and for the end of the stream,
//! and it never reconnects. Here the cases are told apart: silence makes
//! Satchel ping the server (an idle link never goes quiet for long, and a
//! dead one is noticed), a stanza over [`MAX_STANZA_BYTES`] is answered with
//! an error and skipped, and only the loss of the stream itself (its end, a
//! stream error, XML that cannot be parsed, no answer to a ping) leads to a
//! reconnection, with an exponential backoff capped at `reconnect_max_delay`.

use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn, Instrument};
use xmpp_parsers::component::Handshake;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::ns;
use xmpp_parsers::ping::Ping;

use super::delegate::Delegate;
use super::router::Router;
use super::stream::{Incoming, StanzaReader, StreamError};
use crate::config::ComponentConfig;

/// Stanzas being handled at once; beyond this, reading from the server waits.
const MAX_STANZAS_IN_FLIGHT: usize = 64;
/// Largest stanza read whole; a bigger one is answered with an error unread.
/// It bounds attribute values too: the reader's token limit
/// ([`MAX_TOKEN_BYTES`](super::stream::MAX_TOKEN_BYTES)) is above it.
pub const MAX_STANZA_BYTES: usize = 512 * 1024;
const _: () = assert!(MAX_STANZA_BYTES < super::stream::MAX_TOKEN_BYTES);
/// Time allowed for TCP connect, stream header and handshake together.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

/// The two halves of a logged-in link.
struct Link {
    reader: StanzaReader<BufReader<OwnedReadHalf>>,
    writer: BufWriter<OwnedWriteHalf>,
}

impl Link {
    async fn send(&mut self, element: &Element) -> Result<(), LinkError> {
        let mut bytes = Vec::with_capacity(512);
        element
            .write_to(&mut bytes)
            .map_err(|e| LinkError::Send(e.to_string()))?;
        self.writer.write_all(&bytes).await?;
        self.writer.flush().await?;
        Ok(())
    }
}

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
    #[error("stream failure: {0}")]
    Stream(#[from] StreamError),
    #[error("the server sent no stream id")]
    NoStreamId,
    #[error("the server refused the handshake: {0}")]
    Refused(String),
    #[error("login timed out after {0:?}")]
    LoginTimeout(Duration),
    #[error("the server closed the stream")]
    Closed,
    #[error("no answer to a keepalive ping within {0:?}")]
    Silent(Duration),
    #[error("cannot send to the server: {0}")]
    Send(String),
    /// The link was closed because another instance of the cluster leads.
    #[error("this instance no longer leads the cluster")]
    NotLeader,
}

/// Stanzas waiting for the link, from answers and from the relay.
pub const OUTGOING_QUEUE: usize = 1024;

/// Keeps the component connected for ever, handing every stanza to `router`
/// and sending whatever arrives on `outgoing` (kept across reconnections, so
/// what is queued while the link is down goes out once it is back).
///
/// The link is held only while `may_link` says so: always for a single
/// instance; in a cluster, while this instance leads (see
/// [`crate::cluster`]). When it turns false the link is closed at once, so
/// that two instances never hold it together (Prosody refuses a second
/// connection, ejabberd would share the stanzas between them).
pub async fn run<D: Delegate>(
    config: ComponentConfig,
    router: Arc<Router<D>>,
    outgoing: mpsc::Sender<Element>,
    mut outgoing_rx: mpsc::Receiver<Element>,
    mut may_link: watch::Receiver<bool>,
) {
    let mut delay = FIRST_RETRY_DELAY;
    loop {
        if may_link.wait_for(|may| *may).await.is_err() {
            return;
        }
        let span = tracing::info_span!("component", jid = %config.jid, server = %config.server);
        let linked = async {
            let link = tokio::time::timeout(LOGIN_TIMEOUT, login(&config))
                .await
                .map_err(|_| LinkError::LoginTimeout(LOGIN_TIMEOUT))??;
            info!("connected to the XMPP server");
            delay = FIRST_RETRY_DELAY;
            let mut link = link;
            for stanza in router.link_up() {
                link.send(&stanza).await?;
            }
            let outcome = serve(link, &config, router.clone(), &outgoing, &mut outgoing_rx).await;
            router.link_down();
            outcome
        };
        let outcome = async {
            tokio::select! {
                outcome = linked => outcome,
                Ok(_) = may_link.wait_for(|may| !*may) => Err(LinkError::NotLeader),
            }
        }
        .instrument(span.clone())
        .await;
        let _entered = span.enter();
        match outcome {
            Err(LinkError::Refused(reason)) => warn!(
                %reason,
                "the XMPP server refused Satchel; check component.jid and component.secret against its component settings"
            ),
            Err(LinkError::NotLeader) => {
                router.link_down();
                info!("no longer the cluster's leader: link closed");
                continue;
            }
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
    let (read_half, write_half) = tcp.into_split();
    let mut link = Link {
        reader: StanzaReader::new(BufReader::new(read_half), MAX_STANZA_BYTES),
        writer: BufWriter::new(write_half),
    };
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' to='{}'>",
        ns::COMPONENT,
        ns::STREAM,
        config.jid
    );
    link.writer.write_all(header.as_bytes()).await?;
    link.writer.flush().await?;
    let stream_id = link
        .reader
        .read_header()
        .await?
        .ok_or(LinkError::NoStreamId)?;
    let handshake = Handshake::from_stream_id_and_password(stream_id, &config.secret);
    link.send(&Element::from(handshake)).await?;
    match link.reader.next().await? {
        Some(Incoming::Stanza(reply)) if reply.is("handshake", ns::COMPONENT) => Ok(link),
        Some(Incoming::Stanza(other)) => Err(LinkError::Refused(describe_stream_error(&other))),
        Some(Incoming::Oversized(_)) => Err(LinkError::Refused("oversized answer".into())),
        None => Err(LinkError::Refused("stream closed during handshake".into())),
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

/// Ids of Satchel's keepalive pings; their answers end on the link.
const KEEPALIVE_ID_PREFIX: &str = "satchel-keepalive-";

/// Whether `stanza` answers one of Satchel's keepalive pings (a result, or an
/// error from a server that does not do XEP-0199), which nobody else awaits.
fn is_keepalive_answer(stanza: &Element) -> bool {
    stanza.name() == "iq"
        && matches!(stanza.attr("type"), Some("result" | "error"))
        && stanza
            .attr("id")
            .is_some_and(|id| id.starts_with(KEEPALIVE_ID_PREFIX))
}

/// Reads stanzas, answers them through the router, pings when idle.
///
/// After `keepalive` of silence from the server Satchel pings it; after as
/// long again without a byte in return, the link is taken for dead.
async fn serve<D: Delegate>(
    mut link: Link,
    config: &ComponentConfig,
    router: Arc<Router<D>>,
    outgoing: &mpsc::Sender<Element>,
    outgoing_rx: &mut mpsc::Receiver<Element>,
) -> Result<(), LinkError> {
    let in_flight = Arc::new(Semaphore::new(MAX_STANZAS_IN_FLIGHT));
    // A stanza is read only with a handler slot in hand. Waiting for the slot
    // is a branch of its own, so the queue of answers keeps draining
    // meanwhile: handlers waiting to queue their answer free no slot.
    let mut slot: Option<OwnedSemaphorePermit> = None;
    let mut pings_sent = 0u64;
    let mut awaiting_pong = false;
    let quiet = tokio::time::sleep(config.keepalive);
    tokio::pin!(quiet);
    loop {
        tokio::select! {
            permit = in_flight.clone().acquire_owned(), if slot.is_none() => {
                slot = Some(permit.expect("semaphore never closed"));
            }
            incoming = link.reader.next(), if slot.is_some() => {
                quiet.as_mut().reset(tokio::time::Instant::now() + config.keepalive);
                awaiting_pong = false;
                let stanza = match incoming? {
                    Some(Incoming::Stanza(stanza)) => stanza,
                    Some(Incoming::Oversized(head)) => {
                        warn!(name = head.name(), id = head.attr("id").unwrap_or_default(), "oversized stanza skipped");
                        if let Some(reply) = router.refuse_oversized(&head) {
                            link.send(&reply).await?;
                        }
                        continue;
                    }
                    None => return Err(LinkError::Closed),
                };
                if stanza.ns() == ns::STREAM {
                    return Err(LinkError::Refused(describe_stream_error(&stanza)));
                }
                if is_keepalive_answer(&stanza) {
                    // It did its job by arriving: the silence timer is reset.
                    continue;
                }
                if Router::<D>::answers_at_once(&stanza) {
                    // Writing here holds up reading no more than sending
                    // what `outgoing` holds does.
                    if let Some(reply) = router.handle(stanza).await {
                        link.send(&reply).await?;
                    }
                    continue;
                }
                let permit = slot.take();
                let router = router.clone();
                let replies = outgoing.clone();
                tokio::spawn(async move {
                    if let Some(reply) = router.handle(stanza).await {
                        // Closed only when Satchel stops.
                        let _ = replies.send(reply).await;
                    }
                    drop(permit);
                });
            }
            Some(stanza) = outgoing_rx.recv() => link.send(&stanza).await?,
            () = &mut quiet => {
                if awaiting_pong {
                    return Err(LinkError::Silent(config.keepalive));
                }
                pings_sent += 1;
                awaiting_pong = true;
                debug!("link idle, pinging the server");
                let ping = Iq::from_get(format!("{KEEPALIVE_ID_PREFIX}{pings_sent}"), Ping)
                    .with_from(config.jid.clone().into())
                    .with_to(crate::domains::server_of(&config.jid).into());
                link.send(&Element::from(ping)).await?;
                quiet.as_mut().reset(tokio::time::Instant::now() + config.keepalive);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpSocket;

    /// Reads from `stream` until `needle` has been seen.
    async fn read_past(stream: &mut TcpStream, needle: &[u8]) {
        let mut seen = Vec::new();
        while !seen.windows(needle.len()).any(|w| w == needle) {
            let mut buf = [0; 1024];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before {:?}", String::from_utf8_lossy(needle));
            seen.extend_from_slice(&buf[..n]);
        }
    }

    /// A server that sends requests faster than it reads the answers (its
    /// own output backs up, as Prosody's does when a client floods it) must
    /// get every answer once it reads again. The link used to stall for
    /// good: with the outgoing queue full, every handler waited to queue its
    /// reply, and the loop that drains the queue waited for a handler slot.
    /// A component config for a server listening on `listener`.
    fn config_for(listener: &tokio::net::TcpListener) -> ComponentConfig {
        ComponentConfig {
            jid: "upload.example.org".parse().unwrap(),
            server: listener.local_addr().unwrap().to_string(),
            secret: "s".into(),
            keepalive: Duration::from_secs(600),
            reconnect_max_delay: Duration::from_secs(1),
        }
    }

    /// Runs the link of a test router to the server on `listener`, held
    /// while `may_link` says so.
    fn spawn_link(
        listener: &tokio::net::TcpListener,
        may_link: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let fixture = crate::xmpp::router::tests::fixture();
        let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
        tokio::spawn(run(
            config_for(listener),
            Arc::new(fixture.router),
            outgoing,
            outgoing_rx,
            may_link,
        ))
    }

    /// Plays the server's side of a login on `listener`'s next connection.
    async fn accept_login(listener: &tokio::net::TcpListener) -> TcpStream {
        let (mut server, _) = listener.accept().await.unwrap();
        read_past(&mut server, b">").await;
        server
            .write_all(b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='s1'>")
            .await
            .unwrap();
        read_past(&mut server, b"</handshake>").await;
        server.write_all(b"<handshake/>").await.unwrap();
        server
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_answered_slower_than_it_arrives_does_not_stall_the_link() {
        const REQUESTS: usize = 20_000;
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let (_may, may_link) = watch::channel(true);
        let satchel = spawn_link(&listener, may_link);
        let server = accept_login(&listener).await;
        let (mut from_satchel, mut to_satchel) = server.into_split();
        let flood = tokio::spawn(async move {
            for i in 0..REQUESTS {
                let ping = format!("<iq type='get' id='flood-{i}' from='alice@example.org/x' to='upload.example.org'><ping xmlns='urn:xmpp:ping'/></iq>");
                to_satchel.write_all(ping.as_bytes()).await.unwrap();
            }
            to_satchel
        });
        // Not reading for a while: Satchel's answers back up.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let needle = b"type='result'";
        let mut answers = Vec::new();
        let (mut results, mut scanned) = (0, 0);
        let all_answered = tokio::time::timeout(Duration::from_secs(30), async {
            let mut buf = vec![0; 64 * 1024];
            while results < REQUESTS {
                let n = from_satchel.read(&mut buf).await.unwrap();
                assert!(n > 0, "Satchel closed the link");
                answers.extend_from_slice(&buf[..n]);
                while let Some(at) = answers[scanned..]
                    .windows(needle.len())
                    .position(|w| w == needle)
                {
                    results += 1;
                    scanned += at + needle.len();
                }
            }
        })
        .await;
        assert!(
            all_answered.is_ok(),
            "the link stalled after {results} answers"
        );
        flood.await.unwrap();
        satchel.abort();
    }

    /// In a cluster the link is held only while this instance leads: not
    /// opened before, closed at once after.
    #[tokio::test]
    async fn the_link_is_held_only_while_allowed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (may, may_link) = watch::channel(false);
        let satchel = spawn_link(&listener, may_link);
        let not_yet = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(not_yet.is_err(), "connected before it was allowed to");
        may.send(true).unwrap();
        let mut server = accept_login(&listener).await;
        may.send(false).unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), server.read_to_end(&mut rest));
        assert!(closed.await.is_ok(), "the link stayed open once disallowed");
        let again = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(again.is_err(), "reconnected while disallowed");
        satchel.abort();
    }

    #[test]
    fn answers_to_our_own_pings_are_recognised() {
        let stanza = |xml: &str| -> Element { xml.parse().unwrap() };
        for answer in [
            "<iq xmlns='jabber:component:accept' type='result' id='satchel-keepalive-7' from='example.org' to='upload.example.org'/>",
            "<iq xmlns='jabber:component:accept' type='error' id='satchel-keepalive-1' from='example.org'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        ] {
            assert!(is_keepalive_answer(&stanza(answer)), "{answer}");
        }
        for other in [
            // A request that borrows the id still gets an answer.
            "<iq xmlns='jabber:component:accept' type='get' id='satchel-keepalive-7' from='a@example.org/x'><ping xmlns='urn:xmpp:ping'/></iq>",
            "<iq xmlns='jabber:component:accept' type='result' id='satchel-probe-1' from='a@example.org/x'/>",
            "<message xmlns='jabber:component:accept' type='error' id='satchel-keepalive-7'/>",
        ] {
            assert!(!is_keepalive_answer(&stanza(other)), "{other}");
        }
    }

    #[test]
    fn stream_errors_are_described_by_condition_and_text() {
        let error: Element = "<error xmlns='http://etherx.jabber.org/streams'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>bad secret</text></error>"
            .parse()
            .unwrap();
        assert_eq!(describe_stream_error(&error), "not-authorized: bad secret");
    }
}
