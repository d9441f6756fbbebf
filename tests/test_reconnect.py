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
        deadline = time.monotonic() + 10
        last = None
        with connect_client(server, "alice") as alice:
            while True:
                try:
                    slot = alice.request_slot("after.txt", 5, "text/plain", timeout=3)
                    break
                except (XmppError, XmppTimeout) as e:
                    last = e
                    if time.monotonic() > deadline:
                        pytest.fail(f"no slot within 10 s of the server's restart: {last}")
                    time.sleep(0.5)
        r = requests.put(slot.put_url, data=b"after", headers={"Content-Type": "text/plain",
                         **slot.put_headers}, timeout=TIMEOUT)
        assert r.status_code == 201
        assert requests.get(slot.get_url, timeout=TIMEOUT).content == b"after"
    finally:
        # Whatever happened, the next test gets a Satchel that never saw a restart.
        satchel_manager.invalidate()
