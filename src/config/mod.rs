//! The operator's configuration: one TOML file, checked whole at start-up.
//!
//! Every key a deployment must decide (who we are, where the XMPP server and
//! the store are, how big a file may be) is required; everything else has a
//! default derived from those. Errors name the key at fault, so a bad config
//! costs the operator one line of reading, not a debugging session.
//!
//! Each key is defined once, in the table of `keys.rs`: its kind (how it is
//! written and checked, `kinds.rs`), its default and its line of help. The
//! file is parsed against that table (`raw.rs`), the help is printed from it
//! ([`keys_help`]), and the builders below turn its values into [`Config`].
//! What SIGHUP may change while Satchel runs is in force through a
//! [`LiveConfig`] (`reload.rs`).

mod error;
mod help;
mod key;
mod keys;
mod kinds;
mod raw;
mod reload;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jid::BareJid;

use crate::clock::SECONDS_PER_DAY;
use crate::domains::parent_domain;
use crate::storage::cipher::CipherChoice;
use crate::storage::{
    BlobBackend, ClientCert, MetadataBackend, PostgresCluster, S3Bucket, StoreOptions,
};
pub use error::ConfigError;
pub use help::keys_help;
use key::Key;
use kinds::{BlobBackendKind, MetadataBackendKind};
use raw::RawConfig;
pub use reload::{Change, LiveConfig, Reload};

/// The largest configuration file Satchel reads (a real one is a few KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The checked configuration Satchel runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub component: ComponentConfig,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub limits: Limits,
    pub retention: Retention,
    pub relay: RelayConfig,
    /// Log users' JIDs instead of pseudonyms.
    pub show_jids: bool,
    /// Who may run the admin commands.
    pub admins: Vec<BareJid>,
    /// Where Prometheus scrapes `/metrics`; no metrics when unset.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct ComponentConfig {
    pub jid: BareJid,
    pub server: String,
    pub secret: String,
    /// Silence on the link after which Satchel pings the server.
    pub keepalive: Duration,
    pub reconnect_max_delay: Duration,
}

impl std::fmt::Debug for ComponentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentConfig")
            .field("jid", &self.jid)
            .field("server", &self.server)
            .field("secret", &"<redacted>")
            .field("keepalive", &self.keepalive)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Base of the URLs handed to clients, without a trailing slash.
    pub public_url: String,
    pub cors_allow_origin: String,
    pub header_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub max_concurrent_uploads: usize,
    /// None: as many as the open-file limit allows
    /// ([`crate::http::connections::connection_cap`]).
    pub max_connections: Option<usize>,
    pub cache_max_age: Duration,
    /// Where the certificate and key are, when Satchel speaks HTTPS itself.
    pub tls: Option<TlsFiles>,
}

/// The PEM files of the HTTPS certificate (`http.tls_cert`, `http.tls_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub path: PathBuf,
    pub key_file: PathBuf,
    /// Earlier master keys, kept to read the files they sealed.
    pub previous_key_files: Vec<PathBuf>,
    pub cache_capacity_bytes: u64,
    /// The AEAD new files are sealed with.
    pub cipher: CipherChoice,
    /// Where the sealed bytes of files go.
    pub backend: BlobBackend,
    /// Where the metadata goes (`[metadata]`, `[cluster]`).
    pub metadata: MetadataBackend,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_file_size: u64,
    pub slot_lifetime: Duration,
    /// Bytes of uploads a user may complete per UTC day.
    pub daily_upload_bytes: u64,
    pub user_storage_bytes: u64,
    pub min_free_disk_percent: u8,
    /// Domains whose users may request slots (lowercase).
    pub allowed_domains: Vec<String>,
    pub slot_requests_per_minute: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub message: Duration,
    pub ephemeral: Duration,
    pub permanent: Duration,
    pub gc_interval: Duration,
    pub abandoned_upload: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    pub max_recipients: usize,
    pub relays_per_minute: usize,
    pub retry_max_delay: Duration,
    /// How long a sent message may still bounce before it counts as delivered.
    pub bounce_window: Duration,
    pub thumbnail_max_side: u32,
    /// Delete a relayed file once every recipient has downloaded it.
    pub delete_after_download: bool,
}

impl Config {
    /// How to open the store this configuration describes.
    pub fn store_options(&self) -> StoreOptions {
        let storage = &self.storage;
        StoreOptions {
            previous_key_files: storage.previous_key_files.clone(),
            cipher: storage.cipher,
            metadata: storage.metadata.clone(),
            blobs: storage.backend.clone(),
            ..StoreOptions::new(
                storage.path.clone(),
                storage.key_file.clone(),
                storage.cache_capacity_bytes,
            )
        }
    }

    /// Reads and checks the file at `path`: UTF-8 text of at most
    /// [`MAX_FILE_BYTES`], so that a wrong path cannot fill the memory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_serving(path, None)
    }

    /// [`Config::load`], with the defaults that follow `component.jid` (the
    /// served domain, `limits.allowed_domains`) worked out from `jid` when
    /// given, rather than from the file's JID: what the file means to a
    /// Satchel that goes on running as `jid`, which is what a reload needs
    /// (the JID itself changes only with a restart).
    pub(super) fn load_serving(path: &Path, jid: Option<&BareJid>) -> Result<Config, ConfigError> {
        use std::io::{Error, ErrorKind, Read};
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(read_error(Error::new(
                ErrorKind::InvalidData,
                format!("larger than {MAX_FILE_BYTES} bytes, not a configuration"),
            )));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| read_error(Error::new(ErrorKind::InvalidData, "not UTF-8 text")))?;
        Config::parse_serving(&text, jid).map_err(|error| match error {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// The configuration unit tests share, `tests/minimal-config.toml` (also
    /// the fuzz targets' and the benchmarks'): component `upload.example.org`
    /// serving `example.org`, files up to 1000 bytes, the store in `dir/store`.
    #[cfg(test)]
    pub(crate) fn for_tests(dir: &Path) -> Config {
        let mut config = Config::parse(include_str!("../../tests/minimal-config.toml"))
            .expect("the test configuration is valid");
        config.storage.path = dir.join("store");
        config.storage.key_file = dir.join("store.key");
        config
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_serving(text, None)
    }

    /// [`Config::parse`], with the served domain derived from `jid` when
    /// given (see [`Config::load_serving`]).
    fn parse_serving(text: &str, jid: Option<&BareJid>) -> Result<Config, ConfigError> {
        let raw = RawConfig::parse(text)?;
        let component = component(&raw)?;
        let limits = limits(&raw, jid.unwrap_or(&component.jid))?;
        Ok(Config {
            http: http(&raw)?,
            storage: storage(&raw)?,
            limits,
            retention: retention(&raw)?,
            relay: relay(&raw)?,
            show_jids: raw.get(&keys::logging::show_jids)?,
            admins: raw.get(&keys::admin::jids)?,
            metrics_listen: raw.written(&keys::metrics::listen)?,
            component,
        })
    }
}

fn component(raw: &RawConfig) -> Result<ComponentConfig, ConfigError> {
    use keys::component as key;
    Ok(ComponentConfig {
        jid: raw.get(&key::jid)?,
        server: raw.get(&key::server)?,
        secret: raw.get(&key::secret)?,
        keepalive: raw.get(&key::keepalive_secs)?,
        reconnect_max_delay: raw.get(&key::reconnect_max_delay_secs)?,
    })
}

fn http(raw: &RawConfig) -> Result<HttpConfig, ConfigError> {
    use keys::http as key;
    Ok(HttpConfig {
        listen: raw.get(&key::listen)?,
        public_url: raw.get(&key::public_url)?,
        cors_allow_origin: raw.get(&key::cors_allow_origin)?,
        header_timeout: raw.get(&key::header_timeout_secs)?,
        body_idle_timeout: raw.get(&key::body_idle_timeout_secs)?,
        max_concurrent_uploads: raw.get(&key::max_concurrent_uploads)?,
        // Left to the service, which knows the open-file limit.
        max_connections: raw.written(&key::max_connections)?,
        cache_max_age: raw.get(&key::cache_max_age_secs)?,
        tls: tls_files(raw)?,
    })
}

/// `http.tls_cert` and `http.tls_key`, both or neither.
fn tls_files(raw: &RawConfig) -> Result<Option<TlsFiles>, ConfigError> {
    let pair = cert_and_key(raw, &keys::http::tls_cert, &keys::http::tls_key)?;
    Ok(pair.map(|(cert, key)| TlsFiles { cert, key }))
}

/// A certificate's file and its key's, both or neither: one alone is a
/// mistake, not a wish to go without.
fn cert_and_key(
    raw: &RawConfig,
    cert_key: &Key<kinds::FilePath>,
    key_key: &Key<kinds::FilePath>,
) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    let missing =
        |present: &Key<kinds::FilePath>, absent: &Key<kinds::FilePath>| ConfigError::Invalid {
            key: absent.spec.path,
            reason: format!("missing; it goes with `{}`", present.spec.path),
        };
    match (raw.written(cert_key)?, raw.written(key_key)?) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(missing(cert_key, key_key)),
        (None, Some(_)) => Err(missing(key_key, cert_key)),
    }
}

fn storage(raw: &RawConfig) -> Result<StorageConfig, ConfigError> {
    use keys::storage as key;
    let path = raw.get(&key::path)?;
    let key_file = match raw.written(&key::key_file)? {
        Some(key_file) => key_file,
        None => {
            let mut name = path.as_os_str().to_owned();
            name.push(".key");
            PathBuf::from(name)
        }
    };
    Ok(StorageConfig {
        path,
        key_file,
        previous_key_files: raw.get(&key::previous_key_files)?,
        cache_capacity_bytes: raw.get(&key::cache_capacity_bytes)?,
        cipher: raw.get(&key::cipher)?,
        backend: match raw.get(&key::backend)? {
            BlobBackendKind::Local => BlobBackend::Local,
            BlobBackendKind::S3 => BlobBackend::S3(s3_bucket(raw)?),
        },
        metadata: match raw.get(&keys::metadata::backend)? {
            MetadataBackendKind::Sled => MetadataBackend::Sled,
            MetadataBackendKind::Postgres => MetadataBackend::Postgres(postgres_cluster(raw)?),
        },
    })
}

/// `metadata.url` and `[cluster]`, required with the PostgreSQL backend.
fn postgres_cluster(raw: &RawConfig) -> Result<PostgresCluster, ConfigError> {
    Ok(PostgresCluster {
        url: raw.get(&keys::metadata::url)?,
        ca_file: raw.written(&keys::metadata::ca_file)?,
        client_cert: cert_and_key(
            raw,
            &keys::metadata::client_cert_file,
            &keys::metadata::client_key_file,
        )?
        .map(|(cert_file, key_file)| ClientCert {
            cert_file,
            key_file,
        }),
        instance: raw.get(&keys::cluster::instance)?,
        lease: raw.get(&keys::cluster::lease_secs)?,
    })
}

/// `[storage.s3]`, every key of which is required with the S3 backend.
fn s3_bucket(raw: &RawConfig) -> Result<S3Bucket, ConfigError> {
    use keys::storage_s3 as key;
    Ok(S3Bucket {
        endpoint: raw.get(&key::endpoint)?,
        region: raw.get(&key::region)?,
        bucket: raw.get(&key::bucket)?,
        access_key_id: raw.get(&key::access_key_id)?,
        secret_access_key: raw.get(&key::secret_access_key)?,
    })
}

fn limits(raw: &RawConfig, component: &BareJid) -> Result<Limits, ConfigError> {
    use keys::limits as key;
    let max_file_size = raw.get(&key::max_file_size)?;
    Ok(Limits {
        max_file_size,
        slot_lifetime: raw.get(&key::slot_lifetime_secs)?,
        daily_upload_bytes: raw
            .written(&key::daily_upload_bytes)?
            .unwrap_or(max_file_size.saturating_mul(10)),
        user_storage_bytes: raw
            .written(&key::user_storage_bytes)?
            .unwrap_or(max_file_size.saturating_mul(20)),
        min_free_disk_percent: raw.get(&key::min_free_disk_percent)?,
        allowed_domains: raw
            .written(&key::allowed_domains)?
            .unwrap_or_else(|| vec![parent_domain(component.domain().as_str()).to_owned()]),
        slot_requests_per_minute: raw.get(&key::slot_requests_per_minute)?,
    })
}

fn retention(raw: &RawConfig) -> Result<Retention, ConfigError> {
    use keys::retention as key;
    let message = raw.get(&key::message_secs)?;
    let one_day = Duration::from_secs(SECONDS_PER_DAY);
    Ok(Retention {
        message,
        ephemeral: raw
            .written(&key::ephemeral_secs)?
            .unwrap_or(one_day.min(message)),
        permanent: raw.written(&key::permanent_secs)?.unwrap_or(message),
        gc_interval: raw.get(&key::gc_interval_secs)?,
        abandoned_upload: raw.get(&key::abandoned_upload_secs)?,
    })
}

fn relay(raw: &RawConfig) -> Result<RelayConfig, ConfigError> {
    use keys::relay as key;
    Ok(RelayConfig {
        max_recipients: raw.get(&key::max_recipients)?,
        relays_per_minute: raw.get(&key::relays_per_minute)?,
        retry_max_delay: raw.get(&key::retry_max_delay_secs)?,
        bounce_window: raw.get(&key::bounce_window_secs)?,
        thumbnail_max_side: raw.get(&key::thumbnail_max_side)?,
        delete_after_download: raw.get(&key::delete_after_download)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [component]
        jid = "upload.example.org"
        server = "127.0.0.1:5347"
        secret = "s3cret"
        [http]
        listen = "127.0.0.1:5050"
        public_url = "https://upload.example.org/"
        [storage]
        path = "/var/lib/satchel"
        [limits]
        max_file_size = 104857600
    "#;

    const S3_BUCKET: &str = r#"
        [storage.s3]
        endpoint = "http://127.0.0.1:8333"
        region = "us-east-1"
        bucket = "satchel"
        access_key_id = "satchel"
        secret_access_key = "very-secret"
    "#;

    const POSTGRES_CLUSTER: &str = r#"
        [metadata]
        backend = "postgres"
        url = "postgres://satchel:pa55word@127.0.0.1:5432/satchel"
        [cluster]
        instance = "a"
    "#;

    fn error_of(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let config = Config::parse(MINIMAL).unwrap();
        assert_eq!(config.http.public_url, "https://upload.example.org");
        assert_eq!(config.limits.allowed_domains, vec!["example.org"]);
        assert_eq!(config.limits.daily_upload_bytes, 10 * 104857600);
        assert_eq!(config.limits.user_storage_bytes, 20 * 104857600);
        assert_eq!(config.limits.slot_lifetime, Duration::from_secs(300));
        assert_eq!(
            config.retention.message,
            Duration::from_secs(30 * SECONDS_PER_DAY)
        );
        assert_eq!(config.http.cors_allow_origin, "*");
        assert_eq!(
            config.storage.key_file,
            PathBuf::from("/var/lib/satchel.key")
        );
    }

    #[test]
    fn the_cipher_of_new_files_is_auto_unless_pinned() {
        use crate::storage::cipher::Cipher;
        let config = Config::parse(MINIMAL).unwrap();
        assert_eq!(config.storage.cipher, CipherChoice::Auto);
        for (written, expected) in [
            ("\"auto\"", CipherChoice::Auto),
            (
                "\"chacha20-poly1305\"",
                CipherChoice::Pinned(Cipher::ChaCha20Poly1305),
            ),
            ("\"aes-256-gcm\"", CipherChoice::Pinned(Cipher::Aes256Gcm)),
        ] {
            let config = Config::parse(&with_key(MINIMAL, "storage", "cipher", written)).unwrap();
            assert_eq!(config.storage.cipher, expected, "{written}");
        }
        for written in ["\"aes\"", "\"AES-256-GCM\"", "\"\"", "1"] {
            let error = error_of(&with_key(MINIMAL, "storage", "cipher", written));
            assert!(error.contains("storage.cipher"), "{written}: {error}");
        }
        let error = error_of(&with_key(MINIMAL, "storage", "cipher", "\"aes-128-gcm\""));
        assert!(
            error.contains("\"auto\", \"chacha20-poly1305\" or \"aes-256-gcm\""),
            "{error}"
        );
    }

    #[test]
    fn missing_key_is_named() {
        let text = MINIMAL.replace("max_file_size = 104857600", "");
        assert!(
            error_of(&text).contains("max_file_size"),
            "{}",
            error_of(&text)
        );
    }

    #[test]
    fn unparsable_value_is_named() {
        let text = MINIMAL.replace("104857600", "\"big\"");
        let error = error_of(&text);
        assert!(
            error.contains("max_file_size") || error.contains("invalid type"),
            "{error}"
        );
        let error = error_of(&MINIMAL.replace("127.0.0.1:5050", "localhost"));
        assert!(error.contains("http.listen"), "{error}");
        let error = error_of(&MINIMAL.replace("https://upload.example.org/", "ftp://x"));
        assert!(error.contains("http.public_url"), "{error}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let text = MINIMAL.replace("[limits]", "[limits]\nmax_fiel_size = 3");
        assert!(error_of(&text).contains("max_fiel_size"));
    }

    #[test]
    fn user_jid_is_not_a_component() {
        let error = error_of(&MINIMAL.replace("upload.example.org\"", "alice@example.org\""));
        assert!(error.contains("component.jid"), "{error}");
    }

    #[test]
    fn zero_limits_are_refused() {
        let error = error_of(&MINIMAL.replace("104857600", "0"));
        assert!(error.contains("limits.max_file_size"), "{error}");
        let error = error_of(&format!("{MINIMAL}\n[retention]\ngc_interval_secs = 0"));
        assert!(error.contains("retention.gc_interval_secs"), "{error}");
        for (table, key) in [
            ("relay", "bounce_window_secs"),
            ("relay", "retry_max_delay_secs"),
            ("retention", "message_secs"),
        ] {
            let error = error_of(&format!(
                "{MINIMAL}\n[{table}]\n{key} = 9223372036854775807"
            ));
            assert!(error.contains(&format!("{table}.{key}")), "{error}");
            assert!(error.contains("100 years"), "{error}");
        }
    }

    #[test]
    fn hostile_text_is_an_error_not_a_panic() {
        for text in [
            "",
            "\0\0\0",
            "[component",
            "[[[",
            &"a".repeat(100_000),
            "component = 3",
        ] {
            assert!(Config::parse(text).is_err());
        }
    }

    #[test]
    fn parse_errors_quote_the_line() {
        let error = error_of(&MINIMAL.replace("104857600", "\"é big\""));
        assert!(error.contains("(`max_file_size = \"é big\"`)"), "{error}");
        assert!(
            error.contains("`limits.max_file_size` takes an integer"),
            "{error}"
        );
    }

    /// `text` with `key = value` set in `[section]`: replaced where the
    /// section has it, else added under its header, else in a new section.
    fn with_key(text: &str, section: &str, key: &str, value: &str) -> String {
        let header = format!("[{section}]");
        let setting = format!("{key} = {value}");
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let mut current = None;
        let mut place = None;
        for (i, line) in lines.iter().enumerate() {
            let line = line.trim();
            if line.starts_with('[') {
                current = Some(line.to_owned());
                if line == header {
                    place = place.or(Some((i + 1, false)));
                }
            } else if current.as_deref() == Some(header.as_str())
                && line.split('=').next().map(str::trim) == Some(key)
            {
                place = Some((i, true));
                break;
            }
        }
        match place {
            Some((i, true)) => lines[i] = setting,
            Some((i, false)) => lines.insert(i, setting),
            None => lines.extend([header, setting]),
        }
        lines.join("\n")
    }

    fn every_key() -> impl Iterator<Item = &'static key::Spec> {
        keys::SECTIONS
            .iter()
            .flat_map(|section| section.keys.iter().copied())
    }

    #[test]
    fn every_default_is_what_the_help_says() {
        let implicit = Config::parse(MINIMAL).unwrap();
        let help = keys_help();
        let mut checked = 0;
        for key in every_key() {
            let key::KeyDefault::Value(default) = key.default else {
                continue;
            };
            assert!(help.contains(&format!("({default}")), "{}", key.path);
            let explicit = with_key(MINIMAL, key.section, key.name, default);
            assert_eq!(
                Config::parse(&explicit).unwrap(),
                implicit,
                "writing the documented default of {} changes the configuration",
                key.path
            );
            checked += 1;
        }
        assert!(checked > 20, "only {checked} defaults");
    }

    #[test]
    fn tls_takes_both_files_or_neither() {
        assert_eq!(Config::parse(MINIMAL).unwrap().http.tls, None);
        let with_cert = with_key(MINIMAL, "http", "tls_cert", "\"/etc/satchel/cert.pem\"");
        let error = error_of(&with_cert);
        assert!(error.contains("`http.tls_key`"), "{error}");
        assert!(error.contains("http.tls_cert"), "{error}");
        let error = error_of(&with_key(MINIMAL, "http", "tls_key", "\"/k.pem\""));
        assert!(error.contains("`http.tls_cert`: missing"), "{error}");
        let both = with_key(&with_cert, "http", "tls_key", "\"/etc/satchel/key.pem\"");
        assert_eq!(
            Config::parse(&both).unwrap().http.tls,
            Some(TlsFiles {
                cert: "/etc/satchel/cert.pem".into(),
                key: "/etc/satchel/key.pem".into(),
            })
        );
    }

    #[test]
    fn derived_defaults_follow_their_sources() {
        let config = Config::parse(MINIMAL).unwrap();
        assert_eq!(config.http.max_connections, None);
        assert_eq!(
            config.retention.ephemeral,
            Duration::from_secs(SECONDS_PER_DAY)
        );
        assert_eq!(config.retention.permanent, config.retention.message);
        let text = with_key(MINIMAL, "retention", "message_secs", "3600");
        let config = Config::parse(&with_key(&text, "limits", "max_file_size", "7")).unwrap();
        assert_eq!(config.retention.ephemeral, Duration::from_secs(3600));
        assert_eq!(config.retention.permanent, Duration::from_secs(3600));
        assert_eq!(config.limits.daily_upload_bytes, 70);
        assert_eq!(config.limits.user_storage_bytes, 140);
        let huge = with_key(MINIMAL, "limits", "max_file_size", "9223372036854775807");
        let config = Config::parse(&huge).unwrap();
        assert_eq!(config.limits.daily_upload_bytes, u64::MAX);
        let config = Config::parse(&with_key(MINIMAL, "component", "jid", "\"upload\"")).unwrap();
        assert_eq!(config.limits.allowed_domains, vec!["upload"]);
        let written = [
            ("http", "max_connections", "10"),
            ("storage", "key_file", "\"/keys/k\""),
            ("limits", "allowed_domains", "[\"Example.COM\"]"),
            ("retention", "ephemeral_secs", "5"),
            ("retention", "permanent_secs", "6"),
        ];
        let text = written
            .iter()
            .fold(MINIMAL.to_owned(), |text, (section, key, value)| {
                with_key(&text, section, key, value)
            });
        let config = Config::parse(&text).unwrap();
        assert_eq!(config.http.max_connections, Some(10));
        assert_eq!(config.storage.key_file, PathBuf::from("/keys/k"));
        assert_eq!(config.limits.allowed_domains, vec!["example.com"]);
        assert_eq!(config.retention.ephemeral, Duration::from_secs(5));
        assert_eq!(config.retention.permanent, Duration::from_secs(6));
    }

    #[test]
    fn the_s3_backend_reads_its_bucket_and_needs_every_key() {
        assert_eq!(
            Config::parse(MINIMAL).unwrap().storage.backend,
            BlobBackend::Local
        );
        let s3 = with_key(MINIMAL, "storage", "backend", "\"s3\"");
        let config = Config::parse(&(s3.clone() + S3_BUCKET)).unwrap();
        let BlobBackend::S3(bucket) = &config.storage.backend else {
            panic!("{:?}", config.storage.backend);
        };
        assert_eq!(
            (
                bucket.endpoint.as_str(),
                bucket.region.as_str(),
                bucket.bucket.as_str()
            ),
            ("http://127.0.0.1:8333", "us-east-1", "satchel")
        );
        assert_eq!(bucket.secret_access_key, "very-secret");
        assert!(
            !format!("{config:?}").contains("very-secret"),
            "the secret is never shown"
        );

        assert!(
            error_of(&s3).starts_with("config key `storage.s3.endpoint`: missing; it is required"),
            "{}",
            error_of(&s3)
        );
        for (key, value, fault) in [
            (
                "bucket",
                "\"Satchel\"",
                "expected 3 to 63 lowercase letters",
            ),
            ("bucket", "\"a/../b\"", "expected 3 to 63 lowercase letters"),
            ("bucket", "\"-abc\"", "expected 3 to 63 lowercase letters"),
            (
                "endpoint",
                "\"127.0.0.1:8333\"",
                "expected an http:// or https:// URL",
            ),
            ("region", "\"\"", "must not be empty"),
        ] {
            let text = with_key(&(s3.clone() + S3_BUCKET), "storage.s3", key, value);
            let error = error_of(&text);
            assert!(
                error.starts_with(&format!("config key `storage.s3.{key}`: "))
                    && error.contains(fault),
                "{key} = {value}: {error}"
            );
        }
        let error = error_of(&with_key(MINIMAL, "storage", "backend", "\"ftp\""));
        assert!(error.contains("expected \"local\" or \"s3\""), "{error}");
        let error = error_of(&(s3 + S3_BUCKET + "\nregoin = \"x\"\n"));
        assert!(error.contains("unknown key `storage.s3.regoin`"), "{error}");
    }

    #[test]
    fn the_postgres_metadata_reads_its_cluster_and_needs_url_and_instance() {
        assert_eq!(
            Config::parse(MINIMAL).unwrap().storage.metadata,
            MetadataBackend::Sled
        );
        let config = Config::parse(&(MINIMAL.to_owned() + POSTGRES_CLUSTER)).unwrap();
        let MetadataBackend::Postgres(cluster) = &config.storage.metadata else {
            panic!("{:?}", config.storage.metadata);
        };
        assert_eq!(cluster.instance, "a");
        assert_eq!(cluster.lease, Duration::from_secs(10));
        assert!(cluster.url.contains("pa55word"));
        assert!(
            !format!("{config:?}").contains("pa55word"),
            "the password stays out of Debug"
        );
        let without = |key: &str| -> String {
            (MINIMAL.to_owned() + POSTGRES_CLUSTER)
                .lines()
                .filter(|line| line.split('=').next().map(str::trim) != Some(key))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(error_of(&without("url"))
            .starts_with("config key `metadata.url`: missing; it is required"));
        assert!(error_of(&without("instance"))
            .starts_with("config key `cluster.instance`: missing; it is required"));
        let postgres = MINIMAL.to_owned() + POSTGRES_CLUSTER;
        for (section, key, value, fault) in [
            (
                "metadata",
                "backend",
                "\"mysql\"",
                "expected \"sled\" or \"postgres\"",
            ),
            (
                "metadata",
                "url",
                "\"mysql://x@y/z\"",
                "expected a postgres:// URL",
            ),
            (
                "metadata",
                "url",
                "\"postgres://h:notaport/d\"",
                "not a PostgreSQL",
            ),
            ("cluster", "instance", "\"\"", "expected 1 to 64 letters"),
            ("cluster", "instance", "\"a/b\"", "expected 1 to 64 letters"),
            (
                "cluster",
                "instance",
                "\"a\\nb\"",
                "expected 1 to 64 letters",
            ),
        ] {
            let error = error_of(&with_key(&postgres, section, key, value));
            assert!(
                error.starts_with(&format!("config key `{section}.{key}`: "))
                    && error.contains(fault),
                "{key} = {value}: {error}"
            );
            assert!(!error.contains("pa55word"), "{error}");
        }
    }

    #[test]
    fn a_database_client_certificate_takes_both_files_or_neither() {
        let postgres = MINIMAL.to_owned() + POSTGRES_CLUSTER;
        let cluster_of = |text: &str| match Config::parse(text).unwrap().storage.metadata {
            MetadataBackend::Postgres(cluster) => cluster,
            other => panic!("{other:?}"),
        };
        assert_eq!(cluster_of(&postgres).client_cert, None);
        let with_cert = with_key(&postgres, "metadata", "client_cert_file", "\"/etc/c.pem\"");
        let error = error_of(&with_cert);
        assert!(
            error.starts_with("config key `metadata.client_key_file`: missing; it goes with"),
            "{error}"
        );
        let key_only = with_key(&postgres, "metadata", "client_key_file", "\"/etc/k.pem\"");
        assert!(error_of(&key_only).contains("`metadata.client_cert_file`: missing"));
        let both = with_key(&with_cert, "metadata", "client_key_file", "\"/etc/k.pem\"");
        assert_eq!(
            cluster_of(&both).client_cert,
            Some(ClientCert {
                cert_file: "/etc/c.pem".into(),
                key_file: "/etc/k.pem".into(),
            })
        );
    }

    #[test]
    fn every_key_is_read_and_type_checked() {
        // The keys of [storage.s3] are read with the S3 backend only, those
        // of [cluster] with PostgreSQL only.
        let base = with_key(MINIMAL, "storage", "backend", "\"s3\"") + S3_BUCKET + POSTGRES_CLUSTER;
        for key in every_key() {
            let text = with_key(&base, key.section, key.name, "{ wrong = 1 }");
            let error = error_of(&text);
            assert!(
                error.contains(&format!("`{}` takes ", key.path))
                    && error.contains("{ wrong = 1 }"),
                "{}: {error}",
                key.path
            );
        }
    }

    #[test]
    fn every_required_key_is_named_when_missing() {
        for key in every_key().filter(|key| key.default == key::KeyDefault::Required) {
            let text: String = MINIMAL
                .lines()
                .filter(|line| line.split('=').next().map(str::trim) != Some(key.name))
                .collect::<Vec<_>>()
                .join("\n");
            assert_eq!(
                error_of(&text),
                format!(
                    "config key `{}`: missing; it is required ({})",
                    key.path,
                    key.doc.trim()
                )
            );
        }
        let error = error_of("[limits]\nmax_file_size = 1");
        assert!(
            error.starts_with("config key `component.jid`: missing"),
            "{error}"
        );
    }

    #[test]
    fn unknown_sections_and_keys_are_named_with_their_line() {
        let error = error_of(&format!("{MINIMAL}\n[limts]\nmax_file_size = 3"));
        assert!(
            error.contains("(`[limts]`): unknown section [limts]"),
            "{error}"
        );
        assert!(
            error.contains("the sections are component, http"),
            "{error}"
        );
        let error = error_of(&MINIMAL.replace("[limits]", "[limits]\nmax_fiel_size = 3"));
        assert!(
            error.contains("(`max_fiel_size = 3`): unknown key `limits.max_fiel_size`"),
            "{error}"
        );
        assert!(
            error.contains("[limits] has max_file_size, slot_lifetime_secs"),
            "{error}"
        );
        // The first stranger in the file is the one named.
        let text = format!("[zzz]\n{MINIMAL}\n[aaa]");
        assert!(
            error_of(&text).contains("unknown section [zzz]"),
            "{}",
            error_of(&text)
        );
        // A name that would break the one-line error is shown escaped.
        let error = error_of(&format!("{MINIMAL}\n[relay]\n\"a\\nb\" = 1"));
        assert!(error.contains("unknown key `relay.a\\nb`"), "{error}");
        assert_eq!(error.lines().count(), 1, "{error}");
    }

    #[test]
    fn hostile_shapes_are_errors_not_panics() {
        for text in [
            "[[limits]]\nmax_file_size = 1",
            "limits = []",
            "component = \"x\"",
            "[limits.deeper]\nx = 1",
            "[limits]\nmax_file_size = 99999999999999999999",
            "[limits]\nmax_file_size = -1",
            "[limits]\nmax_file_size = 1e3",
            "[limits]\nmax_file_size = 1979-05-27T07:32:00Z",
            "[limits]\nallowed_domains = [[\"a\"], 1]",
            &format!(
                "[limits]\nmax_file_size = {}1{}",
                "[".repeat(200),
                "]".repeat(200)
            ),
            &format!("x = {}1{}", "{a=".repeat(200), "}".repeat(200)),
            &format!("[{}]", "a.".repeat(1000) + "b"),
        ] {
            assert!(Config::parse(text).is_err(), "{text}");
            assert!(
                Config::parse(&format!("{MINIMAL}\n{text}")).is_err(),
                "{text}"
            );
        }
        let error = error_of(&format!("{MINIMAL}\n[http]\nx = 1"));
        assert!(error.contains("duplicate key `http`"), "{error}");
        assert_eq!(error.lines().count(), 1, "{error}");
        let deep = with_key(
            MINIMAL,
            "limits",
            "allowed_domains",
            &format!("[{}]", "\"a.b\",".repeat(100_000)),
        );
        assert_eq!(
            Config::parse(&deep).unwrap().limits.allowed_domains.len(),
            100_000
        );
    }

    #[test]
    fn the_shared_test_configuration_is_valid() {
        let dir = Path::new("/tmp/x");
        let config = Config::for_tests(dir);
        assert_eq!(config.limits.max_file_size, 1000);
        assert_eq!(config.limits.daily_upload_bytes, 10_000);
        assert_eq!(config.limits.allowed_domains, vec!["example.org"]);
        assert_eq!(config.storage.path, dir.join("store"));
        assert_eq!(config.storage.key_file, dir.join("store.key"));
    }
}
