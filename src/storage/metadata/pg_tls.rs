//! TLS to the PostgreSQL database, for a cluster whose database is not on
//! the instance's own machine or a trusted private network.
//!
//! The URL says whether to use it, as libpq's do: `sslmode=require` turns
//! it on, and then Satchel always checks the server's certificate against
//! trusted roots and its name against the URL's host (libpq's
//! `verify-full`): TLS that accepts any certificate would hand the
//! database password to whoever sits in between. The roots are the PEM
//! file `metadata.ca_file` names (a private CA, as most databases use), or
//! the system's. Without `sslmode=require` (tokio-postgres reads `prefer`,
//! its default, and `disable`), the connection is plain, as before, and a
//! `ca_file` set then is refused rather than silently ignored.
//!
//! A server that authenticates its clients by certificate (`hostssl ...
//! cert` in pg_hba.conf, the certificate's CN the database user) gets the
//! one `metadata.client_cert_file` and `metadata.client_key_file` name,
//! loaded and checked (the key must be the certificate's) before any
//! connection, so a wrong file stops the start with its name. Client
//! certificates are often short-lived and renewed in place, and the pool's
//! connections are made again as they drop: each new connection's
//! handshake reads the files again if they changed
//! ([`RenewedClientCert`]); a renewal that cannot be loaded leaves the
//! certificate in use and logs a warning naming the file.
//!
//! rustls on the `ring` provider, as Satchel's own HTTPS, through the
//! `tokio-postgres-rustls` adapter.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{ClientCert, PostgresCluster};
use crate::pem::{load_certified_key, pair_stamps, provider, read_pem, PairError, Stamps};
use crate::storage::error::StorageError;

/// The TLS connector the URL's `sslmode` asks for, with the cluster's
/// roots and client certificate: `None` for a plain connection.
pub(super) fn connector(
    config: &tokio_postgres::Config,
    cluster: &PostgresCluster,
) -> Result<Option<MakeRustlsConnect>, StorageError> {
    if config.get_ssl_mode() != SslMode::Require {
        let set = match (&cluster.ca_file, &cluster.client_cert) {
            (Some(path), _) => format!("metadata.ca_file {}", path.display()),
            (None, Some(pair)) => {
                format!("metadata.client_cert_file {}", pair.cert_file.display())
            }
            (None, None) => return Ok(None),
        };
        return Err(StorageError::Options(format!(
            "{set} is set but metadata.url does not ask for TLS: add ?sslmode=require to it"
        )));
    }
    let roots = match &cluster.ca_file {
        Some(path) => roots_from(path)?,
        None => system_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| StorageError::Options(format!("TLS to the database: {error}")))?
        .with_root_certificates(roots);
    let client = match &cluster.client_cert {
        Some(pair) => builder.with_client_cert_resolver(Arc::new(RenewedClientCert::load(pair)?)),
        None => builder.with_no_client_auth(),
    };
    Ok(Some(MakeRustlsConnect::new(client)))
}

/// Why a client certificate cannot be used: the configuration key of the
/// file at fault, and the file and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{key} {reason}")]
pub struct ClientCertError {
    pub key: &'static str,
    pub reason: String,
}

impl ClientCert {
    /// The certificate and its key, loaded and checked (`satchel
    /// check-config` asks too, to name the file at fault).
    pub fn load(&self) -> Result<CertifiedKey, ClientCertError> {
        load_certified_key(&self.cert_file, &self.key_file).map_err(|error| {
            let (key, path, reason) = match error {
                PairError::Cert(reason) => ("metadata.client_cert_file", &self.cert_file, reason),
                PairError::Key(reason) => ("metadata.client_key_file", &self.key_file, reason),
            };
            ClientCertError {
                key,
                reason: format!("{}: {reason}", path.display()),
            }
        })
    }
}

/// [`ClientCert::load`], as the store reports it.
fn client_cert(pair: &ClientCert) -> Result<CertifiedKey, StorageError> {
    pair.load()
        .map_err(|error| StorageError::Options(error.to_string()))
}

/// The client certificate shown at each new connection's handshake, read
/// again when its files have changed since they were last read. The check
/// is two `stat` calls on the connecting thread, once per new connection:
/// the pool's connections are few and long-lived.
#[derive(Debug)]
struct RenewedClientCert {
    pair: ClientCert,
    /// The files' stamps when last read or tried, and the certificate in use.
    loaded: Mutex<(Stamps, Arc<CertifiedKey>)>,
}

impl RenewedClientCert {
    fn load(pair: &ClientCert) -> Result<RenewedClientCert, StorageError> {
        // Stamped before reading: a change while reading is seen next time.
        let stamps = pair_stamps(&pair.cert_file, &pair.key_file);
        let certified = client_cert(pair)?;
        Ok(RenewedClientCert {
            pair: pair.clone(),
            loaded: Mutex::new((stamps, Arc::new(certified))),
        })
    }

    /// The certificate to show now: the files again if they changed.
    fn current(&self) -> Arc<CertifiedKey> {
        // Only assignments happen under the lock; a poisoned one holds sound data.
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stamps = pair_stamps(&self.pair.cert_file, &self.pair.key_file);
        if stamps != loaded.0 {
            loaded.0 = stamps;
            match client_cert(&self.pair) {
                Ok(renewed) => {
                    tracing::info!(cert = %self.pair.cert_file.display(),
                        "database client certificate reloaded");
                    loaded.1 = Arc::new(renewed);
                }
                Err(error) => tracing::warn!(%error,
                    "database client certificate not reloaded; the previous one stays in use"),
            }
        }
        loaded.1.clone()
    }
}

impl ResolvesClientCert for RenewedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Every certificate in the PEM file at `path`, each a trusted root.
fn roots_from(path: &Path) -> Result<RootCertStore, StorageError> {
    let refused = |reason: String| {
        StorageError::Options(format!("metadata.ca_file {}: {reason}", path.display()))
    };
    let pem = read_pem(path).map_err(refused)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| refused(format!("not PEM: {error}")))?;
    if certs.is_empty() {
        return Err(refused("no CERTIFICATE in the file".to_owned()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|error| refused(format!("not a usable certificate: {error}")))?;
    }
    Ok(roots)
}

/// The roots the system trusts (`/etc/ssl/certs` on Debian).
fn system_roots() -> Result<RootCertStore, StorageError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(StorageError::Options(
            "metadata.url asks for TLS, and this system trusts no root certificate: \
             set metadata.ca_file"
                .to_owned(),
        ));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> tokio_postgres::Config {
        url.parse().unwrap()
    }

    fn cluster(ca_file: Option<&Path>, client_cert: Option<ClientCert>) -> PostgresCluster {
        PostgresCluster {
            url: String::new(),
            ca_file: ca_file.map(Path::to_owned),
            client_cert,
            instance: "a".into(),
            lease: std::time::Duration::from_secs(10),
        }
    }

    /// Why `connector` refused `url` for `cluster`.
    fn refused(url: &str, cluster: &PostgresCluster) -> String {
        match connector(&config(url), cluster) {
            Ok(_) => panic!("{cluster:?} accepted"),
            Err(error) => error.to_string(),
        }
    }

    /// Why `connector` refused `url` with `ca_file`.
    fn refusal(url: &str, ca_file: &Path) -> String {
        refused(url, &cluster(Some(ca_file), None))
    }

    const CERT: &str = include_str!("../../http/testdata/cert.pem");
    const KEY: &str = include_str!("../../http/testdata/key.pem");
    const OTHER_KEY: &str = include_str!("../../http/testdata/other-key.pem");
    const OTHER_CERT: &str = include_str!("../../http/testdata/other-cert.pem");

    /// A client certificate written into `dir`, its key `key`.
    fn client_pair(dir: &Path, key: &str) -> ClientCert {
        let pair = ClientCert {
            cert_file: dir.join("client.crt"),
            key_file: dir.join("client.key"),
        };
        std::fs::write(&pair.cert_file, CERT).unwrap();
        std::fs::write(&pair.key_file, key).unwrap();
        pair
    }

    const PLAIN: &str = "postgres://satchel:pw@127.0.0.1:5432/satchel";
    const REQUIRED: &str = "postgres://satchel:pw@127.0.0.1:5432/satchel?sslmode=require";

    #[test]
    fn only_sslmode_require_turns_tls_on() {
        assert!(connector(&config(PLAIN), &cluster(None, None))
            .unwrap()
            .is_none());
        let disabled = config(&format!("{PLAIN}?sslmode=disable"));
        assert!(connector(&disabled, &cluster(None, None))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_client_certificate_with_its_key_is_taken_and_needs_tls() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, CERT).unwrap();
        let pair = client_pair(dir.path(), KEY);
        let with_pair = cluster(Some(&ca), Some(pair.clone()));
        assert!(connector(&config(REQUIRED), &with_pair).unwrap().is_some());
        let error = refused(PLAIN, &cluster(None, Some(pair)));
        assert!(error.contains(": metadata.client_cert_file "), "{error}");
        assert!(error.contains("add ?sslmode=require"), "{error}");
    }

    /// Writes `text` at `path` as renewal tools do: a new file renamed over.
    fn renew(path: &Path, text: &str) {
        let next = path.with_extension("next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, path).unwrap();
    }

    fn shown(cert: &RenewedClientCert) -> Vec<u8> {
        cert.resolve(&[], &[]).unwrap().cert[0].as_ref().to_vec()
    }

    fn der_of(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    #[test]
    fn a_renewed_client_certificate_is_shown_from_the_next_handshake_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let pair = client_pair(dir.path(), KEY);
        let cert = RenewedClientCert::load(&pair).unwrap();
        assert_eq!(shown(&cert), der_of(CERT));

        renew(&pair.key_file, OTHER_KEY);
        renew(&pair.cert_file, OTHER_CERT);
        assert_eq!(shown(&cert), der_of(OTHER_CERT));

        renew(&pair.key_file, "-----BEGIN PRIVATE KEY-----\nAAAA\n");
        assert_eq!(shown(&cert), der_of(OTHER_CERT), "the one in use stays");
        renew(&pair.key_file, KEY);
        assert_eq!(
            shown(&cert),
            der_of(OTHER_CERT),
            "a mismatched pair is not taken"
        );
        renew(&pair.cert_file, CERT);
        assert_eq!(shown(&cert), der_of(CERT));
    }

    #[test]
    fn a_client_key_that_is_not_the_certificates_is_refused_with_its_key_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, CERT).unwrap();
        let wrong = cluster(Some(&ca), Some(client_pair(dir.path(), OTHER_KEY)));
        let error = refused(REQUIRED, &wrong);
        assert!(error.contains(": metadata.client_key_file "), "{error}");
        assert!(
            error.contains("is not the key of the certificate"),
            "{error}"
        );

        let mut hostile = client_pair(dir.path(), "-----BEGIN PRIVATE KEY-----\nAAAA\n");
        let error = refused(REQUIRED, &cluster(Some(&ca), Some(hostile.clone())));
        assert!(error.contains(": metadata.client_key_file "), "{error}");
        hostile.cert_file = dir.path().join("absent.pem");
        let error = refused(REQUIRED, &cluster(Some(&ca), Some(hostile)));
        assert!(error.contains(": metadata.client_cert_file "), "{error}");
        assert!(error.contains("cannot open"), "{error}");
    }

    #[test]
    fn a_ca_file_without_tls_is_refused_not_ignored() {
        let error = refusal(PLAIN, Path::new("/etc/ca.pem"));
        assert!(
            error.to_string().contains("add ?sslmode=require"),
            "{error}"
        );
    }

    #[test]
    fn hostile_ca_files_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let noise: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let huge = vec![b'A'; crate::pem::MAX_PEM_BYTES as usize + 1];
        let cases: [(&str, &[u8], &str); 5] = [
            ("empty.pem", b"", "no CERTIFICATE"),
            (
                "key.pem",
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "no CERTIFICATE",
            ),
            (
                "junk.pem",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "not a usable certificate",
            ),
            ("noise.pem", &noise, ""),
            ("huge.pem", &huge, "larger than"),
        ];
        for (name, bytes, reason) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let error = refusal(REQUIRED, &path);
            assert!(error.contains(&path.display().to_string()), "{error}");
            assert!(error.contains(reason), "{name}: {error}");
        }
        let missing = dir.path().join("missing.pem");
        let error = refusal(REQUIRED, &missing);
        assert!(error.contains("cannot open"), "{error}");
    }
}
