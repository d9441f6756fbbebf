"""A real Prometheus (Debian's `prometheus` package) on a loopback port, in a
temp dir of its own, scraping the targets it is given every second, with the
alert rules of examples/prometheus/ loaded; read back through its HTTP API."""

import shutil
from pathlib import Path

import requests

from .service import Service
from .util import free_port, wait_until

RULES = Path(__file__).resolve().parents[2] / "examples" / "prometheus" / "satchel-alerts.yml"


class Prometheus(Service):
    name = "prometheus"
    tempdir_prefix = "satchel-prometheus-"

    def __init__(self, targets, workdir=None):
        super().__init__(workdir)
        self.targets = targets
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.console_log = self.dir / "prometheus.log"

    @staticmethod
    def installed():
        return shutil.which("prometheus") is not None

    def prepare(self):
        targets = ", ".join(f'"{t}"' for t in self.targets)
        shutil.copy(RULES, self.dir / "rules.yml")
        (self.dir / "prometheus.yml").write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  evaluation_interval: 1s\n"
            "rule_files: [rules.yml]\n"
            "scrape_configs:\n"
            "  - job_name: satchel\n"
            f"    static_configs: [{{targets: [{targets}]}}]\n")

    def command(self):
        return ["prometheus", f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}"], None

    def ready_ports(self):
        return [self.port]

    def after_start(self):
        wait_until(lambda: requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200,
                   timeout=30, what="Prometheus ready")

    def query(self, expr):
        """The instant vector of `expr`: [(labels, value)]."""
        r = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        r.raise_for_status()
        return [(s["metric"], float(s["value"][1])) for s in r.json()["data"]["result"]]

    def value(self, expr):
        """The single value of `expr`, or None while Prometheus has none."""
        result = self.query(expr)
        return result[0][1] if len(result) == 1 else None

    def wait_value(self, expr, expected, timeout=30):
        """Waits until `expr` is `expected` (as scraped and stored)."""
        wait_until(lambda: self.value(expr) == expected, timeout=timeout, interval=0.2,
                   what=lambda: f"{expr}: Prometheus has {self.value(expr)}, expected {expected}")

    def series_labels(self, match):
        r = requests.get(f"{self.url}/api/v1/series", params={"match[]": match}, timeout=5)
        r.raise_for_status()
        return r.json()["data"]

    def alerts(self):
        r = requests.get(f"{self.url}/api/v1/rules", params={"type": "alert"}, timeout=5)
        r.raise_for_status()
        return {rule["name"]: rule for group in r.json()["data"]["groups"]
                for rule in group["rules"]}
