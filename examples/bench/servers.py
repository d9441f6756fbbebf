"""The three systems of the benchmark, started with the test harness:

- one Prosody 0.12 (examples/servers/prosody.cfg.lua) hosting both Satchel's
  component (upload.localhost) and its own mod_http_file_share
  (share.localhost, from servers/prosody-*.cfg.lua here);
- Satchel (release build) plugged into that Prosody;
- one ejabberd 23.01 (examples/servers/ejabberd.yml) with its own
  mod_http_upload (share.localhost, from servers/ejabberd-*.yml here).

Every system gets the same largest file size and has its quotas out of the way."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness import COMPONENT_JID, USERS, make_server  # noqa: E402,F401
from harness.util import free_port, render_template  # noqa: E402
from harness.satchel import Satchel  # noqa: E402

SNIPPETS = HERE / "servers"
SHARE_JID = "share.localhost"
# The test users plus a few more: the 32-in-flight slot load is spread over
# several accounts (ejabberd's test config allows 10 sessions per user).
BENCH_USERS = dict(USERS, **{f"load{i}": f"load{i}-secret" for i in range(1, 5)})
HUGE = 1 << 50  # "no quota": 1 PiB


def _prosody_hook(http_port, max_file_size, read_size):
    def hook(text, server):
        values = {
            "LOG_DIR": server.dir / "log",
            "HTTP_PORT": http_port,
            "READ_SIZE": read_size,
            "SHARE_JID": SHARE_JID,
            "MAX_FILE_SIZE": max_file_size,
            "DAILY_QUOTA": HUGE,
            "ARCHIVE_ITEM_LIMIT": 1 << 40,
        }
        glob = render_template(SNIPPETS / "prosody-global.cfg.lua", values)
        comp = render_template(SNIPPETS / "prosody-http_file_share.cfg.lua", values)
        marker = '\nVirtualHost "'
        at = text.index(marker)
        return text[:at] + "\n" + glob + text[at:] + "\n" + comp
    return hook


def _ejabberd_hook(http_port, max_file_size, docroot):
    def hook(text, server):
        values = {"HTTP_PORT": http_port, "SHARE_JID": SHARE_JID,
                  "MAX_FILE_SIZE": max_file_size, "DOCROOT": docroot}
        listen = render_template(SNIPPETS / "ejabberd-listen.yml", values)
        module = render_template(SNIPPETS / "ejabberd-mod_http_upload.yml", values)
        marker = "\nlisten:\n"
        at = text.index(marker) + len(marker)
        text = text[:at] + listen + text[at:]
        # `modules:` is the last top-level key of the example config: append to it.
        tail = text[text.index("\nmodules:\n") + len("\nmodules:\n"):]
        if any(line and not line.startswith((" ", "#")) for line in tail.splitlines()):
            raise RuntimeError("modules: is no longer the last key of examples/servers/ejabberd.yml")
        return text.rstrip("\n") + "\n" + module
    return hook


def make_prosody(max_file_size, read_size):
    http_port = free_port()
    server = make_server("prosody", users=BENCH_USERS,
                         config_hook=_prosody_hook(http_port, max_file_size, read_size))
    server.http_port = http_port
    return server


def make_ejabberd(max_file_size):
    http_port = free_port()
    server = make_server("ejabberd", users=BENCH_USERS)
    docroot = server.dir / "upload"
    docroot.mkdir()
    server.config_hook = _ejabberd_hook(http_port, max_file_size, docroot)
    server.http_port = http_port
    server.docroot = docroot
    return server


def make_satchel(server, binary, max_file_size, concurrent, retention=None, cipher=None):
    overrides = {
        "limits": {"max_file_size": max_file_size,
                   "daily_upload_bytes": HUGE,
                   "user_storage_bytes": HUGE,
                   "min_free_disk_percent": 1,
                   "slot_requests_per_minute": (1 << 32) - 1},
        "http": {"max_concurrent_uploads": max(64, 2 * concurrent)},
    }
    if retention:
        overrides["retention"] = retention
    if cipher:
        overrides["storage"] = {"cipher": cipher}
    return Satchel(server, binary=binary, rust_log="warn", overrides=overrides)


def take_turns(binaries, runs, measure):
    """A/B: one Prosody; each Satchel of `binaries` ({label: path}) holds its
    component in turn, `runs` times over, so that load from elsewhere on the
    machine hits all alike. `measure(prosody)` runs while one is connected;
    returns {label: [what measure returned, run by run]}."""
    from harness.client import wait_component
    results = {label: [] for label in binaries}
    prosody = make_prosody(128 << 20, 1 << 20)
    try:
        prosody.start()
        for _ in range(runs):
            for label, binary in binaries.items():
                satchel = make_satchel(prosody, binary, 128 << 20, 20)
                try:
                    satchel.start()
                    wait_component(prosody, satchel=satchel)
                    results[label].append(measure(prosody))
                finally:
                    satchel.cleanup()
    finally:
        prosody.cleanup()
    return results
