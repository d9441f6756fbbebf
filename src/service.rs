//! Starting and stopping the whole service, and wiring its parts together.
//!
//! This is the top of the crate, the one place that knows every part: the
//! slots granted over XMPP are redeemed by the HTTP side
//! ([`SlotService::redeemer`]), and the relay sends through the XMPP link
//! and takes the stanzas the router does not answer, beside the commands
//! (together they are the router's [`Delegate`], below).
//!
//! Everything that can fail because of the operator's setup (the store, the
//! key file, the HTTP port) is tried before Satchel reports itself started, so
//! a bad deployment fails at once with one clear line. The XMPP link is the
//! exception: the server may come up later, and Satchel waits for it.
//!
//! SIGHUP asks for a reload ([`reload_on_hangup`]): of the configuration
//! file, whose reloadable keys the running parts read through a
//! [`LiveConfig`], and of the TLS certificate, which is also reloaded when
//! its files change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jid::Jid;
use minidom::Element;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};
use xmpp_parsers::stanza_error::StanzaError;

use crate::clock::unix_now;
use crate::commands::Commands;
use crate::config::{Config, LiveConfig};
use crate::http::tls::{ReloadingCert, TlsError};
use crate::http::{self, HttpState};
use crate::metrics::server::SnapshotSource;
use crate::metrics::Snapshot;
use crate::relay::{Relay, RelayStartError};
use crate::slots::SlotService;
use crate::storage::downloads::DownloadTracker;
use crate::storage::{StorageError, Store};
use crate::xmpp::adhoc::{CommandRequest, CommandResponse, ListedCommand};
use crate::xmpp::delegate::Delegate;
use crate::xmpp::link_state::LinkState;
use crate::xmpp::{connection, router::Router};

/// How long uploads in flight may take to finish after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Why Satchel could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store at {path}: {source}")]
    Store {
        path: std::path::PathBuf,
        source: StorageError,
    },
    #[error("cannot listen on {address} (http.listen): {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on {address} (metrics.listen): {source}")]
    MetricsListen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    OpenFiles(String),
    #[error("cannot install the signal handler: {0}")]
    Signals(std::io::Error),
    #[error("cannot serve HTTPS: {0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Relay(#[from] RelayStartError),
}

/// Runs Satchel until SIGTERM or SIGINT, then stops accepting connections,
/// lets uploads in flight finish (for a while), and flushes the store.
/// `config` was read from `config_path`, which SIGHUP reads again.
pub async fn run(config: Config, config_path: PathBuf) -> Result<(), StartError> {
    crate::logging::show_jids(config.show_jids);
    // The port first: it has no side effects, the store may create a key.
    let (listener, max_connections) = listen(&config)?;
    let metrics_listener = listen_for_metrics(&config).await?;
    let tls = load_certificate(&config).await?;
    let store = open_store(&config).await?;
    let mut terminate = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    let hangup = signal(SignalKind::hangup()).map_err(StartError::Signals)?;
    let settings = LiveConfig::new(config.clone());
    tokio::spawn(reload_on_hangup(
        hangup,
        config_path,
        settings.clone(),
        tls.clone(),
    ));

    let downloads = download_tracker(&config, &store)?;
    let slots = SlotService::new(&settings, store.clone());
    let redeemer = slots.redeemer();
    let (leading_tx, leading) = crate::cluster::leadership(&store);
    tokio::spawn(crate::cluster::follow(store.clone(), leading_tx));
    let xmpp = start_xmpp(
        &settings,
        store.clone(),
        slots,
        downloads.clone(),
        leading.clone(),
    )?;
    let http_state = HttpState::new(
        &config,
        store.clone(),
        downloads,
        redeemer,
        xmpp.link,
        leading.clone(),
    );
    if let Some(listener) = metrics_listener {
        let snapshot = snapshot_source(store.clone(), xmpp.relay);
        tokio::spawn(crate::metrics::server::serve(listener, snapshot));
    }
    tokio::spawn(collect_garbage_periodically(
        store.clone(),
        settings,
        leading,
    ));
    let acceptor = tls.map(|cert| {
        tokio::spawn(http::tls::watch_files(cert.clone()));
        http::tls::acceptor(cert)
    });
    let https = acceptor.is_some();
    let server = HttpServer::start(
        listener,
        max_connections,
        &config,
        http_state.clone(),
        acceptor,
    );
    info!(
        jid = %config.component.jid,
        http = %config.http.listen,
        https,
        max_connections,
        public_url = %config.http.public_url,
        metrics = ?config.metrics_listen,
        "Satchel started"
    );
    crate::systemd::notify_ready();

    tokio::select! {
        _ = terminate.recv() => info!("SIGTERM received, stopping"),
        _ = tokio::signal::ctrl_c() => info!("interrupted, stopping"),
    }
    crate::systemd::notify_stopping();
    server.stop_accepting().await;
    finish_uploads(&http_state).await;
    flush(store).await;
    Ok(())
}

/// The HTTP port, and how many connections it may hold open.
fn listen(config: &Config) -> Result<(TcpListener, usize), StartError> {
    let listener = http::listen(config.http.listen).map_err(|source| StartError::Listen {
        address: config.http.listen,
        source,
    })?;
    let open_file_limit = http::connections::raise_open_file_limit();
    let max_connections =
        http::connections::connection_cap(config.http.max_connections, open_file_limit)
            .map_err(StartError::OpenFiles)?;
    Ok((listener, max_connections))
}

/// The metrics port, when the configuration names one.
async fn listen_for_metrics(config: &Config) -> Result<Option<TcpListener>, StartError> {
    let Some(address) = config.metrics_listen else {
        return Ok(None);
    };
    let listener = crate::metrics::server::listen(address)
        .await
        .map_err(|source| StartError::MetricsListen { address, source })?;
    Ok(Some(listener))
}

/// What a metrics scrape reads of the store and the relay.
fn snapshot_source(store: Store, relay: Arc<Relay>) -> SnapshotSource {
    Arc::new(move || {
        let disk = store.disk_space().map_err(|error| error.to_string())?;
        let pending = relay.pending();
        Ok(Snapshot {
            stored_files: store.stored_files(),
            stored_bytes: store.stored_bytes(),
            disk_free_bytes: disk.available,
            disk_size_bytes: disk.total,
            relays_pending: pending.relays,
            deliveries_pending: pending.deliveries,
            deliveries_held: pending.held,
        })
    })
}

/// The TLS certificate, when the configuration names one.
async fn load_certificate(config: &Config) -> Result<Option<Arc<ReloadingCert>>, StartError> {
    let Some(files) = config.http.tls.clone() else {
        return Ok(None);
    };
    let loaded = tokio::task::spawn_blocking(move || ReloadingCert::load(files))
        .await
        .expect("loading a certificate does not panic")?;
    Ok(Some(loaded))
}

/// Reloads what can change while Satchel runs, on each SIGHUP: the
/// configuration file at `path` and the TLS certificate, if there is one.
async fn reload_on_hangup(
    mut hangup: Signal,
    path: PathBuf,
    settings: LiveConfig,
    tls: Option<Arc<ReloadingCert>>,
) {
    while hangup.recv().await.is_some() {
        info!(path = %path.display(), "SIGHUP received, reloading the configuration");
        let (path, settings) = (path.clone(), settings.clone());
        let _ = tokio::task::spawn_blocking(move || reload_settings(&path, &settings)).await;
        if let Some(tls) = tls.clone() {
            info!("reloading the TLS certificate");
            let _ = tokio::task::spawn_blocking(move || tls.reload_logged("SIGHUP")).await;
        }
    }
}

/// Reads the configuration file again and logs what changed, key by key:
/// what is now in force, what waits for a restart, or why the file was
/// not used at all.
fn reload_settings(path: &Path, settings: &LiveConfig) {
    let reload = match settings.reload(path) {
        Ok(reload) => reload,
        Err(error) => {
            warn!(%error, "configuration not reloaded: every setting stays as it was");
            return;
        }
    };
    for change in &reload.applied {
        info!(
            key = change.key,
            old = %change.running,
            new = %change.file,
            "setting reloaded"
        );
    }
    for change in &reload.refused {
        warn!(
            key = change.key,
            running = %change.running,
            file = %change.file,
            "setting not reloaded: it takes effect at the next start; the running value stays"
        );
    }
    info!(
        changed = reload.applied.len(),
        refused = reload.refused.len(),
        "configuration reloaded"
    );
}

/// Opens the store (creating it, and its master key, on the first start).
async fn open_store(config: &Config) -> Result<Store, StartError> {
    let options = config.store_options();
    let path = config.storage.path.clone();
    tokio::task::spawn_blocking(move || Store::open(options))
        .await
        .expect("store opening does not panic")
        .map_err(|source| StartError::Store { path, source })
}

/// What counts recipients' downloads, when relayed files go once downloaded.
fn download_tracker(config: &Config, store: &Store) -> Result<Option<DownloadTracker>, StartError> {
    if !config.relay.delete_after_download {
        return Ok(None);
    }
    let tracker = DownloadTracker::open(store.clone()).map_err(|source| StartError::Store {
        path: config.storage.path.clone(),
        source,
    })?;
    Ok(Some(tracker))
}

/// What the XMPP side gives the rest: the relay, and the state of the link.
struct XmppStarted {
    relay: Arc<Relay>,
    link: LinkState,
}

/// Starts the relay and the link to the XMPP server, which answers slot
/// requests through `slots` and keeps reconnecting for as long as Satchel runs.
fn start_xmpp(
    settings: &LiveConfig,
    store: Store,
    slots: SlotService,
    downloads: Option<DownloadTracker>,
    leading: watch::Receiver<bool>,
) -> Result<XmppStarted, StartError> {
    let config = settings.get();
    let (outgoing, outgoing_rx) = mpsc::channel(connection::OUTGOING_QUEUE);
    let relay = Relay::start(settings.clone(), store.clone(), outgoing.clone(), downloads)?;
    let delegate = Arc::new(Component::new(
        settings,
        store,
        slots.clone(),
        relay.clone(),
    ));
    let link = delegate.link_state();
    let router = Arc::new(Router::new(config.component.jid.clone(), slots, delegate));
    tokio::spawn(connection::run(
        config.component.clone(),
        router,
        outgoing,
        outgoing_rx,
        leading,
    ));
    Ok(XmppStarted { relay, link })
}

/// The HTTP server, running in a task of its own.
struct HttpServer {
    stop_accepting: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HttpServer {
    fn start(
        listener: TcpListener,
        max_connections: usize,
        config: &Config,
        state: HttpState,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> HttpServer {
        let app = http::router(config, state);
        let config = config.clone();
        let (stop_accepting, accepting) = watch::channel(true);
        let connections = http::connections::ConnectionLimit::new(max_connections);
        let task = tokio::spawn(async move {
            http::serve(listener, app, &config, connections, tls, accepting).await
        });
        HttpServer {
            stop_accepting,
            task,
        }
    }

    /// Stops accepting connections; those open carry on.
    async fn stop_accepting(self) {
        let _ = self.stop_accepting.send(false);
        let _ = self.task.await;
    }
}

/// Gives the uploads in flight a grace period to finish.
async fn finish_uploads(http_state: &HttpState) {
    if http_state.uploads_finished(SHUTDOWN_GRACE).await {
        info!("no upload in flight");
    } else {
        warn!(grace = ?SHUTDOWN_GRACE, "uploads still in flight are abandoned; their slots can be retried");
    }
}

/// Writes what the store holds in memory to disk, before Satchel exits.
async fn flush(store: Store) {
    match tokio::task::spawn_blocking(move || store.resign().and_then(|()| store.flush())).await {
        Ok(Ok(())) => info!("store flushed"),
        Ok(Err(error)) => warn!(%error, "flushing the store failed"),
        Err(_) => warn!("flushing the store panicked"),
    }
}

/// Deletes expired files, expired slots and abandoned uploads, for ever, at
/// the interval in force (a reload changes it for the round awaited, the age
/// of abandoned uploads from the next round).
async fn collect_garbage_periodically(
    store: Store,
    settings: LiveConfig,
    leading: watch::Receiver<bool>,
) {
    loop {
        let started = tokio::time::Instant::now();
        // In a cluster, the leader alone collects; the others count the
        // files again, which the leader's work changes behind them.
        if *leading.borrow() {
            collect_garbage(store.clone(), &settings).await;
        } else {
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.recount()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => warn!(%error, "counting the stored files failed"),
                Err(_) => warn!("counting the stored files panicked"),
            }
        }
        let gc_interval = |config: &Config| config.retention.gc_interval;
        settings.sleep_from(started, gc_interval).await;
    }
}

async fn collect_garbage(store: Store, settings: &LiveConfig) {
    let abandoned_after = settings.get().retention.abandoned_upload.as_secs();
    let outcome =
        tokio::task::spawn_blocking(move || store.collect_garbage(unix_now(), abandoned_after))
            .await;
    match outcome {
        Ok(Ok(report)) if report != Default::default() => {
            crate::metrics::metrics()
                .gc_freed_bytes
                .inc_by(report.bytes_freed);
            info!(?report, "garbage collected")
        }
        Ok(Ok(_)) => {}
        Ok(Err(error)) => warn!(%error, "garbage collection failed"),
        Err(_) => warn!("garbage collection panicked"),
    }
}

/// What the router passes on: to the relay, its stanzas (relay requests
/// and bounces, presences, the answers to its probes and to its server
/// query); to the commands, the XEP-0050 requests.
pub struct Component {
    relay: Arc<Relay>,
    commands: Commands<Relay>,
    link: LinkState,
}

impl Component {
    /// The relay, and the commands run on `store`, `slots` and `relay`.
    pub fn new(
        settings: impl Into<LiveConfig>,
        store: Store,
        slots: SlotService,
        relay: Arc<Relay>,
    ) -> Component {
        let link = LinkState::default();
        let commands = Commands::new(settings, store, slots, relay.clone(), link.clone());
        Component {
            relay,
            commands,
            link,
        }
    }

    /// Whether the link is up, as the component sees it come and go.
    pub fn link_state(&self) -> LinkState {
        self.link.clone()
    }
}

impl Delegate for Component {
    async fn handle_message(&self, message: Element) -> Option<Element> {
        self.relay.handle_message(message).await
    }

    async fn handle_presence(&self, presence: &Element) {
        self.relay.handle_presence(presence).await
    }

    async fn handle_iq_response(&self, iq: &Element) -> bool {
        self.relay.handle_iq_response(iq).await
    }

    fn link_up(&self) -> Vec<Element> {
        self.link.set(true);
        self.relay.link_up()
    }

    fn link_down(&self) {
        self.link.set(false);
        self.relay.link_down()
    }

    fn command_items(&self, asker: &Jid) -> Vec<ListedCommand> {
        self.commands.listed(asker)
    }

    async fn execute_command(
        &self,
        asker: &Jid,
        request: CommandRequest,
    ) -> Result<CommandResponse, StanzaError> {
        self.commands.execute(asker, request).await
    }
}
