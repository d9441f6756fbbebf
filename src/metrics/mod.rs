//! Prometheus metrics: what an operator's monitoring reads off Satchel.
//!
//! The counters and histograms live in one process-wide [`Metrics`], reached
//! with [`metrics()`], as `tracing`'s subscriber is: they are bumped deep
//! inside every part (the slot checks, the PUT body loop, the delivery
//! task, the link), and threading a handle through every constructor would
//! change every signature for nothing a test could not do with its own
//! [`Metrics::new`]. The figures that describe what is stored (files, bytes,
//! free disk, relays pending) are not counted as they change but read when
//! Prometheus scrapes, from a [`Snapshot`] the [`server`] takes: they are
//! then always right, also after a restart.
//!
//! Labels name a kind of thing from a fixed list ([`Reason`], [`Method`]),
//! never a JID, a file name or an id: a label value is a time series, and
//! one per user would grow without bound.
//!
//! The series, with the `satchel_` prefix, are listed in the README
//! (Metrics); `prometheus-client` writes them in the OpenMetrics text format,
//! which Prometheus reads.

pub mod server;

use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Why a slot request was refused ([`SlotError::kind`](crate::slots::SlotError::kind),
/// or `bad-request` for one that does not parse).
pub const SLOT_REFUSALS: &[&str] = &[
    "bad-request",
    "too-large",
    "bad-filename",
    "bad-content-type",
    "not-allowed",
    "rate-limited",
    "quota",
    "disk-full",
    "paused",
    "storage",
];

/// Why a PUT stored nothing (named after the status it got).
pub const UPLOAD_FAILURES: &[&str] = &[
    "bad-request",
    "forbidden",
    "no-slot",
    "stalled",
    "conflict",
    "length-required",
    "too-large",
    "wrong-type",
    "busy",
    "disk-full",
    "storage",
];

/// Why a slot or an upload was refused: one short name from a fixed list.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

/// The HTTP method a duration was measured for.
#[allow(clippy::upper_case_acronyms)] // the label's value is the method as HTTP writes it
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Method {
    PUT,
    GET,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: Method,
}

/// What is stored, read when Prometheus scrapes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub stored_files: u64,
    pub stored_bytes: u64,
    pub disk_free_bytes: u64,
    pub disk_size_bytes: u64,
    /// Relays with a recipient still owed a delivery.
    pub relays_pending: u64,
    /// Deliveries still owed (sent, due or held), and those held for
    /// recipients who are offline.
    pub deliveries_pending: u64,
    pub deliveries_held: u64,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every series Satchel exports.
pub struct Metrics {
    registry: Registry,
    pub slots_granted: Counter,
    pub slots_refused: Family<Reason, Counter>,
    pub uploads_completed: Counter,
    pub uploads_failed: Family<Reason, Counter>,
    pub upload_bytes: Counter,
    pub download_bytes: Counter,
    pub relays_delivered: Counter,
    pub xmpp_link_up: Gauge,
    pub xmpp_reconnects: Counter,
    pub gc_freed_bytes: Counter,
    http_request_duration: HistogramFamily<MethodLabel>,
    slot_request_duration: Histogram,
    stored_files: Gauge,
    stored_bytes: Gauge,
    disk_free_bytes: Gauge,
    disk_size_bytes: Gauge,
    relays_pending: Gauge,
    deliveries_pending: Gauge,
    deliveries_held: Gauge,
}

/// Buckets of the HTTP durations: 1 ms to about 4.4 minutes, by fours (a
/// 1 KiB GET takes about a millisecond here, a 1 GiB upload minutes).
fn http_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 10))
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

impl Metrics {
    /// Every series at zero, registered under the `satchel_` prefix.
    pub fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::with_prefix("satchel"),
            slots_granted: Counter::default(),
            slots_refused: Family::default(),
            uploads_completed: Counter::default(),
            uploads_failed: Family::default(),
            upload_bytes: Counter::default(),
            download_bytes: Counter::default(),
            relays_delivered: Counter::default(),
            xmpp_link_up: Gauge::default(),
            xmpp_reconnects: Counter::default(),
            gc_freed_bytes: Counter::default(),
            http_request_duration: Family::new_with_constructor(http_buckets),
            // 100 µs to about 1.6 s: a slot is granted in about 0.1 ms.
            slot_request_duration: Histogram::new(exponential_buckets(0.0001, 4.0, 8)),
            stored_files: Gauge::default(),
            stored_bytes: Gauge::default(),
            disk_free_bytes: Gauge::default(),
            disk_size_bytes: Gauge::default(),
            relays_pending: Gauge::default(),
            deliveries_pending: Gauge::default(),
            deliveries_held: Gauge::default(),
        };
        // Every series exists from the start, at zero: a rate or an alert
        // over a reason that has not happened yet then reads 0, not nothing.
        for reason in SLOT_REFUSALS {
            metrics
                .slots_refused
                .get_or_create_owned(&Reason { reason });
        }
        for reason in UPLOAD_FAILURES {
            metrics
                .uploads_failed
                .get_or_create_owned(&Reason { reason });
        }
        for method in [Method::PUT, Method::GET] {
            metrics
                .http_request_duration
                .get_or_create_owned(&MethodLabel { method });
        }
        metrics.registered()
    }

    fn registered(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "slots_granted",
            "XEP-0363 slots granted",
            self.slots_granted.clone(),
        );
        r.register(
            "slots_refused",
            "Slot requests refused, by reason",
            self.slots_refused.clone(),
        );
        r.register(
            "uploads_completed",
            "Uploads stored and committed",
            self.uploads_completed.clone(),
        );
        r.register(
            "uploads_failed",
            "PUT requests that stored nothing, by reason",
            self.uploads_failed.clone(),
        );
        r.register_with_unit(
            "upload",
            "Body bytes received by PUT requests, stored or not",
            Unit::Bytes,
            self.upload_bytes.clone(),
        );
        r.register_with_unit(
            "download",
            "File bytes handed to GET responses",
            Unit::Bytes,
            self.download_bytes.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "PUT and GET requests, from the headers to the last byte of the body",
            Unit::Seconds,
            self.http_request_duration.clone(),
        );
        r.register_with_unit(
            "slot_request_duration",
            "Slot requests, from parsing to the answer",
            Unit::Seconds,
            self.slot_request_duration.clone(),
        );
        r.register("stored_files", "Files stored", self.stored_files.clone());
        r.register_with_unit(
            "stored",
            "Plaintext bytes of the files stored",
            Unit::Bytes,
            self.stored_bytes.clone(),
        );
        r.register_with_unit(
            "disk_free",
            "Free space on the store's file system, for Satchel's user",
            Unit::Bytes,
            self.disk_free_bytes.clone(),
        );
        r.register_with_unit(
            "disk_size",
            "Size of the store's file system",
            Unit::Bytes,
            self.disk_size_bytes.clone(),
        );
        r.register(
            "relays_pending",
            "Relays with a recipient still owed the message",
            self.relays_pending.clone(),
        );
        r.register(
            "deliveries_pending",
            "Relay deliveries still owed (sent, due or held)",
            self.deliveries_pending.clone(),
        );
        r.register(
            "deliveries_held",
            "Relay deliveries held for recipients who are offline",
            self.deliveries_held.clone(),
        );
        r.register(
            "relays_delivered",
            "Relay messages delivered, one per recipient",
            self.relays_delivered.clone(),
        );
        r.register(
            "xmpp_link_up",
            "1 while the XEP-0114 link to the XMPP server is up",
            self.xmpp_link_up.clone(),
        );
        r.register(
            "xmpp_reconnects",
            "Times the XMPP link came back after it was lost",
            self.xmpp_reconnects.clone(),
        );
        r.register_with_unit(
            "gc_freed",
            "Bytes of expired and deleted files the garbage collector freed",
            Unit::Bytes,
            self.gc_freed_bytes.clone(),
        );
        self
    }

    /// Counts a refused slot request; `reason` is one of [`SLOT_REFUSALS`].
    pub fn slot_refused(&self, reason: &'static str) {
        debug_assert!(SLOT_REFUSALS.contains(&reason), "{reason}");
        self.slots_refused.get_or_create(&Reason { reason }).inc();
    }

    /// Counts a PUT that stored nothing; `reason` is one of [`UPLOAD_FAILURES`].
    pub fn upload_failed(&self, reason: &'static str) {
        debug_assert!(UPLOAD_FAILURES.contains(&reason), "{reason}");
        self.uploads_failed.get_or_create(&Reason { reason }).inc();
    }

    /// A timer that records the duration of one request of `method` when
    /// it is dropped.
    pub fn http_timer(&self, method: Method) -> Timer {
        let histogram = self
            .http_request_duration
            .get_or_create_owned(&MethodLabel { method });
        Timer::start(histogram)
    }

    /// A timer for one slot request.
    pub fn slot_timer(&self) -> Timer {
        Timer::start(self.slot_request_duration.clone())
    }

    /// The text Prometheus reads, with the stored figures of `snapshot`.
    pub fn encode(&self, snapshot: &Snapshot) -> String {
        let gauge = |gauge: &Gauge, value: u64| {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        gauge(&self.stored_files, snapshot.stored_files);
        gauge(&self.stored_bytes, snapshot.stored_bytes);
        gauge(&self.disk_free_bytes, snapshot.disk_free_bytes);
        gauge(&self.disk_size_bytes, snapshot.disk_size_bytes);
        gauge(&self.relays_pending, snapshot.relays_pending);
        gauge(&self.deliveries_pending, snapshot.deliveries_pending);
        gauge(&self.deliveries_held, snapshot.deliveries_held);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Records the time from its start to its drop into a histogram.
pub struct Timer {
    histogram: Histogram,
    started: Instant,
}

impl Timer {
    fn start(histogram: Histogram) -> Timer {
        Timer {
            histogram,
            started: Instant::now(),
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line `name` (labels included) in `text`.
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map(|value| value.parse().expect("a number"))
    }

    #[test]
    fn the_series_the_operators_rely_on_are_named_as_documented() {
        let metrics = Metrics::new();
        metrics.slot_refused("too-large");
        metrics.upload_failed("stalled");
        drop(metrics.http_timer(Method::PUT));
        drop(metrics.http_timer(Method::GET));
        let text = metrics.encode(&Snapshot::default());
        for name in [
            "satchel_slots_granted_total",
            "satchel_slots_refused_total{reason=\"too-large\"}",
            "satchel_uploads_completed_total",
            "satchel_uploads_failed_total{reason=\"stalled\"}",
            "satchel_upload_bytes_total",
            "satchel_download_bytes_total",
            "satchel_http_request_duration_seconds_count{method=\"PUT\"}",
            "satchel_http_request_duration_seconds_count{method=\"GET\"}",
            "satchel_slot_request_duration_seconds_count",
            "satchel_stored_files",
            "satchel_stored_bytes",
            "satchel_disk_free_bytes",
            "satchel_disk_size_bytes",
            "satchel_relays_pending",
            "satchel_deliveries_pending",
            "satchel_deliveries_held",
            "satchel_relays_delivered_total",
            "satchel_xmpp_link_up",
            "satchel_xmpp_reconnects_total",
            "satchel_gc_freed_bytes_total",
        ] {
            assert!(
                sample(&text, name).is_some(),
                "{name} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn every_reason_and_method_is_exported_at_zero_from_the_start() {
        let text = Metrics::new().encode(&Snapshot::default());
        for reason in SLOT_REFUSALS {
            let name = format!("satchel_slots_refused_total{{reason=\"{reason}\"}}");
            assert_eq!(sample(&text, &name), Some(0.0), "{name}");
        }
        for reason in UPLOAD_FAILURES {
            let name = format!("satchel_uploads_failed_total{{reason=\"{reason}\"}}");
            assert_eq!(sample(&text, &name), Some(0.0), "{name}");
        }
        for method in ["PUT", "GET"] {
            let name =
                format!("satchel_http_request_duration_seconds_count{{method=\"{method}\"}}");
            assert_eq!(sample(&text, &name), Some(0.0), "{name}");
        }
    }

    #[test]
    fn counts_and_the_snapshot_are_what_the_scrape_shows() {
        let metrics = Metrics::new();
        metrics.upload_bytes.inc_by(1234);
        metrics.slot_refused("quota");
        metrics.slot_refused("quota");
        let text = metrics.encode(&Snapshot {
            stored_files: 3,
            stored_bytes: 4096,
            disk_free_bytes: u64::MAX,
            ..Snapshot::default()
        });
        assert_eq!(sample(&text, "satchel_upload_bytes_total"), Some(1234.0));
        assert_eq!(
            sample(&text, "satchel_slots_refused_total{reason=\"quota\"}"),
            Some(2.0)
        );
        assert_eq!(sample(&text, "satchel_stored_files"), Some(3.0));
        assert_eq!(sample(&text, "satchel_stored_bytes"), Some(4096.0));
        // A figure past what the gauge holds shows as its largest value.
        assert_eq!(
            sample(&text, "satchel_disk_free_bytes"),
            Some(i64::MAX as f64)
        );
    }

    #[test]
    fn a_timer_records_one_observation_when_dropped() {
        let metrics = Metrics::new();
        let count = |metrics: &Metrics| {
            let text = metrics.encode(&Snapshot::default());
            sample(&text, "satchel_slot_request_duration_seconds_count")
        };
        let timer = metrics.slot_timer();
        assert_eq!(count(&metrics), Some(0.0));
        drop(timer);
        assert_eq!(count(&metrics), Some(1.0));
    }
}
