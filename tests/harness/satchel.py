"""The Satchel binary under test: build it, write its TOML config, start/stop it.

The binary is built once (`cargo build --bin satchel`) unless SATCHEL_BIN names
one. Satchel logs to stderr; that goes to satchel.log in its temp dir, and
logs() returns the tail for failure reports."""

import copy
import os
import re
import subprocess
import threading
import time
from pathlib import Path

from . import COMPONENT_JID, DOMAIN
from .service import Service
from .util import REPO_ROOT, free_port

_build_lock = threading.Lock()
_built = None


def satchel_binary():
    """Path of the Satchel binary: $SATCHEL_BIN, or a fresh `cargo build`."""
    global _built
    env_bin = os.environ.get("SATCHEL_BIN")
    if env_bin:
        p = Path(env_bin)
        if not p.exists():
            raise RuntimeError(f"SATCHEL_BIN={env_bin} does not exist")
        return p
    with _build_lock:
        if _built is None:
            r = subprocess.run(
                ["cargo", "build", "--quiet", "--bin", "satchel"],
                cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            )
            if r.returncode != 0:
                raise RuntimeError("cargo build --bin satchel failed:\n"
                                   + "\n".join((r.stdout + r.stderr).splitlines()[-60:]))
            target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
            if not target.is_absolute():
                target = REPO_ROOT / target
            _built = target / "debug" / "satchel"
            if not _built.exists():
                raise RuntimeError(f"cargo build succeeded but {_built} is missing")
        return _built


# -- TOML writer (tomllib only reads) -------------------------------------------
def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(config):
    out = []
    for section, values in config.items():
        out.append(f"[{section}]")
        for k, v in values.items():
            if v is not None:
                out.append(f"{k} = {_toml_value(v)}")
        out.append("")
    return "\n".join(out)


def deep_merge(base, overrides):
    """A copy of `base` with `overrides` merged in; a None value removes the key."""
    result = copy.deepcopy(base)
    for k, v in (overrides or {}).items():
        if isinstance(v, dict) and isinstance(result.get(k), dict):
            result[k] = deep_merge(result[k], v)
        elif v is None:
            result.pop(k, None)
        else:
            result[k] = copy.deepcopy(v)
    return result


MAX_FILE_SIZE = 10 * 1024 * 1024


class Satchel(Service):
    """The binary with a config of its own (the test defaults, deep-merged with
    `overrides`), storing in its temp dir. The config file is written at each
    start, so a test may change `config` and restart."""

    name = "satchel"
    tempdir_prefix = "satchel-"
    log_lines = 60

    def __init__(self, server, overrides=None, binary=None, workdir=None, rust_log=None):
        super().__init__(workdir)
        self.server = server
        self.http_port = free_port()
        # With a certificate (http.tls_cert) Satchel speaks HTTPS on its port.
        tls = (overrides or {}).get("http", {}).get("tls_cert")
        self.public_url = f"{'https' if tls else 'http'}://127.0.0.1:{self.http_port}"
        self.config_path = self.dir / "satchel.toml"
        self.log_path = self.console_log = self.dir / "satchel.log"
        self.store_path = self.dir / "store"
        self.key_file = self.dir / "master.key"
        self.binary = binary
        self.rust_log = rust_log or os.environ.get("SATCHEL_RUST_LOG", "info,satchel=debug")
        self.config = deep_merge({
            "component": {
                "jid": COMPONENT_JID,
                "server": f"127.0.0.1:{server.component_port}",
                "secret": server.secret,
            },
            "http": {
                "listen": f"127.0.0.1:{self.http_port}",
                "public_url": self.public_url,
                "cors_allow_origin": "*",
            },
            "storage": {
                "path": str(self.store_path),
                "key_file": str(self.key_file),
            },
            "limits": {
                "max_file_size": MAX_FILE_SIZE,
                "slot_lifetime_secs": 300,
                "allowed_domains": [DOMAIN],
            },
        }, overrides)

    @property
    def max_file_size(self):
        return self.config["limits"]["max_file_size"]

    def prepare(self):
        if self.binary is None:
            self.binary = satchel_binary()
        self.config_path.write_text(to_toml(self.config))

    def command(self):
        env = dict(os.environ)
        env["RUST_LOG"] = self.rust_log
        env.setdefault("NO_COLOR", "1")  # plain log files
        env.setdefault("RUST_BACKTRACE", "1")
        env.pop("SATCHEL_CONFIG", None)
        return [self.binary, "--config", self.config_path], env

    def ready_ports(self):
        return [self.http_port]

    def __repr__(self):
        return f"<Satchel http={self.public_url} dir={self.dir}>"


# -- what Satchel's log says ------------------------------------------------------------------
def log_size(satchel):
    """Where Satchel's log ends now: a `since` for wait_for_log."""
    return satchel.log_path.stat().st_size if satchel.log_path.exists() else 0


def wait_for_log(satchel, pattern, since=0, timeout=15):
    """Wait until a line of Satchel's log after byte `since` matches `pattern`.
    Returns the match and where its line ends (a `since` for what follows)."""
    deadline = time.monotonic() + timeout
    while True:
        with open(satchel.log_path, "rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", "replace")
        match = re.search(pattern, text)
        if match:
            line_end = text.find("\n", match.end())
            line_end = len(text) if line_end < 0 else line_end
            return match, since + len(text[:line_end].encode("utf-8"))
        assert time.monotonic() < deadline, \
            f"nothing matches {pattern!r} in Satchel's log within {timeout}s:\n{text[-3000:]}"
        time.sleep(0.1)
