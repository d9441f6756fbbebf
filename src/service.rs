//! Starting and stopping the whole service.
//!
//! Everything that can fail because of the operator's setup (the store, the
//! key file, the HTTP port) is tried before Satchel reports itself started, so
//! a bad deployment fails at once with one clear line. The XMPP link is the
//! exception: the server may come up later, and Satchel waits for it.

use std::sync::Arc;

use minidom::Element;
use tracing::{info, warn};

use crate::clock::unix_now;
use crate::config::Config;
use crate::http::{self, HttpState};
use crate::relay::downloads::DownloadTracker;
use crate::relay::{Relay, RelayStartError};
use crate::slots::SlotService;
use crate::storage::{StorageError, Store, StoreOptions, INLINE_MAX_BYTES};
use crate::xmpp::delegate::Delegate;
use crate::xmpp::{connection, router::Router};

/// How long uploads in flight may take to finish after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Plaintext bytes per stored chunk.
const CHUNK_SIZE: u32 = 64 * 1024;

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
    #[error("{0}")]
    OpenFiles(String),
    #[error("cannot install the signal handler: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Relay(#[from] RelayStartError),
}

/// Runs Satchel until SIGTERM or SIGINT, then stops accepting connections,
/// lets uploads in flight finish (for a while), and flushes the store.
pub async fn run(config: Config) -> Result<(), StartError> {
    crate::logging::show_jids(config.show_jids);
    // The port first: it has no side effects, the store may create a key.
    let listener = http::listen(config.http.listen).map_err(|source| StartError::Listen {
        address: config.http.listen,
        source,
    })?;
    let open_file_limit = http::connections::raise_open_file_limit();
    let max_connections =
        http::connections::connection_cap(config.http.max_connections, open_file_limit)
            .map_err(StartError::OpenFiles)?;
    let options = StoreOptions {
        path: config.storage.path.clone(),
        key_file: config.storage.key_file.clone(),
        previous_key_files: config.storage.previous_key_files.clone(),
        cache_capacity: config.storage.cache_capacity_bytes,
        chunk_size: CHUNK_SIZE,
        inline_max_bytes: Some(INLINE_MAX_BYTES),
    };
    let store_path = config.storage.path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(options))
        .await
        .expect("store opening does not panic")
        .map_err(|source| StartError::Store {
            path: store_path,
            source,
        })?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(StartError::Signals)?;

    let (outgoing, outgoing_rx) = tokio::sync::mpsc::channel(connection::OUTGOING_QUEUE);
    let downloads = if config.relay.delete_after_download {
        let awaited = store
            .open_tree("awaited_downloads")
            .map_err(|source| StartError::Store {
                path: config.storage.path.clone(),
                source,
            })?;
        Some(DownloadTracker::new(awaited, store.clone()))
    } else {
        None
    };
    let relay = Relay::start(&config, store.clone(), outgoing.clone(), downloads.clone())?;
    let slots = SlotService::new(&config, store.clone());
    let redeemer = slots.redeemer();
    let router = Arc::new(Router::new(config.component.jid.clone(), slots, relay));
    tokio::spawn(connection::run(
        config.component.clone(),
        router,
        outgoing,
        outgoing_rx,
    ));
    tokio::spawn(collect_garbage_periodically(store.clone(), config.clone()));
    let http_state = HttpState::new(&config, store.clone(), downloads, redeemer);
    let app = http::router(&config, http_state.clone());
    let http_config = config.clone();
    let (stop_accepting, accepting) = tokio::sync::watch::channel(true);
    let connections = http::connections::ConnectionLimit::new(max_connections);
    let server = tokio::spawn(async move {
        http::serve(listener, app, &http_config, connections, accepting).await
    });

    info!(
        jid = %config.component.jid,
        http = %config.http.listen,
        max_connections,
        public_url = %config.http.public_url,
        "Satchel started"
    );
    tokio::select! {
        _ = terminate.recv() => info!("SIGTERM received, stopping"),
        _ = tokio::signal::ctrl_c() => info!("interrupted, stopping"),
    }
    // No new connections; uploads in flight get a grace period to finish.
    let _ = stop_accepting.send(false);
    let _ = server.await;
    if http_state.uploads_finished(SHUTDOWN_GRACE).await {
        info!("no upload in flight");
    } else {
        warn!(grace = ?SHUTDOWN_GRACE, "uploads still in flight are abandoned; their slots can be retried");
    }
    match tokio::task::spawn_blocking(move || store.flush()).await {
        Ok(Ok(())) => info!("store flushed"),
        Ok(Err(error)) => warn!(%error, "flushing the store failed"),
        Err(_) => warn!("flushing the store panicked"),
    }
    Ok(())
}

/// Deletes expired files, expired slots and abandoned uploads, for ever.
async fn collect_garbage_periodically(store: Store, config: Config) {
    let mut interval = tokio::time::interval(config.retention.gc_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let abandoned_after = config.retention.abandoned_upload.as_secs();
    loop {
        interval.tick().await;
        let store = store.clone();
        let outcome =
            tokio::task::spawn_blocking(move || store.collect_garbage(unix_now(), abandoned_after))
                .await;
        match outcome {
            Ok(Ok(report)) if report != Default::default() => info!(?report, "garbage collected"),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => warn!(%error, "garbage collection failed"),
            Err(_) => warn!("garbage collection panicked"),
        }
    }
}

/// The relay takes the stanzas the router does not answer: relay requests and
/// bounces, presences, the answers to its probes and to its server query.
impl Delegate for Relay {
    async fn handle_message(&self, message: Element) -> Option<Element> {
        Relay::handle_message(self, message).await
    }

    async fn handle_presence(&self, presence: &Element) {
        Relay::handle_presence(self, presence).await
    }

    async fn handle_iq_response(&self, iq: &Element) -> bool {
        Relay::handle_iq_response(self, iq).await
    }

    fn link_up(&self) -> Vec<Element> {
        Relay::link_up(self)
    }

    fn link_down(&self) {
        Relay::link_down(self)
    }
}
