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
//! rustls on the `ring` provider, as Satchel's own HTTPS, through the
//! `tokio-postgres-rustls` adapter.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::pem::{provider, read_pem};
use crate::storage::error::StorageError;

/// The TLS connector the URL's `sslmode` asks for: `None` for a plain
/// connection.
pub(super) fn connector(
    config: &tokio_postgres::Config,
    ca_file: Option<&Path>,
) -> Result<Option<MakeRustlsConnect>, StorageError> {
    if config.get_ssl_mode() != SslMode::Require {
        return match ca_file {
            Some(path) => Err(StorageError::Options(format!(
                "metadata.ca_file {} is set but metadata.url does not ask for TLS: \
                 add ?sslmode=require to it",
                path.display()
            ))),
            None => Ok(None),
        };
    }
    let roots = match ca_file {
        Some(path) => roots_from(path)?,
        None => system_roots()?,
    };
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| StorageError::Options(format!("TLS to the database: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(client)))
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

    /// Why `connector` refused `url` with `ca_file`.
    fn refusal(url: &str, ca_file: &Path) -> String {
        match connector(&config(url), Some(ca_file)) {
            Ok(_) => panic!("{} accepted", ca_file.display()),
            Err(error) => error.to_string(),
        }
    }

    const PLAIN: &str = "postgres://satchel:pw@127.0.0.1:5432/satchel";
    const REQUIRED: &str = "postgres://satchel:pw@127.0.0.1:5432/satchel?sslmode=require";

    #[test]
    fn only_sslmode_require_turns_tls_on() {
        assert!(connector(&config(PLAIN), None).unwrap().is_none());
        let disabled = config(&format!("{PLAIN}?sslmode=disable"));
        assert!(connector(&disabled, None).unwrap().is_none());
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
