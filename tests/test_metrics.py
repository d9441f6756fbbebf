"""Prometheus metrics and the health check, read the way operators read them:
a real Prometheus (Debian's package) scrapes Satchel's metrics listener, and
the figures are read back through Prometheus' query API after an upload and a
download. The alert rules and the Grafana dashboard of examples/prometheus/
are checked against the series Satchel really exports."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import requests

from harness.client import XmppError
from harness.prometheus import Prometheus
from harness.satchel import Satchel
from harness.util import free_port, wait_until

TIMEOUT = 15
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "prometheus"
SERIES_NAME = re.compile(r"\bsatchel_[a-z_]+")

needs_prometheus = pytest.mark.skipif(
    not Prometheus.installed() and not os.environ.get("SATCHEL_REQUIRE_PROMETHEUS"),
    reason="Debian's prometheus package is not installed (.ci/run installs it)")


@pytest.fixture
def monitored(satchel_manager):
    """A fresh Satchel with metrics on, and a Prometheus scraping it every second."""
    metrics_port = free_port()
    satchel = satchel_manager.get({"metrics": {"listen": f"127.0.0.1:{metrics_port}"}},
                                  fresh=True)
    prometheus = Prometheus([f"127.0.0.1:{metrics_port}"]).start()
    yield satchel, prometheus, f"http://127.0.0.1:{metrics_port}/metrics"
    prometheus.cleanup()
    satchel_manager.invalidate()


def scrape(url):
    r = requests.get(url, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    return r.text


def exported_names(text):
    """The series names of a scrape: those with samples, and those a family
    declares (a family with labels has no sample until a label set is used)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            family, kind = line.split()[2:4]
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
            names.update(family + suffix for suffix in suffixes.get(kind, [""]))
        elif line and not line.startswith("#"):
            names.add(line.split("{")[0].split(" ")[0])
    return names


def put(slot, data):
    headers = dict(slot.put_headers)
    headers["Content-Type"] = "application/octet-stream"
    r = requests.put(slot.put_url, data=data, headers=headers, timeout=TIMEOUT)
    assert r.status_code == 201, r.text


@needs_prometheus
def test_prometheus_reads_an_upload_and_a_download(monitored, alice):
    satchel, prometheus, _ = monitored
    data = os.urandom(70_000)
    slot = alice.request_slot("metrics.bin", len(data), "application/octet-stream")
    put(slot, data)
    r = requests.get(slot.get_url, timeout=TIMEOUT)
    assert r.content == data
    with pytest.raises(XmppError):
        alice.request_slot("huge.bin", satchel.max_file_size + 1, "application/octet-stream")
    # A PUT with a forged ticket stores nothing.
    forged = slot.put_url.rsplit("/", 2)
    r = requests.put(f"{forged[0]}/{'A' * len(forged[1])}/{forged[2]}", data=b"x",
                     headers={"Content-Type": "application/octet-stream"}, timeout=TIMEOUT)
    assert r.status_code == 403

    expected = {
        "satchel_slots_granted_total": 1,
        'satchel_slots_refused_total{reason="too-large"}': 1,
        "satchel_uploads_completed_total": 1,
        'satchel_uploads_failed_total{reason="forbidden"}': 1,
        "satchel_upload_bytes_total": len(data),
        "satchel_download_bytes_total": len(data),
        "satchel_stored_files": 1,
        "satchel_stored_bytes": len(data),
        "satchel_xmpp_link_up": 1,
        'satchel_http_request_duration_seconds_count{method="PUT"}': 2,
        'satchel_http_request_duration_seconds_count{method="GET"}': 1,
        "satchel_slot_request_duration_seconds_count": 2,
    }
    for expr, value in expected.items():
        prometheus.wait_value(expr, value)
    free = prometheus.value("satchel_disk_free_bytes")
    size = prometheus.value("satchel_disk_size_bytes")
    assert 0 < free <= size
    # The whole upload took less than the largest bucket holds.
    assert prometheus.value(
        'satchel_http_request_duration_seconds_bucket{method="PUT", le="+Inf"}') == 2


@needs_prometheus
def test_no_label_names_a_user_a_file_or_an_id(monitored, alice):
    satchel, prometheus, _ = monitored
    slot = alice.request_slot("secret-name.txt", 5, "application/octet-stream")
    put(slot, b"hello")
    file_id = slot.put_url.split("/")[4]
    prometheus.wait_value("satchel_uploads_completed_total", 1)
    series = prometheus.series_labels('{__name__=~"satchel_.+"}')
    assert len(series) > 20
    allowed = {"__name__", "instance", "job", "reason", "method", "le"}
    for labels in series:
        assert set(labels) <= allowed, labels
        values = " ".join(labels.values())
        for private in ("alice", "localhost", "secret-name", file_id):
            assert private not in values, labels


@needs_prometheus
def test_a_link_that_is_down_shows_in_metrics_health_and_alerts(server, satchel_bin):
    """A Satchel whose XMPP server never answers: /health says why with 503,
    the gauge is 0, and the link-down alert of the example rules goes pending."""
    metrics_port = free_port()
    closed = free_port()
    satchel = Satchel(server, {"component": {"server": f"127.0.0.1:{closed}"},
                               "metrics": {"listen": f"127.0.0.1:{metrics_port}"}})
    satchel.start()
    prometheus = Prometheus([f"127.0.0.1:{metrics_port}"])
    try:
        r = requests.get(f"{satchel.public_url}/health", timeout=TIMEOUT)
        assert (r.status_code, r.text) == (503, "the XMPP link is down\n")
        assert r.headers["cache-control"] == "no-store"
        prometheus.start()
        prometheus.wait_value("satchel_xmpp_link_up", 0)
        wait_until(lambda: prometheus.alerts()["SatchelXmppLinkDown"]["state"] in
                   ("pending", "firing"), timeout=30,
                   what=lambda: prometheus.alerts()["SatchelXmppLinkDown"])
        assert prometheus.alerts()["SatchelDown"]["state"] == "inactive"
    finally:
        prometheus.cleanup()
        satchel.cleanup()


def test_health_is_ok_while_the_link_is_up_and_the_store_writable(satchel):
    r = requests.get(f"{satchel.public_url}/health", timeout=TIMEOUT)
    assert (r.status_code, r.text) == (200, "ok\n")
    assert not (satchel.store_path / "health-probe").exists()


def test_the_metrics_are_on_their_own_listener_only(monitored):
    satchel, _, metrics_url = monitored
    names = exported_names(scrape(metrics_url))
    assert "satchel_slots_granted_total" in names
    r = requests.get(f"{satchel.public_url}/metrics", timeout=TIMEOUT)
    assert r.status_code == 404
    base = metrics_url.rsplit("/", 1)[0]
    for path in ("/", "/health", "/metrics/../upload", "/" + "a" * 5000):
        assert requests.get(base + path, timeout=TIMEOUT).status_code == 404, path
    assert requests.post(metrics_url, data=b"x" * 100_000, timeout=TIMEOUT).status_code == 405
    # Still serving after the hostile requests.
    scrape(metrics_url)


def test_the_alert_rules_pass_promtool():
    if subprocess.run(["which", "promtool"], capture_output=True).returncode != 0:
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    for args in (["check", "rules", "satchel-alerts.yml"],
                 ["test", "rules", "satchel-alerts.test.yml"],
                 ["check", "config", "prometheus.yml"]):
        done = subprocess.run(["promtool", *args], cwd=EXAMPLES, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, (args, done.stdout, done.stderr)


@needs_prometheus
def test_the_dashboard_and_the_rules_use_only_series_satchel_exports(monitored):
    _, prometheus, metrics_url = monitored
    names = exported_names(scrape(metrics_url))
    dashboard = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = (EXAMPLES / "satchel-alerts.yml").read_text()
    exprs += re.findall(r"^\s+expr: (.+)$", rules, re.M)
    assert len(exprs) > 15
    for expr in exprs:
        for name in SERIES_NAME.findall(expr):
            assert name in names, f"{name} (in {expr}) is not exported"
        # Each query is valid PromQL for the Prometheus that scrapes Satchel.
        r = requests.get(f"{prometheus.url}/api/v1/query", params={"query": expr},
                         timeout=TIMEOUT)
        assert r.json()["status"] == "success", (expr, r.text)
