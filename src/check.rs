//! `satchel check-config`: tries what start-up would, without starting.
//!
//! An operator editing `/etc/satchel/satchel.toml` wants to know before the
//! restart whether Satchel will come back. This reads the file with the same
//! parser and checks as start-up ([`Config::load`]), then looks at what
//! start-up would use: the store directory (there or creatable, writable by
//! this user), the master key file (as strict as start-up: a regular file of
//! 32 bytes, readable by its owner only, outside the store; or, missing,
//! creatable, and not missing from a store that already holds data), the
//! earlier key files (they must exist), the HTTP port (bound and released at
//! once), the connection cap against the open-file limit, and the HTTPS
//! certificate and key when set (loaded as start-up loads them: both
//! readable, and the key the certificate's), and with the S3 backend the
//! bucket (listed once, as at start-up).
//!
//! It writes nothing and starts nothing: the store is not opened (sled would
//! create files and take a lock a running Satchel holds), no key is made.
//! So one answer differs from start-up's: a missing key file next to a store
//! directory that is not empty is reported, where start-up makes a new key
//! if the store turns out to hold no file yet. Each problem is one line that
//! starts with the key at fault, and all are reported, not just the first.
//!
//! Run it as the user the service runs as: writability and the port are
//! judged for the user running the check.

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError, MAX_FILE_BYTES};
use crate::http::connections::{connection_cap, raise_open_file_limit};
use crate::http::tls::{self, TlsError};
use crate::storage::master_key::MasterKey;
use crate::storage::{probe_bucket, probe_database, BlobBackend, MetadataBackend, StorageError};

/// One thing that would stop Satchel, or make it misbehave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The configuration key at fault (`--config` for the file itself).
    pub key: &'static str,
    pub reason: String,
}

/// One line, whatever the reason quotes: control characters (a newline or a
/// NUL in a configured path) are shown escaped.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.key)?;
        for c in self.reason.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

fn problem(key: &'static str, reason: impl Into<String>) -> Problem {
    Problem {
        key,
        reason: reason.into(),
    }
}

/// Checks the configuration file at `path` and what it points at. The
/// line to print when all is well, or every problem found.
pub fn check_config(path: &Path) -> Result<String, Vec<Problem>> {
    let config = read(path).map_err(|problem| vec![problem])?;
    let mut problems = Vec::new();
    let store = check_store_dir(&config.storage.path, &mut problems);
    check_key_file(&config, store, &mut problems);
    check_previous_key_files(&config, store, &mut problems);
    check_listen(&config, &mut problems);
    check_tls(&config, &mut problems);
    check_bucket(&config, &mut problems);
    check_database(&config, &mut problems);
    if problems.is_empty() {
        Ok(format!(
            "config OK: {}, http on {}, store {}",
            config.component.jid,
            config.http.listen,
            config.storage.path.display()
        ))
    } else {
        Err(problems)
    }
}

/// The configuration, read as start-up reads it. Anything but a regular
/// file is refused first: reading a FIFO would wait for a writer forever.
fn read(path: &Path) -> Result<Config, Problem> {
    let metadata = fs::metadata(path).map_err(|error| {
        problem(
            "--config",
            format!("cannot read {}: {error}", path.display()),
        )
    })?;
    if !metadata.is_file() {
        return Err(problem(
            "--config",
            format!("{} is not a regular file", path.display()),
        ));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(problem(
            "--config",
            format!(
                "{} holds {} bytes, more than a configuration's {MAX_FILE_BYTES}",
                path.display(),
                metadata.len()
            ),
        ));
    }
    Config::load(path).map_err(|error| match error {
        ConfigError::Invalid { key, reason } => problem(key, reason),
        // The text itself is at fault: the message quotes the line.
        other => problem("--config", other.to_string()),
    })
}

/// What the store directory is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreDir {
    /// There, and usable; whether it holds anything.
    Exists { empty: bool },
    /// Not there, and start-up can create it.
    Creatable,
    /// Unusable (reported).
    Unusable,
}

fn check_store_dir(path: &Path, problems: &mut Vec<Problem>) -> StoreDir {
    const KEY: &str = "storage.path";
    match fs::metadata(path) {
        Ok(metadata) if !metadata.is_dir() => {
            problems.push(problem(
                KEY,
                format!("{} is not a directory", path.display()),
            ));
            StoreDir::Unusable
        }
        Ok(_) => match writable_dir(path) {
            Ok(()) => StoreDir::Exists {
                empty: fs::read_dir(path)
                    .map(|mut entries| entries.next().is_none())
                    .unwrap_or(false),
            },
            Err(reason) => {
                problems.push(problem(KEY, reason));
                StoreDir::Unusable
            }
        },
        Err(error) if missing(&error) => match creatable(path) {
            Ok(()) => StoreDir::Creatable,
            Err(reason) => {
                problems.push(problem(
                    KEY,
                    format!("{} cannot be created: {reason}", path.display()),
                ));
                StoreDir::Unusable
            }
        },
        Err(error) => {
            problems.push(problem(KEY, format!("{}: {error}", path.display())));
            StoreDir::Unusable
        }
    }
}

fn check_key_file(config: &Config, store: StoreDir, problems: &mut Vec<Problem>) {
    const KEY: &str = "storage.key_file";
    let key_file = &config.storage.key_file;
    let store_path = &config.storage.path;
    match fs::symlink_metadata(key_file) {
        Ok(_) => {
            if let Err(error) = check_existing_key(key_file, store_path, store) {
                problems.push(problem(KEY, error));
            }
        }
        Err(error) if missing(&error) => {
            if inside(key_file, store_path) {
                problems.push(problem(
                    KEY,
                    format!(
                        "{} is inside the store directory {}: anyone with a copy of the \
                         store could then decrypt it",
                        key_file.display(),
                        store_path.display()
                    ),
                ));
            } else if store == (StoreDir::Exists { empty: false })
                && config.storage.previous_key_files.is_empty()
            {
                problems.push(problem(
                    KEY,
                    format!(
                        "{} is missing, but the store directory {} already holds data; \
                         restore the key file (a new key cannot read the files stored)",
                        key_file.display(),
                        store_path.display()
                    ),
                ));
            } else if let Err(reason) = key_creatable(key_file, store_path, store) {
                problems.push(problem(
                    KEY,
                    format!("{} cannot be created: {reason}", key_file.display()),
                ));
            }
        }
        Err(error) => problems.push(problem(KEY, format!("{}: {error}", key_file.display()))),
    }
}

fn check_previous_key_files(config: &Config, store: StoreDir, problems: &mut Vec<Problem>) {
    for path in &config.storage.previous_key_files {
        if let Err(error) = check_existing_key(path, &config.storage.path, store) {
            problems.push(problem("storage.previous_key_files", error));
        }
    }
}

/// Start-up's own checks of a key file that must be there; with the store
/// directory present, also that the key is not inside it.
fn check_existing_key(key_file: &Path, store_path: &Path, store: StoreDir) -> Result<(), String> {
    if let Err(error) = fs::metadata(key_file) {
        return Err(format!("{}: {error}", key_file.display()));
    }
    let checked = match store {
        StoreDir::Exists { .. } => MasterKey::load_existing(key_file, store_path).map(drop),
        StoreDir::Creatable | StoreDir::Unusable => MasterKey::check_file(key_file),
    };
    checked.map_err(|error| error.to_string())
}

/// Whether start-up can create the missing key file: its directory is there
/// and writable, or is made with the store.
fn key_creatable(key_file: &Path, store_path: &Path, store: StoreDir) -> Result<(), String> {
    let dir = parent(key_file);
    match fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => writable_dir(dir),
        Ok(_) => Err(format!("{} is not a directory", dir.display())),
        Err(error) if missing(&error) => {
            if store == StoreDir::Creatable && store_path.starts_with(dir) {
                Ok(())
            } else {
                Err(format!("the directory {} does not exist", dir.display()))
            }
        }
        Err(error) => Err(format!("{}: {error}", dir.display())),
    }
}

fn check_listen(config: &Config, problems: &mut Vec<Problem>) {
    check_port("http.listen", config.http.listen, problems);
    if let Some(address) = config.metrics_listen {
        if address == config.http.listen {
            problems.push(problem(
                "metrics.listen",
                "must differ from http.listen: the metrics have a listener of their own",
            ));
        } else {
            check_port("metrics.listen", address, problems);
        }
    }
    if let Err(reason) = connection_cap(config.http.max_connections, raise_open_file_limit()) {
        problems.push(problem("http.max_connections", reason));
    }
}

/// Bound and released at once: the port is free now, and this user may
/// take it (ports below 1024 need a capability).
fn check_port(key: &'static str, address: std::net::SocketAddr, problems: &mut Vec<Problem>) {
    if let Err(error) = TcpListener::bind(address) {
        let hint = if error.kind() == io::ErrorKind::AddrInUse {
            " (is Satchel already running?)"
        } else {
            ""
        };
        problems.push(problem(
            key,
            format!("cannot listen on {address}: {error}{hint}"),
        ));
    }
}

/// With the S3 backend, the bucket must answer a listing, as at start-up.
fn check_bucket(config: &Config, problems: &mut Vec<Problem>) {
    let BlobBackend::S3(bucket) = &config.storage.backend else {
        return;
    };
    let bucket = bucket.clone();
    if let Err(reason) = probe_in_runtime(move || probe_bucket(&bucket)) {
        problems.push(problem("storage.s3", reason));
    }
}

/// With the PostgreSQL metadata, the client certificate (if any) must load
/// and the database take a connection.
fn check_database(config: &Config, problems: &mut Vec<Problem>) {
    let MetadataBackend::Postgres(cluster) = &config.storage.metadata else {
        return;
    };
    if let Some(Err(error)) = cluster.client_cert.as_ref().map(|pair| pair.load()) {
        // Without it no connection can be tried.
        problems.push(problem(error.key, error.reason));
        return;
    }
    let cluster = cluster.clone();
    if let Err(reason) = probe_in_runtime(move || probe_database(&cluster)) {
        problems.push(problem("metadata.url", reason));
    }
}

/// Runs a blocking `probe` of a network service inside a runtime of its
/// own, as the store's calls run at start-up.
fn probe_in_runtime(
    probe: impl FnOnce() -> Result<(), StorageError> + Send + 'static,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime
        .block_on(async { tokio::task::spawn_blocking(probe).await })
        .map_err(|_| "the check stopped".to_owned())?
        .map_err(|error| error.to_string())
}

/// The HTTPS certificate and key, loaded by the code start-up uses: both
/// there, readable, PEM, and the key the certificate's.
fn check_tls(config: &Config, problems: &mut Vec<Problem>) {
    let Some(files) = &config.http.tls else {
        return;
    };
    match tls::load(files) {
        Ok(_) => {}
        Err(TlsError::Cert { path, reason }) => problems.push(problem(
            "http.tls_cert",
            format!("{}: {reason}", path.display()),
        )),
        Err(TlsError::Key { path, reason }) => problems.push(problem(
            "http.tls_key",
            format!("{}: {reason}", path.display()),
        )),
    }
}

/// Whether a `metadata` error means the path (or a directory on it) is not
/// there, rather than unreadable.
fn missing(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Whether `Store::open`, which creates the directory with its missing
/// parents, can create `path`: its nearest existing ancestor is a directory
/// this user may write into.
fn creatable(path: &Path) -> Result<(), String> {
    let mut ancestor = parent(path);
    loop {
        match fs::metadata(ancestor) {
            Ok(metadata) if metadata.is_dir() => return writable_dir(ancestor),
            Ok(_) => return Err(format!("{} is not a directory", ancestor.display())),
            Err(error) if missing(&error) => ancestor = parent(ancestor),
            Err(error) => return Err(format!("{}: {error}", ancestor.display())),
        }
    }
}

/// The directory `path` is in (`.` for a bare name, `/` for `/`).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
        Some(parent) => parent,
        None => Path::new("/"),
    }
}

/// Whether `key_file` would lie inside the store directory, comparing the
/// resolved paths, as start-up does, as far as they exist.
fn inside(key_file: &Path, store_path: &Path) -> bool {
    resolve(key_file).starts_with(resolve(store_path))
}

/// `path` with its longest existing prefix resolved (symbolic links, `..`)
/// and the rest appended; `path` itself when no prefix resolves.
fn resolve(path: &Path) -> PathBuf {
    let mut base = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(resolved) = fs::canonicalize(base) {
            return rest
                .iter()
                .rev()
                .fold(resolved, |path, name| path.join(name));
        }
        match base.file_name() {
            Some(name) => {
                rest.push(name);
                base = parent(base);
            }
            None => return path.to_owned(),
        }
    }
}

/// Whether this user (its effective ids, as the service would run) may
/// create files in directory `dir`.
fn writable_dir(dir: &Path) -> Result<(), String> {
    let c_path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", dir.display()))?;
    // SAFETY: faccessat reads the NUL-terminated path and nothing else.
    let allowed = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    if allowed == 0 {
        Ok(())
    } else {
        Err(format!(
            "{} is not writable by this user (uid {}): {}",
            dir.display(),
            // SAFETY: geteuid cannot fail and touches no memory.
            unsafe { libc::geteuid() },
            io::Error::last_os_error()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_one_line_whatever_the_path() {
        let shown = problem("storage.path", "a\nb\0c is not a directory").to_string();
        assert_eq!(shown, "storage.path: a\\nb\\u{0}c is not a directory");
    }

    #[test]
    fn parent_of_odd_paths() {
        assert_eq!(parent(Path::new("store")), Path::new("."));
        assert_eq!(parent(Path::new("/")), Path::new("/"));
        assert_eq!(parent(Path::new("/var/lib/satchel")), Path::new("/var/lib"));
    }

    #[test]
    fn a_store_under_a_file_cannot_be_created() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs::write(&file, b"x").unwrap();
        let reason = creatable(&file.join("deeper").join("store")).unwrap_err();
        assert!(reason.contains("a-file is not a directory"), "{reason}");
        assert!(creatable(&dir.path().join("new").join("store")).is_ok());
    }

    #[test]
    fn a_key_beside_the_store_is_not_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        assert!(!inside(&dir.path().join("store.key"), &store));
        assert!(inside(&store.join("master.key"), &store));
        fs::create_dir(&store).unwrap();
        assert!(inside(&store.join("master.key"), &store));
        assert!(!inside(&dir.path().join("store.key"), &store));
    }
}
