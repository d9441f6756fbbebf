"""Retention: files of the default ("message") class expire and are collected."""

import pytest
import requests

from harness.util import wait_until

TIMEOUT = 15


@pytest.mark.satchel_config(retention={"message_secs": 2, "gc_interval_secs": 1}, fresh=True)
def test_file_expires(satchel, alice):
    data = b"short-lived"
    slot = alice.request_slot("ephemeral.txt", len(data), "text/plain")
    r = requests.put(slot.put_url, data=data,
                     headers=dict(slot.put_headers, **{"Content-Type": "text/plain"}), timeout=TIMEOUT)
    assert r.status_code == 201
    first = requests.get(slot.get_url, timeout=TIMEOUT)
    assert first.status_code == 200 and first.content == data
    wait_until(lambda: requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404, 10,
               "still served 10 s after a 2 s retention", interval=0.25)
    assert requests.head(slot.get_url, timeout=TIMEOUT).status_code == 404
    # The service keeps working after collecting.
    again = alice.request_slot("next.txt", 3, "text/plain")
    assert requests.put(again.put_url, data=b"abc", headers={"Content-Type": "text/plain",
                        **again.put_headers}, timeout=TIMEOUT).status_code == 201
