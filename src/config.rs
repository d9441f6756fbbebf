//! The operator's configuration: one TOML file, checked whole at start-up.
//!
//! Every key a deployment must decide (who we are, where the XMPP server and
//! the store are, how big a file may be) is required; everything else has a
//! default derived from those. Errors name the key at fault, so a bad config
//! costs the operator one line of reading, not a debugging session.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jid::BareJid;
use serde::Deserialize;

use crate::clock::SECONDS_PER_DAY;
use crate::domains::parent_domain;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// The file as written, before defaults and checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    component: RawComponent,
    http: RawHttp,
    storage: RawStorage,
    limits: RawLimits,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    relay: RawRelay,
    #[serde(default)]
    logging: RawLogging,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    show_jids: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    jid: String,
    server: String,
    secret: String,
    keepalive_secs: Option<u64>,
    reconnect_max_delay_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: String,
    public_url: String,
    cors_allow_origin: Option<String>,
    header_timeout_secs: Option<u64>,
    body_idle_timeout_secs: Option<u64>,
    max_concurrent_uploads: Option<usize>,
    max_connections: Option<usize>,
    cache_max_age_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: PathBuf,
    key_file: Option<PathBuf>,
    #[serde(default)]
    previous_key_files: Vec<PathBuf>,
    cache_capacity_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_file_size: u64,
    slot_lifetime_secs: Option<u64>,
    daily_upload_bytes: Option<u64>,
    user_storage_bytes: Option<u64>,
    min_free_disk_percent: Option<u8>,
    allowed_domains: Option<Vec<String>>,
    slot_requests_per_minute: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    message_secs: Option<u64>,
    ephemeral_secs: Option<u64>,
    permanent_secs: Option<u64>,
    gc_interval_secs: Option<u64>,
    abandoned_upload_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    max_recipients: Option<usize>,
    relays_per_minute: Option<usize>,
    retry_max_delay_secs: Option<u64>,
    bounce_window_secs: Option<u64>,
    thumbnail_max_side: Option<u32>,
    delete_after_download: Option<bool>,
}

/// The checked configuration Satchel runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub component: ComponentConfig,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub limits: Limits,
    pub retention: Retention,
    pub relay: RelayConfig,
    /// Log users' JIDs instead of pseudonyms.
    pub show_jids: bool,
}

#[derive(Clone)]
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
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Base of the URLs handed to clients, without a trailing slash.
    pub public_url: String,
    pub cors_allow_origin: String,
    pub header_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub max_concurrent_uploads: usize,
    /// None: as many as the open-file limit allows (`http::connections`).
    pub max_connections: Option<usize>,
    pub cache_max_age: Duration,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub path: PathBuf,
    pub key_file: PathBuf,
    /// Earlier master keys, kept to read the files they sealed.
    pub previous_key_files: Vec<PathBuf>,
    pub cache_capacity_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_file_size: u64,
    pub slot_lifetime: Duration,
    pub daily_upload_bytes: u64,
    pub user_storage_bytes: u64,
    pub min_free_disk_percent: u8,
    /// Domains whose users may request slots (lowercase).
    pub allowed_domains: Vec<String>,
    pub slot_requests_per_minute: usize,
}

#[derive(Debug, Clone)]
pub struct Retention {
    pub message: Duration,
    pub ephemeral: Duration,
    pub permanent: Duration,
    pub gc_interval: Duration,
    pub abandoned_upload: Duration,
}

#[derive(Debug, Clone)]
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

/// Longest duration any `*_secs` key accepts.
const MAX_DURATION_SECS: u64 = 100 * 365 * SECONDS_PER_DAY;

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text).map_err(|error| match error {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// The configuration unit tests share: component `upload.example.org`
    /// serving `example.org`, files up to 1000 bytes, the store in
    /// `dir/store`.
    #[cfg(test)]
    pub(crate) fn for_tests(dir: &Path) -> Config {
        Config::parse(&format!(
            r#"
            [component]
            jid = "upload.example.org"
            server = "127.0.0.1:5347"
            secret = "s"
            [http]
            listen = "127.0.0.1:0"
            public_url = "https://upload.example.org"
            [storage]
            path = "{}"
            [limits]
            max_file_size = 1000
            "#,
            dir.join("store").display()
        ))
        .expect("the test configuration is valid")
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: match e.span() {
                Some(span) => {
                    let (number, line) = line_at(text, span.start);
                    format!("line {number} (`{line}`): {}", e.message().trim_end())
                }
                None => e.message().trim_end().to_owned(),
            },
        })?;
        Config::check(raw)
    }

    fn check(raw: RawConfig) -> Result<Config, ConfigError> {
        let jid: BareJid = raw
            .component
            .jid
            .parse()
            .map_err(|e| invalid("component.jid", format!("not a JID: {e}")))?;
        if jid.node().is_some() {
            return Err(invalid(
                "component.jid",
                "a component JID is a bare domain, like upload.example.org",
            ));
        }
        if raw.component.server.trim().is_empty() || !raw.component.server.contains(':') {
            return Err(invalid("component.server", "expected HOST:PORT"));
        }
        if raw.component.secret.is_empty() {
            return Err(invalid("component.secret", "must not be empty"));
        }

        let listen: SocketAddr = raw.http.listen.parse().map_err(|e| {
            invalid(
                "http.listen",
                format!("expected IP:PORT like 127.0.0.1:5050 ({e})"),
            )
        })?;
        let public_url = raw.http.public_url.trim_end_matches('/').to_owned();
        let scheme_ok = public_url.starts_with("https://") || public_url.starts_with("http://");
        let host_part = public_url.split("://").nth(1).unwrap_or_default();
        if !scheme_ok || host_part.is_empty() || host_part.contains(['?', '#', ' ']) {
            return Err(invalid(
                "http.public_url",
                "expected an http:// or https:// URL without query, like https://upload.example.org",
            ));
        }
        let cors_allow_origin = raw.http.cors_allow_origin.unwrap_or_else(|| "*".into());
        if http::HeaderValue::from_str(&cors_allow_origin).is_err() {
            return Err(invalid(
                "http.cors_allow_origin",
                "not a valid header value",
            ));
        }
        let positive = |key: &'static str, value: Option<u64>, default: u64| {
            let value = value.unwrap_or(default);
            if value == 0 {
                Err(invalid(key, "must be greater than 0"))
            } else if key.ends_with("_secs") && value > MAX_DURATION_SECS {
                // Deadlines are computed as now + duration: keep them far
                // from where clock arithmetic overflows.
                Err(invalid(
                    key,
                    format!("must be at most {MAX_DURATION_SECS} (100 years)"),
                ))
            } else {
                Ok(value)
            }
        };

        let limits = &raw.limits;
        if limits.max_file_size == 0 {
            return Err(invalid("limits.max_file_size", "must be greater than 0"));
        }
        let min_free_disk_percent = limits.min_free_disk_percent.unwrap_or(5);
        if min_free_disk_percent > 99 {
            return Err(invalid(
                "limits.min_free_disk_percent",
                "must be between 0 and 99",
            ));
        }
        let allowed_domains = match &limits.allowed_domains {
            Some(domains) => {
                let mut checked = Vec::with_capacity(domains.len());
                for domain in domains {
                    let parsed: BareJid = domain.parse().map_err(|e| {
                        invalid(
                            "limits.allowed_domains",
                            format!("{domain:?} is not a domain: {e}"),
                        )
                    })?;
                    if parsed.node().is_some() {
                        return Err(invalid(
                            "limits.allowed_domains",
                            format!("{domain:?} is a user JID, not a domain"),
                        ));
                    }
                    checked.push(parsed.domain().as_str().to_owned());
                }
                checked
            }
            None => vec![parent_domain(jid.domain().as_str()).to_owned()],
        };

        let storage_path = raw.storage.path;
        if storage_path.as_os_str().is_empty() {
            return Err(invalid("storage.path", "must not be empty"));
        }
        let key_file = raw.storage.key_file.unwrap_or_else(|| {
            let mut name = storage_path.as_os_str().to_owned();
            name.push(".key");
            PathBuf::from(name)
        });

        let message = positive(
            "retention.message_secs",
            raw.retention.message_secs,
            30 * SECONDS_PER_DAY,
        )?;
        Ok(Config {
            component: ComponentConfig {
                jid,
                server: raw.component.server,
                secret: raw.component.secret,
                keepalive: Duration::from_secs(positive(
                    "component.keepalive_secs",
                    raw.component.keepalive_secs,
                    30,
                )?),
                reconnect_max_delay: Duration::from_secs(positive(
                    "component.reconnect_max_delay_secs",
                    raw.component.reconnect_max_delay_secs,
                    2,
                )?),
            },
            http: HttpConfig {
                listen,
                public_url,
                cors_allow_origin,
                header_timeout: Duration::from_secs(positive(
                    "http.header_timeout_secs",
                    raw.http.header_timeout_secs,
                    10,
                )?),
                body_idle_timeout: Duration::from_secs(positive(
                    "http.body_idle_timeout_secs",
                    raw.http.body_idle_timeout_secs,
                    30,
                )?),
                max_concurrent_uploads: positive(
                    "http.max_concurrent_uploads",
                    raw.http.max_concurrent_uploads.map(|n| n as u64),
                    64,
                )? as usize,
                max_connections: match raw.http.max_connections {
                    Some(0) => {
                        return Err(invalid("http.max_connections", "must be greater than 0"))
                    }
                    configured => configured,
                },
                cache_max_age: Duration::from_secs(positive(
                    "http.cache_max_age_secs",
                    raw.http.cache_max_age_secs,
                    365 * SECONDS_PER_DAY,
                )?),
            },
            storage: StorageConfig {
                path: storage_path,
                key_file,
                previous_key_files: raw.storage.previous_key_files,
                cache_capacity_bytes: positive(
                    "storage.cache_capacity_bytes",
                    raw.storage.cache_capacity_bytes,
                    16 * 1024 * 1024,
                )?,
            },
            limits: Limits {
                max_file_size: limits.max_file_size,
                slot_lifetime: Duration::from_secs(positive(
                    "limits.slot_lifetime_secs",
                    limits.slot_lifetime_secs,
                    300,
                )?),
                daily_upload_bytes: positive(
                    "limits.daily_upload_bytes",
                    limits.daily_upload_bytes,
                    limits.max_file_size.saturating_mul(10),
                )?,
                user_storage_bytes: positive(
                    "limits.user_storage_bytes",
                    limits.user_storage_bytes,
                    limits.max_file_size.saturating_mul(20),
                )?,
                min_free_disk_percent,
                allowed_domains,
                slot_requests_per_minute: positive(
                    "limits.slot_requests_per_minute",
                    limits.slot_requests_per_minute.map(|n| n as u64),
                    600,
                )? as usize,
            },
            retention: Retention {
                message: Duration::from_secs(message),
                ephemeral: Duration::from_secs(positive(
                    "retention.ephemeral_secs",
                    raw.retention.ephemeral_secs,
                    SECONDS_PER_DAY.min(message),
                )?),
                permanent: Duration::from_secs(positive(
                    "retention.permanent_secs",
                    raw.retention.permanent_secs,
                    message,
                )?),
                gc_interval: Duration::from_secs(positive(
                    "retention.gc_interval_secs",
                    raw.retention.gc_interval_secs,
                    60,
                )?),
                abandoned_upload: Duration::from_secs(positive(
                    "retention.abandoned_upload_secs",
                    raw.retention.abandoned_upload_secs,
                    3600,
                )?),
            },
            show_jids: raw.logging.show_jids.unwrap_or(false),
            relay: RelayConfig {
                max_recipients: positive(
                    "relay.max_recipients",
                    raw.relay.max_recipients.map(|n| n as u64),
                    50,
                )? as usize,
                relays_per_minute: positive(
                    "relay.relays_per_minute",
                    raw.relay.relays_per_minute.map(|n| n as u64),
                    30,
                )? as usize,
                retry_max_delay: Duration::from_secs(positive(
                    "relay.retry_max_delay_secs",
                    raw.relay.retry_max_delay_secs,
                    300,
                )?),
                bounce_window: Duration::from_secs(positive(
                    "relay.bounce_window_secs",
                    raw.relay.bounce_window_secs,
                    30,
                )?),
                delete_after_download: raw.relay.delete_after_download.unwrap_or(false),
                thumbnail_max_side: match raw.relay.thumbnail_max_side.unwrap_or(128) {
                    side @ 16..=512 => side,
                    _ => {
                        return Err(invalid(
                            "relay.thumbnail_max_side",
                            "must be between 16 and 512",
                        ))
                    }
                },
            },
        })
    }
}

/// The 1-based number and the trimmed text of the line holding byte `offset`.
fn line_at(text: &str, offset: usize) -> (usize, &str) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line: String = text[start..end].chars().take(80).collect();
    let shown = &text[start..start + line.len()];
    (text[..start].matches('\n').count() + 1, shown.trim())
}

/// The text `satchel --help` prints after the options: every key, with its default.
pub const KEYS_HELP: &str = r#"CONFIGURATION (TOML; keys marked * are required)
  [component]
    jid *                     component JID, e.g. "upload.example.org"
    server *                  XMPP server's component port, "127.0.0.1:5347"
    secret *                  XEP-0114 shared secret
    keepalive_secs            ping the server after this much silence (30)
    reconnect_max_delay_secs  cap of the reconnection backoff (2)
  [http]
    listen *                  address to listen on, "127.0.0.1:5050"
    public_url *              base of the URLs handed to clients, "https://upload.example.org"
    cors_allow_origin         Access-Control-Allow-Origin ("*")
    header_timeout_secs       time allowed to send request headers (10)
    body_idle_timeout_secs    longest silence inside an upload body (30)
    max_concurrent_uploads    uploads in flight at once; more get 503 (64)
    max_connections           open HTTP connections at once; at the cap a newcomer replaces
                              the oldest connection that has sent no request, or gets 503 if
                              all are busy ((open-file limit - 256) / 2, at most 16384)
    cache_max_age_secs        Cache-Control max-age of downloads (31536000)
  [storage]
    path *                    directory of the sled database
    key_file                  master key, created on first start, mode 0600 ("<path>.key")
    previous_key_files        earlier master keys, to read old files after a rotation ([])
    cache_capacity_bytes      sled page cache (16777216)
  [limits]
    max_file_size *           largest upload, in bytes
    slot_lifetime_secs        how long a PUT URL stays valid (300)
    daily_upload_bytes        per-user bytes of slots per UTC day (10 x max_file_size)
    user_storage_bytes        per-user bytes stored (20 x max_file_size)
    min_free_disk_percent     refuse slots that would leave less disk free (5)
    allowed_domains           domains whose users get slots (parent domain of jid)
    slot_requests_per_minute  slot requests per user and minute (600)
  [retention]
    message_secs              keep files uploaded for messages (2592000 = 30 days)
    ephemeral_secs            keep files with purpose ephemeral (86400)
    permanent_secs            keep files with purpose permanent (message_secs)
    gc_interval_secs          how often expired files are deleted (60)
    abandoned_upload_secs     delete unfinished uploads after this long (3600)
  [relay]
    max_recipients            recipients of one relayed message (50)
    relays_per_minute         relay requests per sender and minute (30)
    retry_max_delay_secs      cap of the backoff between delivery attempts (300)
    bounce_window_secs        a message not bounced within this counts as delivered (30)
    thumbnail_max_side        longest side of server-made thumbnails, px (128)
    delete_after_download     delete a relayed file once every recipient got it (false)
  [logging]
    show_jids                 log users' JIDs; otherwise pseudonyms (false)
"#;

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
        assert_eq!(line_at("a\nbé\nc", 4), (2, "bé"));
    }
}
