"""Satchel reconnects by itself when the XMPP server goes away and comes back."""

import time

import pytest
import requests

from conftest import connect_client
from harness.client import XmppError, XmppTimeout

TIMEOUT = 15


@pytest.mark.satchel_config(fresh=True)
def test_reconnects_after_server_restart(satchel, satchel_manager, server):
    with connect_client(server, "alice") as alice:
        before = alice.request_slot("before.txt", 6, "text/plain")
        assert requests.put(before.put_url, data=b"before", headers={"Content-Type": "text/plain",
                            **before.put_headers}, timeout=TIMEOUT).status_code == 201
    try:
        server.restart()
        assert satchel.running(), f"satchel exited when the server went away\n{satchel.logs()}"
        # The HTTP side never depended on XMPP: stored files stay downloadable.
        assert requests.get(before.get_url, timeout=TIMEOUT).content == b"before"
        deadline = time.monotonic() + 5
        last = None
        with connect_client(server, "alice") as alice:
            while True:
                try:
                    slot = alice.request_slot("after.txt", 5, "text/plain", timeout=3)
                    break
                except (XmppError, XmppTimeout) as e:
                    last = e
                    if time.monotonic() > deadline:
                        pytest.fail(f"no slot within 5 s of the server's restart: {last}")
                    time.sleep(0.5)
        r = requests.put(slot.put_url, data=b"after", headers={"Content-Type": "text/plain",
                         **slot.put_headers}, timeout=TIMEOUT)
        assert r.status_code == 201
        assert requests.get(slot.get_url, timeout=TIMEOUT).content == b"after"
    finally:
        # Whatever happened, the next test gets a Satchel that never saw a restart.
        satchel_manager.invalidate()


def test_wrong_secret_is_reported_and_retried(satchel_manager, server):
    """A refused handshake is logged with a hint, and Satchel keeps trying rather than exiting."""
    from harness.satchel import Satchel

    satchel_manager.invalidate()
    wrong = Satchel(server, {"component": {"secret": "not-the-secret"}})
    try:
        wrong.start()
        deadline = time.monotonic() + 10
        while "refused Satchel" not in wrong.logs(200) and time.monotonic() < deadline:
            time.sleep(0.2)
        logs = wrong.logs(200)
        assert "refused Satchel" in logs and "component.secret" in logs, logs
        time.sleep(1)
        assert wrong.running(), "satchel exited on a refused handshake"
        assert "reconnecting" in wrong.logs(200)
    finally:
        wrong.cleanup()


@pytest.mark.satchel_config(component={"keepalive_secs": 1}, fresh=True)
def test_idle_link_is_kept_alive(satchel, server):
    """With nothing to do, Satchel pings the server and the link stays up."""
    time.sleep(3.5)
    logs = satchel.logs(400)
    assert "link idle, pinging the server" in logs, logs
    assert "link to the XMPP server lost" not in logs, logs
    with connect_client(server, "alice") as alice:
        assert alice.request_slot("idle.txt", 4, "text/plain", timeout=5).put_url
