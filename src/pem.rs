//! What Satchel's two TLS ends share: the HTTPS it serves (`http::tls`)
//! and the TLS it speaks to PostgreSQL (`storage::metadata::pg_tls`). Both
//! use rustls on the `ring` provider and read PEM files an operator names,
//! so both read them here, bounded, and both load a certificate with its
//! key here (the server's, and the client certificate a database may ask
//! for).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Largest PEM file read: a chain of a few certificates is a few KiB, and a
/// system's whole bundle of roots about 200 KiB, so this only stops a wrong
/// path (a log, a device) from being read whole.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The provider every handshake and key uses.
///
/// rustls 0.23.48 deprecates the ring provider for lacking post-quantum key
/// exchange, to steer users to aws-lc-rs, which needs a C toolchain and
/// CMake to build; Satchel does without it for now.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The bytes of a PEM file, at most [`MAX_PEM_BYTES`] of them; the error
/// says why in a few words, for the caller to name the file and its key.
pub fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|error| format!("cannot open: {error}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read: {error}"))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!("larger than {MAX_PEM_BYTES} bytes; not a PEM file"));
    }
    Ok(bytes)
}

/// Which file of a certificate and its key cannot be used, and why (in a
/// few words, for the caller to name the file and its configuration key).
#[derive(Debug)]
pub enum PairError {
    Cert(String),
    Key(String),
}

/// Reads a certificate chain and its private key (PKCS#8, PKCS#1 or SEC1)
/// from the PEM files `cert` and `key`, and checks that the key is the
/// certificate's.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, PairError> {
    let cert_pem = read_pem(cert).map_err(PairError::Cert)?;
    let key_pem = read_pem(key).map_err(PairError::Key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| PairError::Cert(format!("not PEM: {error}")))?;
    if chain.is_empty() {
        return Err(PairError::Cert("no CERTIFICATE in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => {
            PairError::Key("no PRIVATE KEY in the file".into())
        }
        error => PairError::Key(format!("not PEM: {error}")),
    })?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|error| PairError::Key(format!("not a usable private key: {error}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(PairError::Key(format!(
                "is not the key of the certificate in {}",
                cert.display()
            )))
        }
        Err(error) => Err(PairError::Cert(format!(
            "not a usable certificate: {error}"
        ))),
    }
}

/// Each file's modification time, size and inode, for a certificate and its
/// key (renewal tools often write a new file and rename it over the old); a
/// change of either asks for a reload. Unreadable metadata counts as a
/// value of its own, so a file that comes back is noticed.
pub type Stamps = [Option<(SystemTime, u64, u64)>; 2];

/// The [`Stamps`] of the files `cert` and `key` now.
pub fn pair_stamps(cert: &Path, key: &Path) -> Stamps {
    use std::os::unix::fs::MetadataExt;
    let stamp = |path: &Path| {
        let metadata = std::fs::metadata(path).ok()?;
        Some((metadata.modified().ok()?, metadata.len(), metadata.ino()))
    };
    [stamp(cert), stamp(key)]
}
