"""Limits a stranger cannot grow, and the quotas and retention that bound storage.

Each test configures a small limit and shows the refusal a client gets, then
that the service keeps working for everyone else."""

import datetime as dt
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from harness import rawhttp
from harness.client import NS_UPLOAD, XmppError, retry_stamp
from harness.rawhttp import closed_within
from harness.util import wait_until

TIMEOUT = 15
PURPOSE_NS = "urn:xmpp:http:upload:purpose:0"


def put_ok(slot, data, content_type="application/octet-stream"):
    r = requests.put(slot.put_url, data=data,
                     headers=dict(slot.put_headers, **{"Content-Type": content_type}),
                     timeout=TIMEOUT)
    assert r.status_code == 201, (r.status_code, r.text)


def raw_connection(url):
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT), parts


def put_head(slot, length):
    """The request line and headers of a PUT for `slot`, without its body."""
    parts = urlsplit(slot.put_url)
    return (f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n").encode()


def utc_now():
    return dt.datetime.now(dt.timezone.utc)


@pytest.mark.satchel_config(http={"header_timeout_secs": 1}, fresh=True)
def test_slow_headers_are_cut_off(satchel, alice):
    slot = alice.request_slot("slow.bin", 10, "application/octet-stream")
    sock, parts = raw_connection(slot.put_url)
    with sock:
        sock.sendall(f"PUT {parts.path} HTTP/1.1\r\nHost: x\r\n".encode())
        assert closed_within(sock, 5), "a connection trickling headers stayed open"
    # The slot is untouched: a real client still uploads.
    put_ok(slot, b"0123456789")


@pytest.mark.satchel_config(http={"body_idle_timeout_secs": 1}, fresh=True)
def test_stalled_body_is_cut_off_and_the_slot_can_be_retried(satchel, alice):
    slot = alice.request_slot("stall.bin", 1000, "application/octet-stream")
    sock, _ = raw_connection(slot.put_url)
    with sock:
        sock.sendall(put_head(slot, 1000) + b"x" * 100)
        assert closed_within(sock, 6), "a stalled upload kept its connection"
    assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404
    put_ok(slot, b"y" * 1000)
    assert requests.get(slot.get_url, timeout=TIMEOUT).content == b"y" * 1000


@pytest.mark.satchel_config(http={"max_concurrent_uploads": 1, "body_idle_timeout_secs": 5},
                            fresh=True)
def test_concurrent_uploads_are_capped(satchel, alice):
    first = alice.request_slot("first.bin", 1000, "application/octet-stream")
    second = alice.request_slot("second.bin", 4, "application/octet-stream")
    with rawhttp.begin_put(first.put_url, 1000, b"a" * 10) as sock:
        refused = requests.put(second.put_url, data=b"abcd",
                               headers={"Content-Type": "application/octet-stream"},
                               timeout=TIMEOUT)
        assert refused.status_code == 503, (refused.status_code, refused.text)
        assert refused.headers.get("Retry-After") == "5"
        sock.sendall(b"a" * 990)
        assert sock.recv(100).startswith(b"HTTP/1.1 201")
    # The cap is released with the upload.
    put_ok(second, b"abcd")


@pytest.mark.satchel_config(limits={"max_file_size": 1000, "user_storage_bytes": 1500},
                            retention={"message_secs": 3, "gc_interval_secs": 1}, fresh=True)
def test_storage_quota_frees_up_when_files_expire(satchel, alice, bob):
    before_upload = utc_now().replace(microsecond=0)
    put_ok(alice.request_slot("a.bin", 1000), b"a" * 1000)
    with pytest.raises(XmppError) as refusal:
        alice.request_slot("b.bin", 1000)
    assert refusal.value.condition == "resource-constraint", str(refusal.value)
    assert refusal.value.type == "wait"
    # The retry stamp is when alice's file expires (3 s after its upload), not a day later.
    retention = dt.timedelta(seconds=3)
    assert before_upload + retention <= retry_stamp(refusal.value) <= utc_now() + retention
    # Other users have their own quota.
    put_ok(bob.request_slot("c.bin", 1000), b"c" * 1000)

    # Once the collector has deleted alice's file, her quota has room again.
    def slot_granted():
        try:
            return alice.request_slot("b.bin", 1000)
        except XmppError as e:
            assert e.condition == "resource-constraint"
            return None

    slot = wait_until(slot_granted, 15, "quota still full long after expiry", interval=0.5)
    put_ok(slot, b"b" * 1000)


@pytest.mark.satchel_config(limits={"min_free_disk_percent": 99}, fresh=True)
def test_global_storage_cap_refuses_with_retry(satchel, alice):
    with pytest.raises(XmppError) as refusal:
        alice.request_slot("full.bin", 100)
    now = utc_now()
    assert (refusal.value.type, refusal.value.condition) == ("wait", "resource-constraint"), \
        str(refusal.value)
    # No stored file will expire to make room: the stamp is a day away.
    day = dt.timedelta(days=1)
    assert now + day - dt.timedelta(seconds=5) <= retry_stamp(refusal.value) <= now + day


@pytest.mark.satchel_config(retention={"ephemeral_secs": 2, "message_secs": 3600,
                                       "gc_interval_secs": 1}, fresh=True)
def test_purpose_decides_retention(satchel, alice):
    ephemeral = alice.iq(
        f"<request xmlns='{NS_UPLOAD}' filename='e.txt' size='2'>"
        f"<ephemeral xmlns='{PURPOSE_NS}'/></request>")
    message = alice.request_slot("m.txt", 2)
    urls = []
    for answer in (ephemeral.find(f"{{{NS_UPLOAD}}}slot"), message.xml):
        put_url = answer.find(f"{{{NS_UPLOAD}}}put").get("url")
        get_url = answer.find(f"{{{NS_UPLOAD}}}get").get("url")
        assert requests.put(put_url, data=b"hi", timeout=TIMEOUT).status_code == 201
        urls.append(get_url)
    uploaded = time.monotonic()
    # Served while unix time <= upload + 2 s (whole seconds): gone within 3 s.
    wait_until(lambda: requests.get(urls[0], timeout=TIMEOUT).status_code == 404, 4,
               "the ephemeral file outlived its 2 s", interval=0.25)
    assert time.monotonic() - uploaded >= 1, "the ephemeral file went before its 2 s"
    assert requests.get(urls[1], timeout=TIMEOUT).content == b"hi", "message file expired early"
    info = alice.disco_info()
    for purpose in ("message", "ephemeral", "permanent"):
        assert f"{PURPOSE_NS}#{purpose}" in info.features


@pytest.mark.satchel_config(limits={"slot_lifetime_secs": 1}, fresh=True)
def test_expired_slot_is_refused(satchel, alice):
    slot = alice.request_slot("late.bin", 3)
    # The slot's lifetime passing is what is tested: no condition to wait for
    # (a PUT that came early would be accepted). Expiry is checked in whole seconds.
    time.sleep(2.2)
    r = requests.put(slot.put_url, data=b"abc", timeout=TIMEOUT)
    assert r.status_code == 403 and "expired" in r.text, (r.status_code, r.text)
    assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404


def test_uploads_in_parallel_all_land(satchel, alice):
    slots = [alice.request_slot(f"p{i}.bin", 200_000) for i in range(8)]
    bodies = [bytes([i]) * 200_000 for i in range(8)]
    results = [None] * 8

    def upload(i):
        results[i] = requests.put(slots[i].put_url, data=bodies[i], timeout=TIMEOUT).status_code

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [201] * 8
    for slot, body in zip(slots, bodies):
        assert requests.get(slot.get_url, timeout=TIMEOUT).content == body


@pytest.mark.satchel_config(limits={"slot_requests_per_minute": 20}, fresh=True)
def test_slot_requests_are_rate_limited_per_user(satchel, alice, bob):
    for i in range(20):
        alice.request_slot(f"burst{i}.bin", 10)
    with pytest.raises(XmppError) as refusal:
        alice.request_slot("one-too-many.bin", 10)
    now = utc_now()
    assert refusal.value.condition == "resource-constraint", str(refusal.value)
    # A minute from the refusal (in whole seconds).
    minute = dt.timedelta(seconds=60)
    assert now + minute - dt.timedelta(seconds=5) <= retry_stamp(refusal.value) <= now + minute
    # Another user is not affected.
    assert bob.request_slot("bobs.bin", 10).put_url
