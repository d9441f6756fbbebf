"""Fixtures for Satchel's integration tests.

- `server`: a real XMPP server (Prosody 0.12 or ejabberd 23.01), started once per
  session for each kind, on free loopback ports in a temp dir. Which kinds run:
  env SATCHEL_TEST_SERVERS (default "prosody,ejabberd").
- `satchel`: the Satchel binary connected to that server. One process is reused
  by consecutive tests that want the same config; a test asks for another config
  with `@pytest.mark.satchel_config(limits={...}, retention={...})` (a fresh
  process with an empty store is started when the config differs, or always
  with `fresh=True`). Only one Satchel runs per server at a time, since they
  all share the component JID.
- `alice`, `bob`: logged-in slixmpp clients (harness.client.Client).
- `connect(user)`: a factory for more clients.

On a failed test the tails of Satchel's and the server's logs are attached to
the report.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import make_server  # noqa: E402
from harness.client import connect_user  # noqa: E402
from harness.pki import session_pki  # noqa: E402
from harness.satchel import deep_merge, satchel_binary  # noqa: E402
from harness.session import (  # noqa: E402
    SERVER_KINDS, SatchelManager, report_logs_of, reported_satchels,
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "satchel_config(fresh=False, **sections): Satchel config overrides for this test, "
        "e.g. satchel_config(limits={'daily_upload_bytes': 4000}); fresh=True forces a "
        "new process with an empty store")


# -- fixtures ------------------------------------------------------------------
@pytest.fixture(scope="session")
def satchel_bin():
    return satchel_binary()


@pytest.fixture(scope="session", params=SERVER_KINDS)
def server(request):
    # STARTTLS offered (the real clients insist on it); the slixmpp clients
    # of the other tests keep to plain c2s on loopback.
    s = make_server(request.param, tls=session_pki())
    try:
        s.start()
    except Exception:
        s.cleanup()
        raise
    yield s
    if os.environ.get("SATCHEL_KEEP_TMP"):
        s.stop()
    else:
        s.cleanup()


@pytest.fixture(scope="session")
def satchel_manager(server, satchel_bin):
    m = SatchelManager(server)
    yield m
    m.cleanup()


@pytest.fixture
def satchel(request, satchel_manager):
    marker = request.node.get_closest_marker("satchel_config")
    overrides, fresh = {}, False
    if marker is not None:
        kwargs = dict(marker.kwargs)
        fresh = kwargs.pop("fresh", False)
        for arg in marker.args:
            overrides = deep_merge(overrides, arg)
        overrides = deep_merge(overrides, kwargs)
    s = satchel_manager.get(overrides, fresh=fresh)
    report_logs_of(request.node, s)
    return s


@pytest.fixture
def connect(server):
    clients = []

    def _connect(user="alice"):
        c = connect_user(server, user)
        clients.append(c)
        return c

    yield _connect
    for c in clients:
        c.close()


@pytest.fixture
def alice(connect):
    return connect("alice")


@pytest.fixture
def bob(connect):
    return connect("bob")


# -- failure reports -------------------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    try:
        satchels = reported_satchels(item)
        mgr = item.funcargs.get("satchel_manager") if hasattr(item, "funcargs") else None
        if not satchels and mgr is not None and mgr.all:
            satchels = [mgr.all[-1]]
        for s in satchels:
            rep.sections.append((f"satchel log ({s.dir})", s.logs(60)))
        srv = item.funcargs.get("server") if hasattr(item, "funcargs") else None
        if srv is not None:
            rep.sections.append((f"{srv.kind} log", srv.logs(25)))
    except Exception as e:  # never let reporting hide the real failure
        rep.sections.append(("log collection failed", repr(e)))
