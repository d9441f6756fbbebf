//! Why a configuration could not be used: the file could not be read, its
//! text is not a configuration, or a key's value cannot be used. Each names
//! the file's line or the key, in one line, for the operator.

use std::path::PathBuf;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text is not a configuration: bad syntax, a key no table lists, a
    /// value of the wrong type. The message quotes the line.
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A key is missing, or its value cannot be used.
    #[error("config key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}
