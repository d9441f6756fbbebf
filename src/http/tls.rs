//! HTTPS without a proxy: the certificate Satchel serves, loaded from the
//! operator's PEM files (`http.tls_cert`, `http.tls_key`) and swapped in place
//! when they change.
//!
//! Mobile clients (Conversations, Dino, Monal) accept only `https` upload
//! URLs, and a small operator may run no reverse proxy, so Satchel can
//! terminate TLS itself, with rustls on the `ring` provider (no OpenSSL, no C
//! toolchain for aws-lc). Certificates are renewed every few weeks (ACME), so
//! the certificate is not fixed at start-up: [`ReloadingCert`] hands rustls
//! the current one at each handshake, and [`ReloadingCert::reload`] replaces
//! it for the handshakes that follow, leaving open connections as they are.
//! A reload is asked for by SIGHUP (the service's signal handler) or noticed
//! by [`watch_files`], which polls the files' modification times: renewal
//! tools write new files and rarely signal anyone.
//!
//! A start with a missing, unreadable or mismatched pair fails with one line
//! naming the key at fault; a reload that fails keeps the certificate in use
//! and logs a warning naming the file, so a half-written renewal does not
//! take the service down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::config::TlsFiles;
use crate::pem::{load_certified_key, pair_stamps, provider, PairError, Stamps};

/// How often [`watch_files`] looks at the files' modification times.
pub const POLL_EVERY: Duration = Duration::from_secs(3);

/// Why a certificate or key cannot be used; each names its key and file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("http.tls_cert {}: {reason}", path.display())]
    Cert { path: PathBuf, reason: String },
    #[error("http.tls_key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
}

impl TlsError {
    /// The file at fault.
    pub fn path(&self) -> &Path {
        match self {
            TlsError::Cert { path, .. } | TlsError::Key { path, .. } => path,
        }
    }
}

/// Reads the certificate chain and its key from `files`, and checks that
/// the key is the certificate's.
pub fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    load_certified_key(&files.cert, &files.key).map_err(|error| match error {
        PairError::Cert(reason) => TlsError::Cert {
            path: files.cert.clone(),
            reason,
        },
        PairError::Key(reason) => TlsError::Key {
            path: files.key.clone(),
            reason,
        },
    })
}

fn stamps(files: &TlsFiles) -> Stamps {
    pair_stamps(&files.cert, &files.key)
}

/// The certificate handed to each new handshake, replaceable while Satchel runs.
pub struct ReloadingCert {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamps when they were last loaded or tried.
    loaded: Mutex<Stamps>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the certificate from `files`; the error names the key at fault.
    pub fn load(files: TlsFiles) -> Result<Arc<ReloadingCert>, TlsError> {
        // Stamped before reading: a change while reading is seen next time.
        let stamped = stamps(&files);
        let certified = load(&files)?;
        Ok(Arc::new(ReloadingCert {
            files,
            current: RwLock::new(Arc::new(certified)),
            loaded: Mutex::new(stamped),
        }))
    }

    /// Reads the files again and serves what they hold to the handshakes
    /// that follow; on failure the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.lock_loaded() = stamps(&self.files);
        let certified = load(&self.files)?;
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(certified);
        Ok(())
    }

    /// [`reload`](Self::reload), logged: the warning names the file at fault.
    pub fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(()) => info!(cert = %self.files.cert.display(), why, "TLS certificate reloaded"),
            Err(error) => warn!(
                file = %error.path().display(),
                why,
                %error,
                "TLS certificate not reloaded; the previous one stays in use"
            ),
        }
    }

    /// Whether either file changed since it was last loaded or tried.
    fn files_changed(&self) -> bool {
        *self.lock_loaded() != stamps(&self.files)
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, Stamps> {
        // Only assignments happen under the lock; a poisoned one holds sound data.
        self.loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        )
    }
}

/// The acceptor of HTTPS connections: HTTP/1.1 only, with `cert`.
pub fn acceptor(cert: Arc<ReloadingCert>) -> TlsAcceptor {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

/// Reloads `cert` whenever its files change, checking every [`POLL_EVERY`], for ever.
pub async fn watch_files(cert: Arc<ReloadingCert>) {
    let mut interval = tokio::time::interval(POLL_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let watched = cert.clone();
        let changed = tokio::task::spawn_blocking(move || watched.files_changed()).await;
        if changed.unwrap_or(false) {
            let reloading = cert.clone();
            let _ =
                tokio::task::spawn_blocking(move || reloading.reload_logged("the files changed"))
                    .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pem::MAX_PEM_BYTES;

    // A throwaway self-signed pair made for these tests (P-256, CN=localhost),
    // and a second key that is not its.
    const CERT: &str = include_str!("testdata/cert.pem");
    const KEY: &str = include_str!("testdata/key.pem");
    const OTHER_KEY: &str = include_str!("testdata/other-key.pem");
    const OTHER_CERT: &str = include_str!("testdata/other-cert.pem");

    fn files(dir: &Path, cert: &[u8], key: &[u8]) -> TlsFiles {
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        files
    }

    fn error(cert: &[u8], key: &[u8]) -> TlsError {
        let dir = tempfile::tempdir().unwrap();
        load(&files(dir.path(), cert, key)).unwrap_err()
    }

    fn assert_cert_error(error: TlsError, wanted: &str) {
        let text = error.to_string();
        assert!(matches!(error, TlsError::Cert { .. }), "{text}");
        assert!(text.starts_with("http.tls_cert "), "{text}");
        assert!(text.contains(wanted), "{text}");
    }

    fn assert_key_error(error: TlsError, wanted: &str) {
        let text = error.to_string();
        assert!(matches!(error, TlsError::Key { .. }), "{text}");
        assert!(text.starts_with("http.tls_key "), "{text}");
        assert!(text.contains(wanted), "{text}");
    }

    fn served_der(cert: &ReloadingCert) -> Vec<u8> {
        cert.current.read().unwrap().cert[0].as_ref().to_vec()
    }

    #[test]
    fn a_matching_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        let certified = load(&files(dir.path(), CERT.as_bytes(), KEY.as_bytes())).unwrap();
        assert_eq!(certified.cert.len(), 1);
    }

    #[test]
    fn missing_files_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = files(dir.path(), CERT.as_bytes(), KEY.as_bytes());
        files.key = dir.path().join("absent.pem");
        assert_key_error(load(&files).unwrap_err(), "absent.pem: cannot open");
        files.cert = dir.path().join("gone.pem");
        assert_cert_error(load(&files).unwrap_err(), "gone.pem: cannot open");
        // A directory is not a file either.
        files.cert = dir.path().to_owned();
        assert_cert_error(load(&files).unwrap_err(), "cannot read");
    }

    #[test]
    fn garbage_is_refused() {
        assert_cert_error(error(b"hello", KEY.as_bytes()), "no CERTIFICATE");
        assert_cert_error(error(b"", KEY.as_bytes()), "no CERTIFICATE");
        assert_key_error(error(CERT.as_bytes(), b"hello"), "no PRIVATE KEY");
        // The key where the certificate should be, and the other way round.
        assert_cert_error(error(KEY.as_bytes(), KEY.as_bytes()), "no CERTIFICATE");
        assert_key_error(error(CERT.as_bytes(), CERT.as_bytes()), "no PRIVATE KEY");
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        assert_key_error(
            error(CERT.as_bytes(), OTHER_KEY.as_bytes()),
            "is not the key of the certificate",
        );
    }

    #[test]
    fn hostile_pem_is_refused_without_panic() {
        let cert_error = |cert: &[u8]| error(cert, KEY.as_bytes());
        let key_error = |key: &[u8]| error(CERT.as_bytes(), key);
        // A section that never ends.
        assert_cert_error(
            cert_error(b"-----BEGIN CERTIFICATE-----\nAAAA\n"),
            "not PEM",
        );
        // Not base64.
        assert_cert_error(
            cert_error(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
            "not PEM",
        );
        // Well-formed PEM around DER that is not a certificate.
        let junk_cert = b"-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n";
        assert_cert_error(cert_error(junk_cert), "not a usable certificate");
        let junk_key = b"-----BEGIN PRIVATE KEY-----\nAAAAAAAA\n-----END PRIVATE KEY-----\n";
        assert_key_error(key_error(junk_key), "not a usable private key");
        // A truncated certificate.
        let truncated: String =
            CERT.lines().take(4).collect::<Vec<_>>().join("\n") + "\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            cert_error(truncated.as_bytes()),
            TlsError::Cert { .. }
        ));
        // Binary noise, NULs and a start line without an end.
        let noise: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        assert!(matches!(cert_error(&noise), TlsError::Cert { .. }));
        assert_cert_error(cert_error(b"-----BEGIN \0\xff-----\n"), "not PEM");
        // Too large to be a PEM file: refused before parsing.
        let huge = vec![b'A'; MAX_PEM_BYTES as usize + 1];
        assert_key_error(key_error(&huge), "larger than");
    }

    #[test]
    fn a_failed_reload_keeps_the_certificate_and_a_good_one_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path(), CERT.as_bytes(), KEY.as_bytes());
        let cert = ReloadingCert::load(files.clone()).unwrap();
        let first = served_der(&cert);
        assert!(!cert.files_changed());

        // Half of a renewal: the new certificate, the old key.
        // (A line more in each, so that the change shows in the size even
        // within the file system's clock tick.)
        std::fs::write(&files.cert, format!("{OTHER_CERT}\n")).unwrap();
        assert!(cert.files_changed());
        assert_key_error(cert.reload().unwrap_err(), "is not the key");
        assert_eq!(served_der(&cert), first);
        assert!(
            !cert.files_changed(),
            "a failed try is not retried until the files change"
        );

        std::fs::write(&files.key, format!("{OTHER_KEY}\n")).unwrap();
        assert!(cert.files_changed());
        cert.reload().unwrap();
        assert_ne!(served_der(&cert), first);
    }
}
