"""SIGTERM: Satchel stops accepting, lets the upload in flight finish, flushes its
store and exits 0; what it stored is there after a restart."""

import signal
import socket
from urllib.parse import urlsplit

import pytest
import requests

from harness import rawhttp
from harness.util import wait_port_closed

TIMEOUT = 15


@pytest.mark.satchel_config(fresh=True)
def test_sigterm_finishes_the_upload_in_flight_and_exits_cleanly(satchel, satchel_manager, alice):
    slot = alice.request_slot("in-flight.bin", 1000, "application/octet-stream")
    parts = urlsplit(slot.put_url)
    try:
        with rawhttp.begin_put(slot.put_url, 1000, b"a" * 500) as sock:
            satchel.process.proc.send_signal(signal.SIGTERM)
            assert wait_port_closed(parts.port), "Satchel still accepts after SIGTERM"
            with pytest.raises(OSError):
                socket.create_connection((parts.hostname, parts.port), timeout=2).close()
            sock.sendall(b"a" * 500)
            answer = sock.recv(200)
            assert answer.startswith(b"HTTP/1.1 201"), answer
        assert satchel.process.proc.wait(timeout=TIMEOUT) == 0, satchel.logs()
        logs = satchel.logs(100)
        assert "SIGTERM received" in logs and "store flushed" in logs, logs

        satchel.start()
        r = requests.get(slot.get_url, timeout=TIMEOUT)
        assert r.status_code == 200 and r.content == b"a" * 1000
    finally:
        satchel_manager.invalidate()


@pytest.mark.satchel_config(fresh=True)
def test_a_slot_granted_before_a_restart_still_works(satchel, satchel_manager, alice):
    """Slots are sealed into their URLs, not kept by Satchel: a restart (or a
    crash) between the slot request and the PUT costs the client nothing."""
    slot = alice.request_slot("across-restart.txt", 5, "text/plain")
    try:
        satchel.restart()
        r = requests.put(slot.put_url, data=b"hello", timeout=TIMEOUT,
                         headers={"Content-Type": "text/plain"})
        assert r.status_code == 201, r.text
        assert requests.get(slot.get_url, timeout=TIMEOUT).content == b"hello"
    finally:
        satchel_manager.invalidate()
