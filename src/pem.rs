//! What Satchel's two TLS ends share: the HTTPS it serves (`http::tls`)
//! and the TLS it speaks to PostgreSQL (`storage::metadata::pg_tls`). Both
//! use rustls on the `ring` provider and read PEM files an operator names,
//! so both read them here, bounded.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

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
