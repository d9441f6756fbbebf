//! The settings that change while Satchel runs: what SIGHUP re-reads.
//!
//! An operator who lowers the largest upload, or adds a domain, should not
//! have to cut every upload in flight and the XMPP link to do it. So the
//! running parts do not copy such settings at start-up: they hold a
//! [`LiveConfig`] and read the value in force each time they decide
//! ([`LiveConfig::get`], a read lock and a reference count: cheap enough for
//! every slot request).
//!
//! A reload ([`LiveConfig::reload`]) reads the file again, with every check
//! of start-up; a file that no longer reads or checks changes nothing. Then
//! each key is compared with the running value. The keys the
//! [table](super::keys) marks `@reload` take the file's value; any other
//! key that differs (a listen address, the store, the component secret:
//! things held by sockets, open files or the XMPP session) is refused, and
//! the running value is kept until a restart. The [`Reload`] says which is
//! which, with both values, for the log.
//!
//! Values are compared as Satchel uses them, after defaults: a derived
//! default (say `limits.daily_upload_bytes`, 10 x `max_file_size`) changes
//! with the key it derives from, and is reported as changed. A default
//! derived from a key that needs a restart (`limits.allowed_domains`, the
//! parent domain of `component.jid`) is worked out from that key's running
//! value, so that a refused change does not slip in through it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::key::Spec;
use super::keys;
use super::{Config, ConfigError};
use crate::storage::{BlobBackend, MetadataBackend, PostgresCluster};

/// The configuration Satchel runs with now: the one read at start-up, with
/// the changes of every reload since. Cheap to clone; all clones see the
/// same settings.
#[derive(Clone)]
pub struct LiveConfig {
    /// A watch channel rather than a bare lock, so that a task asleep for a
    /// reloadable period can wake when it changes ([`LiveConfig::sleep_from`]).
    current: Arc<watch::Sender<Arc<Config>>>,
}

impl LiveConfig {
    pub fn new(config: Config) -> LiveConfig {
        LiveConfig {
            current: Arc::new(watch::Sender::new(Arc::new(config))),
        }
    }

    /// The settings in force now. Read it once per decision, so that one
    /// decision sees one consistent set of values.
    pub fn get(&self) -> Arc<Config> {
        self.current.borrow().clone()
    }

    /// Puts `config` in force whole, as a reload would.
    #[cfg(test)]
    pub(crate) fn set_for_tests(&self, config: Config) {
        self.current.send_replace(Arc::new(config));
    }

    /// Sleeps until `start` plus the period `of` picks out of the settings,
    /// as they stand then: a reload that shortens the period ends the sleep
    /// sooner (at once if it is already over), one that lengthens it, later.
    /// For the tasks that run every so often, at a reloadable interval.
    pub async fn sleep_from(&self, start: Instant, of: fn(&Config) -> Duration) {
        let mut reloads = self.current.subscribe();
        loop {
            let deadline = start + of(&reloads.borrow_and_update());
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                changed = reloads.changed() => {
                    if changed.is_err() {
                        // Unreachable while `self` holds the sender.
                        return tokio::time::sleep_until(deadline).await;
                    }
                }
            }
        }
    }

    /// Reads the file at `path` again and puts in force the reloadable
    /// keys that changed; what else changed is refused. A file that does not
    /// read or check is an error, and nothing changes.
    pub fn reload(&self, path: &Path) -> Result<Reload, ConfigError> {
        // A default that follows a key needing a restart follows its running
        // value: a new `component.jid` is refused, and the domains served by
        // default stay those of the JID Satchel still runs as.
        let running_jid = self.get().component.jid.clone();
        let read = Config::load_serving(path, Some(&running_jid))?;
        let mut reload = Reload::default();
        self.current.send_if_modified(|current| {
            let merged;
            (merged, reload) = merge(current, &read);
            let applied = !reload.applied.is_empty();
            if applied {
                *current = Arc::new(merged);
            }
            applied
        });
        Ok(reload)
    }
}

/// A configuration no reload will ever change (the tests', the benchmarks').
impl From<&Config> for LiveConfig {
    fn from(config: &Config) -> LiveConfig {
        LiveConfig::new(config.clone())
    }
}

impl From<&LiveConfig> for LiveConfig {
    fn from(live: &LiveConfig) -> LiveConfig {
        live.clone()
    }
}

/// A key whose value in the file differs from the running one, both shown
/// as Satchel holds them (durations in seconds as `300s`, text quoted,
/// secrets hidden).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `section.name`, as the file and `--help` spell it.
    pub key: &'static str,
    pub running: String,
    pub file: String,
}

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reload {
    /// Reloadable keys now in force with the file's value.
    pub applied: Vec<Change>,
    /// Keys that changed in the file but need a restart: the running value
    /// is kept.
    pub refused: Vec<Change>,
}

/// `running` with the reloadable keys that differ taken from `read`.
fn merge(running: &Config, read: &Config) -> (Config, Reload) {
    let mut merged = running.clone();
    let mut reload = Reload::default();
    for field in FIELDS {
        let (old, new) = ((field.show)(running), (field.show)(read));
        if old == new {
            continue;
        }
        let change = if field.hidden {
            // Whether it changed, never what it is (nor a hash of it).
            Change {
                key: field.spec.path,
                running: "<hidden>".into(),
                file: "<hidden>".into(),
            }
        } else {
            Change {
                key: field.spec.path,
                running: old,
                file: new,
            }
        };
        match field.copy {
            Some(copy) if field.spec.reloadable => {
                copy(read, &mut merged);
                reload.applied.push(change);
            }
            _ => reload.refused.push(change),
        }
    }
    (merged, reload)
}

/// How a reload reads and sets one key in a [`Config`].
struct Field {
    spec: &'static Spec,
    /// The value, for comparing and for the log.
    show: fn(&Config) -> String,
    /// Whether the log must not show the value (a secret).
    hidden: bool,
    /// Sets the value of the first configuration into the second; `None`
    /// where a key is not a field of its own (the TLS pair is one).
    copy: Option<fn(&Config, &mut Config)>,
}

/// A key held in one field of [`Config`]: `field!(section::name, path.in.config)`.
macro_rules! field {
    ($section:ident :: $name:ident, $($path:ident).+) => {
        Field {
            spec: &keys::$section::$name.spec,
            show: |config| format!("{:?}", config.$($path).+),
            hidden: false,
            copy: Some(|from, to| to.$($path).+ = from.$($path).+.clone()),
        }
    };
}

/// A key of `[storage.s3]`, shown as written (unset with the local backend).
macro_rules! s3_field {
    ($name:ident) => {
        Field {
            spec: &keys::storage_s3::$name.spec,
            show: |config| match &config.storage.backend {
                BlobBackend::S3(bucket) => format!("{:?}", bucket.$name),
                BlobBackend::Local => "unset".to_owned(),
            },
            hidden: false,
            copy: None,
        }
    };
}

/// A key of `[metadata]` or `[cluster]` beyond the backend, shown as
/// written (unset with sled).
macro_rules! cluster_field {
    ($section:ident :: $name:ident, $show:expr) => {
        Field {
            spec: &keys::$section::$name.spec,
            show: |config| match &config.storage.metadata {
                MetadataBackend::Postgres(cluster) => {
                    let show: fn(&PostgresCluster) -> String = $show;
                    show(cluster)
                }
                MetadataBackend::Sled => "unset".to_owned(),
            },
            hidden: false,
            copy: None,
        }
    };
}

/// Every key of the table, in its order (a test holds them in step). A key
/// the table marks `@reload` is applied by a reload through its `copy`.
const FIELDS: &[Field] = &[
    field!(component::jid, component.jid),
    field!(component::server, component.server),
    Field {
        spec: &keys::component::secret.spec,
        show: |config| config.component.secret.clone(),
        hidden: true,
        copy: Some(|from, to| to.component.secret = from.component.secret.clone()),
    },
    field!(component::keepalive_secs, component.keepalive),
    field!(
        component::reconnect_max_delay_secs,
        component.reconnect_max_delay
    ),
    field!(http::listen, http.listen),
    field!(http::public_url, http.public_url),
    field!(http::cors_allow_origin, http.cors_allow_origin),
    field!(http::header_timeout_secs, http.header_timeout),
    field!(http::body_idle_timeout_secs, http.body_idle_timeout),
    field!(http::max_concurrent_uploads, http.max_concurrent_uploads),
    field!(http::max_connections, http.max_connections),
    field!(http::cache_max_age_secs, http.cache_max_age),
    Field {
        spec: &keys::http::tls_cert.spec,
        show: |config| format!("{:?}", config.http.tls.as_ref().map(|tls| &tls.cert)),
        hidden: false,
        copy: None,
    },
    Field {
        spec: &keys::http::tls_key.spec,
        show: |config| format!("{:?}", config.http.tls.as_ref().map(|tls| &tls.key)),
        hidden: false,
        copy: None,
    },
    field!(storage::path, storage.path),
    field!(storage::key_file, storage.key_file),
    field!(storage::previous_key_files, storage.previous_key_files),
    field!(storage::cache_capacity_bytes, storage.cache_capacity_bytes),
    field!(storage::cipher, storage.cipher),
    Field {
        spec: &keys::storage::backend.spec,
        show: |config| match config.storage.backend {
            BlobBackend::Local => "local".to_owned(),
            BlobBackend::S3(_) => "s3".to_owned(),
        },
        hidden: false,
        copy: None,
    },
    s3_field!(endpoint),
    s3_field!(region),
    s3_field!(bucket),
    s3_field!(access_key_id),
    Field {
        hidden: true,
        ..s3_field!(secret_access_key)
    },
    Field {
        spec: &keys::metadata::backend.spec,
        show: |config| match config.storage.metadata {
            MetadataBackend::Sled => "sled".to_owned(),
            MetadataBackend::Postgres(_) => "postgres".to_owned(),
        },
        hidden: false,
        copy: None,
    },
    Field {
        hidden: true,
        ..cluster_field!(metadata::url, |cluster| cluster.url.clone())
    },
    cluster_field!(metadata::ca_file, |cluster| format!(
        "{:?}",
        cluster.ca_file
    )),
    cluster_field!(metadata::client_cert_file, |cluster| format!(
        "{:?}",
        cluster.client_cert.as_ref().map(|pair| &pair.cert_file)
    )),
    cluster_field!(metadata::client_key_file, |cluster| format!(
        "{:?}",
        cluster.client_cert.as_ref().map(|pair| &pair.key_file)
    )),
    cluster_field!(cluster::instance, |cluster| format!(
        "{:?}",
        cluster.instance
    )),
    cluster_field!(cluster::lease_secs, |cluster| format!(
        "{:?}",
        cluster.lease
    )),
    field!(limits::max_file_size, limits.max_file_size),
    field!(limits::slot_lifetime_secs, limits.slot_lifetime),
    field!(limits::daily_upload_bytes, limits.daily_upload_bytes),
    field!(limits::user_storage_bytes, limits.user_storage_bytes),
    field!(limits::min_free_disk_percent, limits.min_free_disk_percent),
    field!(limits::allowed_domains, limits.allowed_domains),
    field!(
        limits::slot_requests_per_minute,
        limits.slot_requests_per_minute
    ),
    field!(retention::message_secs, retention.message),
    field!(retention::ephemeral_secs, retention.ephemeral),
    field!(retention::permanent_secs, retention.permanent),
    field!(retention::gc_interval_secs, retention.gc_interval),
    field!(retention::abandoned_upload_secs, retention.abandoned_upload),
    field!(relay::max_recipients, relay.max_recipients),
    field!(relay::relays_per_minute, relay.relays_per_minute),
    field!(relay::retry_max_delay_secs, relay.retry_max_delay),
    field!(relay::bounce_window_secs, relay.bounce_window),
    field!(relay::thumbnail_max_side, relay.thumbnail_max_side),
    field!(relay::delete_after_download, relay.delete_after_download),
    field!(admin::jids, admins),
    field!(metrics::listen, metrics_listen),
    field!(logging::show_jids, show_jids),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::SECTIONS;

    const BASE: &str = include_str!("../../tests/minimal-config.toml");

    /// The test configuration with `extra` lines added to `[section]`.
    fn with(section: &str, extra: &str) -> Config {
        let header = format!("[{section}]");
        let text = if BASE.contains(&header) {
            BASE.replacen(&header, &format!("{header}\n{extra}"), 1)
        } else {
            format!("{BASE}\n{header}\n{extra}\n")
        };
        Config::parse(&text).unwrap_or_else(|error| panic!("{error}\n{text}"))
    }

    fn base() -> Config {
        Config::parse(BASE).unwrap()
    }

    fn keys_of(changes: &[Change]) -> Vec<&'static str> {
        changes.iter().map(|change| change.key).collect()
    }

    #[test]
    fn every_key_of_the_table_has_its_field_in_order() {
        let table: Vec<_> = SECTIONS
            .iter()
            .flat_map(|section| section.keys.iter().map(|spec| spec.path))
            .collect();
        let fields: Vec<_> = FIELDS.iter().map(|field| field.spec.path).collect();
        assert_eq!(fields, table);
        for field in FIELDS {
            assert!(
                !field.spec.reloadable || field.copy.is_some(),
                "{} is marked reloadable but a reload cannot set it",
                field.spec.path
            );
        }
    }

    #[test]
    fn limits_quotas_retention_domains_and_admins_are_reloadable_and_the_rest_is_not() {
        let reloadable: Vec<_> = FIELDS
            .iter()
            .filter(|field| field.spec.reloadable)
            .map(|field| field.spec.section)
            .collect();
        assert!(reloadable
            .iter()
            .all(|s| ["limits", "retention", "admin"].contains(s)));
        assert_eq!(reloadable.len(), 13, "{reloadable:?}");
    }

    #[test]
    fn an_unchanged_file_changes_nothing() {
        let (merged, reload) = merge(&base(), &base());
        assert_eq!(reload, Reload::default());
        assert_eq!(merged, base());
    }

    #[test]
    fn reloadable_changes_are_applied_with_both_values() {
        let read = with(
            "limits",
            "slot_lifetime_secs = 60\nallowed_domains = [\"example.org\", \"example.net\"]",
        );
        let (merged, reload) = merge(&base(), &read);
        assert_eq!(merged, read);
        assert!(reload.refused.is_empty(), "{reload:?}");
        assert_eq!(
            reload.applied,
            [
                Change {
                    key: "limits.slot_lifetime_secs",
                    running: "300s".into(),
                    file: "60s".into(),
                },
                Change {
                    key: "limits.allowed_domains",
                    running: "[\"example.org\"]".into(),
                    file: "[\"example.org\", \"example.net\"]".into(),
                },
            ]
        );
    }

    #[test]
    fn a_derived_default_follows_the_key_it_derives_from() {
        let read =
            Config::parse(&BASE.replace("max_file_size = 1000", "max_file_size = 500")).unwrap();
        let (merged, reload) = merge(&base(), &read);
        assert_eq!(merged, read);
        assert_eq!(
            keys_of(&reload.applied),
            [
                "limits.max_file_size",
                "limits.daily_upload_bytes",
                "limits.user_storage_bytes"
            ]
        );
        assert_eq!(reload.applied[0].running, "1000");
        assert_eq!(reload.applied[0].file, "500");
    }

    #[test]
    fn a_change_that_needs_a_restart_is_refused_and_the_running_value_kept() {
        let read = with("retention", "message_secs = 600");
        let read = Config {
            http: Config::parse(&BASE.replace("127.0.0.1:0", "127.0.0.1:6060"))
                .unwrap()
                .http,
            ..read
        };
        let (merged, reload) = merge(&base(), &read);
        assert_eq!(keys_of(&reload.refused), ["http.listen"]);
        assert_eq!(reload.refused[0].running, "127.0.0.1:0");
        assert_eq!(reload.refused[0].file, "127.0.0.1:6060");
        // The reloadable change beside it still applies.
        assert_eq!(
            keys_of(&reload.applied),
            [
                "retention.message_secs",
                "retention.ephemeral_secs",
                "retention.permanent_secs"
            ]
        );
        assert_eq!(merged.http, base().http);
        assert_eq!(merged.retention, read.retention);
    }

    #[test]
    fn a_changed_secret_is_refused_without_showing_it() {
        let mut running = base();
        running.component.secret = "the running secret".into();
        let mut read = base();
        read.component.secret = "a new secret".into();
        let (merged, reload) = merge(&running, &read);
        assert_eq!(merged, running);
        assert_eq!(keys_of(&reload.refused), ["component.secret"]);
        let change = &reload.refused[0];
        assert_eq!((&*change.running, &*change.file), ("<hidden>", "<hidden>"));
    }

    /// Whatever differs between two configurations is either applied or
    /// refused: when nothing is refused, the result is the file's.
    #[test]
    fn every_difference_is_seen() {
        let variants = [
            with("limits", "min_free_disk_percent = 9"),
            with("limits", "slot_requests_per_minute = 3"),
            with(
                "retention",
                "gc_interval_secs = 7\nabandoned_upload_secs = 8",
            ),
            with("retention", "ephemeral_secs = 5\npermanent_secs = 6"),
            with("relay", "max_recipients = 3"),
            with("logging", "show_jids = true"),
            with("storage", "cipher = \"aes-256-gcm\""),
            with("http", "tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\""),
        ];
        for read in &variants {
            for (running, read) in [(&base(), read), (read, &base())] {
                let (merged, reload) = merge(running, read);
                assert!(
                    !reload.applied.is_empty() || !reload.refused.is_empty(),
                    "{read:?}"
                );
                if reload.refused.is_empty() {
                    assert_eq!(&merged, read);
                } else {
                    assert!(reload.applied.is_empty());
                    assert_eq!(&merged, running);
                }
            }
        }
    }

    #[test]
    fn a_refused_jid_does_not_change_the_domains_served_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("satchel.toml");
        let live = LiveConfig::new(base());
        let moved = BASE.replace(
            "jid = \"upload.example.org\"",
            "jid = \"upload.example.net\"",
        );

        std::fs::write(&path, &moved).unwrap();
        let reload = live.reload(&path).unwrap();
        assert_eq!(keys_of(&reload.refused), ["component.jid"]);
        assert!(reload.applied.is_empty(), "{reload:?}");
        assert_eq!(live.get().limits.allowed_domains, ["example.org"]);

        // Written in the file, the domains are the file's, beside the
        // refused JID.
        std::fs::write(
            &path,
            moved.replace("[limits]", "[limits]\nallowed_domains = [\"example.net\"]"),
        )
        .unwrap();
        let reload = live.reload(&path).unwrap();
        assert_eq!(keys_of(&reload.refused), ["component.jid"]);
        assert_eq!(keys_of(&reload.applied), ["limits.allowed_domains"]);
        assert_eq!(live.get().limits.allowed_domains, ["example.net"]);
        assert_eq!(live.get().component.jid, base().component.jid);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_for_a_reloadable_period_follows_the_reloads() {
        let gc_interval = |config: &Config| config.retention.gc_interval;
        let hourly = with("retention", "gc_interval_secs = 3600");
        let live = LiveConfig::new(hourly.clone());
        let start = Instant::now();
        let sleeper = tokio::spawn({
            let live = live.clone();
            async move {
                live.sleep_from(start, gc_interval).await;
                Instant::now() - start
            }
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        // An unrelated reload: the sleep goes on to the same end.
        live.set_for_tests(with(
            "retention",
            "gc_interval_secs = 3600\nmessage_secs = 9",
        ));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!sleeper.is_finished());
        live.set_for_tests(with("retention", "gc_interval_secs = 60"));
        assert_eq!(sleeper.await.unwrap(), Duration::from_secs(60));

        // A period already over when the reload comes ends the sleep at once.
        let live = LiveConfig::new(hourly);
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(120)).await;
        live.set_for_tests(with("retention", "gc_interval_secs = 60"));
        live.sleep_from(start, gc_interval).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(120));
    }

    #[test]
    fn reload_reads_the_file_and_a_broken_file_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("satchel.toml");
        let live = LiveConfig::new(base());
        let before = live.get();

        std::fs::write(
            &path,
            BASE.replace("max_file_size = 1000", "max_file_size = 0"),
        )
        .unwrap();
        let error = live.reload(&path).unwrap_err().to_string();
        assert!(error.contains("limits.max_file_size"), "{error}");
        std::fs::write(&path, "[limits\n").unwrap();
        assert!(live.reload(&path).is_err());
        std::fs::remove_file(&path).unwrap();
        assert!(live.reload(&path).is_err());
        assert_eq!(live.get(), before);

        std::fs::write(
            &path,
            BASE.replace("max_file_size = 1000", "max_file_size = 10"),
        )
        .unwrap();
        let reload = live.reload(&path).unwrap();
        assert_eq!(reload.applied.len(), 3, "{reload:?}");
        let clone = live.clone();
        assert_eq!(clone.get().limits.max_file_size, 10);
        assert_eq!(
            before.limits.max_file_size, 1000,
            "a snapshot stays as it was"
        );
    }
}
