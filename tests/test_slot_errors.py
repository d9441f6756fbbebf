"""Slot requests that Satchel must refuse (XEP-0363 §5), and the quota."""

import datetime as dt

import pytest
import requests

from harness.client import NS_UPLOAD, XmppError, retry_stamp

TIMEOUT = 15


def test_file_too_large(satchel, alice):
    with pytest.raises(XmppError) as e:
        alice.request_slot("huge.bin", satchel.max_file_size + 1, "application/octet-stream")
    err = e.value
    assert err.condition == "not-acceptable", str(err)
    assert err.type == "modify"
    mfs = err.find(f"{{{NS_UPLOAD}}}file-too-large/{{{NS_UPLOAD}}}max-file-size")
    assert mfs is not None, str(err)
    assert mfs.text.strip() == str(satchel.max_file_size)


def test_exactly_max_size_is_accepted(satchel, alice):
    slot = alice.request_slot("max.bin", satchel.max_file_size, "application/octet-stream")
    assert slot.put_url and slot.get_url


@pytest.mark.parametrize("filename,size", [
    ("zero.txt", 0),
    ("neg.txt", -1),
    ("abc.txt", "abc"),
    ("big.txt", "1e3"),
    ("", 10),
    ("dir/name.txt", 10),
    ("dir\\name.txt", 10),
    ("ctl\x7fchar.txt", 10),
    ("c1\u009bchar.txt", 10),
    ("a" * 252 + ".txt", 10),  # 256 bytes
], ids=["size-0", "size-neg", "size-abc", "size-float", "empty-name", "slash", "backslash",
        "del-char", "c1-char", "name-256-bytes"])
def test_bad_request(satchel, alice, filename, size):
    with pytest.raises(XmppError) as e:
        alice.request_slot(filename, size, "text/plain")
    assert (e.value.type, e.value.condition) == ("modify", "bad-request"), str(e.value)
    # A refused request does not disturb the service.
    assert alice.ping()


def test_missing_attributes_are_bad_request(satchel, alice):
    for request in (f"<request xmlns='{NS_UPLOAD}' size='10'/>",
                    f"<request xmlns='{NS_UPLOAD}' filename='a.txt'/>"):
        resp = alice.iq_raw(request)
        assert resp.get("type") == "error"
        error = XmppError(resp)
        assert (error.type, error.condition) == ("modify", "bad-request"), str(error)


def test_slot_request_must_be_get(satchel, alice):
    """A slot request sent as type='set' is not one Satchel answers."""
    resp = alice.iq_raw(f"<request xmlns='{NS_UPLOAD}' filename='a.txt' size='10'/>", type_="set")
    assert resp.get("type") == "error"
    error = XmppError(resp)
    assert (error.type, error.condition) == ("cancel", "service-unavailable"), str(error)


def test_name_of_255_bytes_is_fine(satchel, alice):
    name = "b" * 251 + ".txt"
    assert len(name.encode()) == 255
    assert alice.request_slot(name, 10, "text/plain").put_url


def test_slot_without_content_type(satchel, alice):
    slot = alice.request_slot("untyped.dat", 5)
    r = requests.put(slot.put_url, data=b"12345", headers=dict(slot.put_headers), timeout=TIMEOUT)
    assert r.status_code == 201, r.status_code
    got = requests.get(slot.get_url, timeout=TIMEOUT)
    assert got.status_code == 200 and got.content == b"12345"


@pytest.mark.satchel_config(limits={"max_file_size": 3000, "daily_upload_bytes": 4000}, fresh=True)
def test_daily_quota(satchel, alice, bob):
    first = alice.request_slot("q1.bin", 3000, "application/octet-stream")
    r = requests.put(first.put_url, data=b"q" * 3000,
                     headers=dict(first.put_headers, **{"Content-Type": "application/octet-stream"}),
                     timeout=TIMEOUT)
    assert r.status_code == 201
    with pytest.raises(XmppError) as e:
        alice.request_slot("q2.bin", 3000, "application/octet-stream")
    err = e.value
    assert err.condition == "resource-constraint", str(err)
    assert err.type == "wait"
    # The daily allowance starts again at the next midnight, UTC.
    stamp = retry_stamp(err)
    now = dt.datetime.now(dt.timezone.utc)
    assert stamp.utcoffset() == dt.timedelta(0), stamp
    assert stamp.time() == dt.time(0, 0), stamp
    assert now < stamp <= now + dt.timedelta(days=1), stamp
    # The quota is per user: bob is not affected.
    assert bob.request_slot("b.bin", 3000, "application/octet-stream").put_url


@pytest.mark.satchel_config(limits={"max_file_size": 3000, "daily_upload_bytes": 4000,
                                    "user_storage_bytes": 5000}, fresh=True)
def test_quotas_hold_for_slots_granted_before_any_upload(satchel, alice):
    """Slots cost nothing until used, so every slot below is granted; the quota
    is enforced again when each PUT starts."""
    headers = {"Content-Type": "application/octet-stream"}
    slots = [alice.request_slot(f"early{i}.bin", 2000, "application/octet-stream")
             for i in range(3)]
    for slot in slots[:2]:
        r = requests.put(slot.put_url, data=b"e" * 2000, headers=headers, timeout=TIMEOUT)
        assert r.status_code == 201, r.text
    r = requests.put(slots[2].put_url, data=b"e" * 2000, headers=headers, timeout=TIMEOUT)
    assert r.status_code == 403, r.text
    assert "Daily upload quota" in r.text
    assert requests.get(slots[2].get_url, timeout=TIMEOUT).status_code == 404
    # The files uploaded within the quota are intact.
    for slot in slots[:2]:
        assert requests.get(slot.get_url, timeout=TIMEOUT).content == b"e" * 2000


@pytest.mark.satchel_config(limits={"allowed_domains": ["example.org"]}, fresh=True)
def test_user_from_other_domain_not_allowed(satchel, alice):
    with pytest.raises(XmppError) as e:
        alice.request_slot("nope.txt", 10, "text/plain")
    assert e.value.condition == "not-allowed", str(e.value)


def test_huge_filename_gets_an_answer_and_the_link_survives(satchel, alice):
    """A filename far beyond 255 bytes (and beyond XML parsers' default 8 KiB token limit)
    is refused with bad-request; the component link is not dropped."""
    with pytest.raises(XmppError) as e:
        alice.request_slot("a" * 100_000, 10, "text/plain", timeout=10)
    assert e.value.condition == "bad-request", str(e.value)
    assert "link to the XMPP server lost" not in satchel.logs(400)
    assert alice.request_slot("after.txt", 10, "text/plain").put_url
