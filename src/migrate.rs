//! `satchel migrate --from OLD --config NEW`: copies the store of one
//! configuration into the store of another, typically a single node's sled
//! and local files into a cluster's PostgreSQL and S3 bucket; see
//! [`Store::import_from`] for what is copied, how it is verified, and why
//! running it again resumes.
//!
//! Run it with the old service stopped (its sled database is locked while
//! it runs); the cluster may be running. Both configurations must load the
//! master key the files were sealed with: give the new one the same
//! `storage.key_file` (or list it in `previous_key_files`).

use std::path::{Path, PathBuf};

use crate::clock::unix_now;
use crate::config::{Config, ConfigError};
use crate::storage::{FileRecord, MigrationReport, StorageError, Store};

/// Why a migration could not run, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{path}: {source}")]
    Config { path: PathBuf, source: ConfigError },
    #[error("cannot open the {which} store at {path}: {source}")]
    Open {
        which: &'static str,
        path: PathBuf,
        source: StorageError,
    },
    #[error("migration stopped (run it again to resume): {0}")]
    Copy(StorageError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Copies the store of configuration `from` into the store of `to`,
/// calling `copied` after each file copied and verified.
pub fn migrate(
    from: &Path,
    to: &Path,
    copied: impl FnMut(&FileRecord) + Send + 'static,
) -> Result<MigrationReport, MigrateError> {
    let load = |path: &Path| {
        Config::load(path).map_err(|source| MigrateError::Config {
            path: path.to_owned(),
            source,
        })
    };
    let (source_config, target_config) = (load(from)?, load(to)?);
    let runtime = tokio::runtime::Runtime::new().map_err(MigrateError::Runtime)?;
    // The stores' network calls block on the runtime from a blocking thread.
    runtime.block_on(async move {
        tokio::task::spawn_blocking(move || {
            let open = |which, config: &Config| {
                Store::open(config.store_options()).map_err(|source| MigrateError::Open {
                    which,
                    path: config.storage.path.clone(),
                    source,
                })
            };
            let source = open("source", &source_config)?;
            let target = open("target", &target_config)?;
            target
                .import_from(&source, unix_now(), copied)
                .map_err(MigrateError::Copy)
        })
        .await
        .expect("the migration does not panic")
    })
}
