"""Satchel reconnects by itself when the XMPP server goes away and comes back."""

import pytest
import requests

from harness.client import XmppError, XmppTimeout, connect_user
from harness.satchel import Satchel
from harness.util import wait_until

TIMEOUT = 15


@pytest.mark.satchel_config(fresh=True)
def test_reconnects_after_server_restart(satchel, satchel_manager, server):
    with connect_user(server, "alice") as alice:
        before = alice.request_slot("before.txt", 6, "text/plain")
        assert requests.put(before.put_url, data=b"before", headers={"Content-Type": "text/plain",
                            **before.put_headers}, timeout=TIMEOUT).status_code == 201
    try:
        server.restart()
        assert satchel.running(), f"satchel exited when the server went away\n{satchel.logs()}"
        # The HTTP side never depended on XMPP: stored files stay downloadable.
        assert requests.get(before.get_url, timeout=TIMEOUT).content == b"before"
        failures = []

        def slot_granted():
            try:
                return alice.request_slot("after.txt", 5, "text/plain", timeout=3)
            except (XmppError, XmppTimeout) as e:
                failures.append(e)
                return None

        with connect_user(server, "alice") as alice:
            slot = wait_until(slot_granted, 5,
                              lambda: f"no slot after the server's restart: {failures[-1:]}",
                              interval=0.5)
        r = requests.put(slot.put_url, data=b"after", headers={"Content-Type": "text/plain",
                         **slot.put_headers}, timeout=TIMEOUT)
        assert r.status_code == 201
        assert requests.get(slot.get_url, timeout=TIMEOUT).content == b"after"
    finally:
        # Whatever happened, the next test gets a Satchel that never saw a restart.
        satchel_manager.invalidate()


def test_wrong_secret_is_reported_and_retried(satchel_manager, server):
    """A refused handshake is logged with a hint, and Satchel keeps trying rather than exiting."""
    satchel_manager.invalidate()
    wrong = Satchel(server, {"component": {"secret": "not-the-secret"}})
    try:
        wrong.start()
        # Retries come after 0.1 s, 0.2 s, 0.4 s...: a third refusal shows it kept trying.
        wait_until(lambda: wrong.logs(200).count("refused Satchel") >= 3, 15,
                   lambda: f"no third refused handshake:\n{wrong.logs(40)}", interval=0.2)
        logs = wrong.logs(200)
        assert "component.secret" in logs, logs
        assert "reconnecting" in logs, logs
        assert wrong.running(), "satchel exited on a refused handshake"
    finally:
        wrong.cleanup()


@pytest.mark.satchel_config(component={"keepalive_secs": 1}, fresh=True)
def test_idle_link_is_kept_alive(satchel, server):
    """With nothing to do, Satchel pings the server and the link stays up."""
    # A ping unanswered by the next idle second drops the link: a third ping means
    # the first two were answered.
    wait_until(lambda: satchel.logs(400).count("link idle, pinging the server") >= 3, 10,
               lambda: f"fewer than three keepalive pings:\n{satchel.logs(40)}")
    logs = satchel.logs(400)
    assert "link to the XMPP server lost" not in logs, logs
    with connect_user(server, "alice") as alice:
        assert alice.request_slot("idle.txt", 4, "text/plain", timeout=5).put_url
