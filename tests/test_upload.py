"""The HTTP side: slot → PUT → GET, ranges, caching, headers, CORS, refusals."""

import os
import re
from urllib.parse import urlsplit

import pytest
import requests

from harness import rawhttp
from harness.satchel import log_size, wait_for_log
from harness.util import wait_until

TIMEOUT = 15
HEX32 = re.compile(r"^[0-9a-f]{32}$")
CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"


def slot_and_put(client, data, filename="hello.bin", content_type="application/octet-stream"):
    slot = client.request_slot(filename, len(data), content_type)
    headers = dict(slot.put_headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = requests.put(slot.put_url, data=data, headers=headers, timeout=TIMEOUT)
    assert r.status_code == 201, (r.status_code, r.text)
    return slot


def put(slot, data, content_type="application/octet-stream", **extra_headers):
    headers = dict(slot.put_headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers.update(extra_headers)
    return requests.put(slot.put_url, data=data, headers=headers, timeout=TIMEOUT)


@pytest.fixture
def stored(satchel, alice):
    """A 2000-byte file uploaded through a fresh slot: (slot, data)."""
    data = os.urandom(2000)
    return slot_and_put(alice, data, "range.bin"), data


# -- slot shape and round trip ---------------------------------------------------
def test_slot_urls_have_the_documented_shape(satchel, alice):
    slot = alice.request_slot("shape.txt", 5, "text/plain")
    put_parts = urlsplit(slot.put_url)
    get_parts = urlsplit(slot.get_url)
    base = urlsplit(satchel.public_url)
    assert (put_parts.scheme, put_parts.netloc) == (base.scheme, base.netloc)
    assert (get_parts.scheme, get_parts.netloc) == (base.scheme, base.netloc)
    p = put_parts.path.split("/")
    g = get_parts.path.split("/")
    assert p[0] == "" and p[1] == "upload" and len(p) == 5, slot.put_url
    assert g[0] == "" and g[1] == "file" and len(g) == 4, slot.get_url
    assert HEX32.match(p[2]) and p[2] == g[2]
    assert p[3] and p[4] == "shape.txt" and g[3] == "shape.txt"


def test_round_trip_bytes(satchel, alice):
    data = os.urandom(300_000)
    slot = slot_and_put(alice, data, "random.bin")
    r = requests.get(slot.get_url, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.content == data
    assert int(r.headers["Content-Length"]) == len(data)
    assert r.headers["Content-Type"] == "application/octet-stream"


def test_round_trip_unicode_filename(satchel, alice):
    data = b"caf\xc3\xa9\n"
    slot = slot_and_put(alice, data, "caf\u00e9 menu.txt", "text/plain")
    r = requests.get(slot.get_url, timeout=TIMEOUT)
    assert r.status_code == 200 and r.content == data


def test_another_user_can_download(satchel, alice, bob):
    data = b"shared with bob"
    slot = slot_and_put(alice, data, "note.txt", "text/plain")
    # Anyone with the URL may download (XEP-0363 §2); bob just fetches it.
    assert requests.get(slot.get_url, timeout=TIMEOUT).content == data
    bob_slot = slot_and_put(bob, b"from bob", "bob.txt", "text/plain")
    assert requests.get(bob_slot.get_url, timeout=TIMEOUT).content == b"from bob"


def test_head(stored):
    slot, data = stored
    r = requests.head(slot.get_url, timeout=TIMEOUT)
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(data)
    assert r.content == b""


# -- ranges ------------------------------------------------------------------------
@pytest.mark.parametrize("spec,start,end", [
    ("bytes=10-19", 10, 19),
    ("bytes=1990-", 1990, 1999),
    ("bytes=-7", 1993, 1999),
    ("bytes=0-0", 0, 0),
    ("bytes=1500-99999", 1500, 1999),
])
def test_range(stored, spec, start, end):
    slot, data = stored
    r = requests.get(slot.get_url, headers={"Range": spec}, timeout=TIMEOUT)
    assert r.status_code == 206, (spec, r.status_code)
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
    assert r.content == data[start:end + 1]
    assert int(r.headers["Content-Length"]) == end - start + 1


def test_range_on_head(stored):
    """HEAD answers as GET would, range included, without the body."""
    slot, data = stored
    r = requests.head(slot.get_url, headers={"Range": "bytes=100-199"}, timeout=TIMEOUT)
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert int(r.headers["Content-Length"]) == 100
    assert r.content == b""


@pytest.mark.parametrize("spec", ["bytes=2000-", "bytes=5000-6000"])
def test_range_not_satisfiable(stored, spec):
    slot, data = stored
    r = requests.get(slot.get_url, headers={"Range": spec}, timeout=TIMEOUT)
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(data)}"


# -- caching -------------------------------------------------------------------------
def test_etag_and_if_none_match(stored):
    slot, data = stored
    r = requests.get(slot.get_url, timeout=TIMEOUT)
    etag = r.headers.get("ETag")
    assert etag, r.headers
    again = requests.get(slot.get_url, timeout=TIMEOUT)
    assert again.headers.get("ETag") == etag
    r304 = requests.get(slot.get_url, headers={"If-None-Match": etag}, timeout=TIMEOUT)
    assert r304.status_code == 304
    assert r304.content == b""
    other = requests.get(slot.get_url, headers={"If-None-Match": '"something-else"'}, timeout=TIMEOUT)
    assert other.status_code == 200 and other.content == data


# -- security headers ------------------------------------------------------------------
def test_security_headers(stored):
    slot, _ = stored
    for r in (requests.get(slot.get_url, timeout=TIMEOUT),
              requests.head(slot.get_url, timeout=TIMEOUT)):
        assert r.headers.get("Content-Security-Policy") == CSP
        assert r.headers.get("X-Content-Type-Options") == "nosniff"
        assert r.headers.get("X-Frame-Options") == "DENY"


@pytest.mark.parametrize("content_type,filename,disposition", [
    ("text/html", "page.html", "attachment"),
    ("image/svg+xml", "drawing.svg", "attachment"),
    ("image/png", "pixel.png", "inline"),
])
def test_content_disposition(satchel, alice, content_type, filename, disposition):
    data = b"<svg xmlns='http://www.w3.org/2000/svg'/>" if "svg" in content_type else b"<b>x</b>"
    if content_type == "image/png":
        data = bytes.fromhex("89504e470d0a1a0a") + b"\0" * 16
    slot = slot_and_put(alice, data, filename, content_type)
    r = requests.get(slot.get_url, timeout=TIMEOUT)
    assert r.status_code == 200
    cd = r.headers.get("Content-Disposition", "")
    assert cd.split(";")[0].strip().lower() == disposition, cd
    assert r.headers.get("Content-Security-Policy") == CSP


# -- CORS ------------------------------------------------------------------------------
# The harness configures `cors_allow_origin = "*"`: every origin is allowed, and
# the answer says so with "*" rather than by echoing the origin.
ORIGIN = "http://127.0.0.1:9"


def _tokens(value):
    return {t.strip().lower() for t in (value or "").split(",") if t.strip()}


def test_cors_preflight_for_put(satchel, alice):
    slot = alice.request_slot("cors.txt", 4, "text/plain")
    r = requests.options(slot.put_url, headers={
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization,content-type",
    }, timeout=TIMEOUT)
    assert r.status_code == 200, r.status_code
    assert r.headers.get("Access-Control-Allow-Origin") == "*"
    methods = _tokens(r.headers.get("Access-Control-Allow-Methods"))
    assert methods == {"put", "get", "head", "options"}, methods
    allowed = _tokens(r.headers.get("Access-Control-Allow-Headers"))
    assert allowed == {"authorization", "content-type"}, allowed
    # The upload itself, as a browser would send it, also carries the header.
    r = put(slot, b"cors", "text/plain", Origin=ORIGIN)
    assert r.status_code == 201
    assert r.headers.get("Access-Control-Allow-Origin") == "*"
    r = requests.get(slot.get_url, headers={"Origin": ORIGIN}, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers.get("Access-Control-Allow-Origin") == "*"


# -- refusals ---------------------------------------------------------------------------
@pytest.mark.parametrize("actual", [150, 50])
def test_put_wrong_length(satchel, alice, actual):
    slot = alice.request_slot("len.bin", 100, "application/octet-stream")
    r = put(slot, b"x" * actual)
    assert r.status_code == 413, r.status_code
    assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404


def test_put_content_type_mismatch(satchel, alice):
    slot = alice.request_slot("type.txt", 4, "text/plain")
    r = put(slot, b"abcd", "image/png")
    assert r.status_code == 415
    assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404
    # The right type still works afterwards.
    assert put(slot, b"abcd", "text/plain").status_code == 201


def test_put_without_content_type_is_served_with_the_slot_type(satchel, alice):
    """A PUT that sends no Content-Type (as Libervia's does) is no mismatch: the
    file is stored, and served with the type its slot request named."""
    slot = alice.request_slot("untyped.png", 4, "image/png")
    r = put(slot, b"\x89PNG", content_type=None)
    assert r.status_code == 201, (r.status_code, r.text)
    got = requests.get(slot.get_url, timeout=TIMEOUT)
    assert got.content == b"\x89PNG"
    assert got.headers["Content-Type"] == "image/png"


def test_a_refusal_leaves_one_log_line_without_the_ticket(satchel, alice):
    """Each refused request is logged with its method, status, reason, file id and
    client, so an operator sees why a client failed; the ticket never appears."""
    slot = alice.request_slot("refused.txt", 4, "text/plain")
    file_id, ticket = urlsplit(slot.put_url).path.split("/")[2:4]
    since = log_size(satchel)
    assert put(slot, b"abcd", "image/png").status_code == 415
    match, _ = wait_for_log(
        satchel, r"request refused[^\n]*method=PUT[^\n]*status=415[^\n]*\n", since)
    line = match.group(0)
    assert "differs from the slot request" in line, line
    assert file_id in line and "client=" in line and "127.0.0.1" in line, line
    text = satchel.log_path.read_text(errors="replace")
    assert ticket not in text, "the ticket reached the log"
    since = log_size(satchel)
    assert requests.get(f"{satchel.public_url}/file/{'cd' * 16}/x", timeout=TIMEOUT).status_code == 404
    match, _ = wait_for_log(satchel, r"request refused[^\n]*method=GET[^\n]*status=404[^\n]*\n", since)
    assert "cd" * 16 in match.group(0)


def test_second_put_conflicts(satchel, alice):
    data = b"only once"
    slot = slot_and_put(alice, data, "once.txt", "text/plain")
    r = put(slot, b"different", "text/plain")
    assert r.status_code == 409
    assert requests.get(slot.get_url, timeout=TIMEOUT).content == data


def test_forged_token(satchel, alice):
    slot = alice.request_slot("forged.txt", 4, "text/plain")
    parts = urlsplit(slot.put_url)
    segs = parts.path.split("/")
    token = segs[3]
    forged_token = ("0" if token[0] != "0" else "1") + token[1:]
    segs[3] = forged_token
    forged = parts._replace(path="/".join(segs)).geturl()
    headers = dict(slot.put_headers, **{"Content-Type": "text/plain"})
    r = requests.put(forged, data=b"evil", headers=headers, timeout=TIMEOUT)
    assert r.status_code == 403
    assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404
    assert put(slot, b"good", "text/plain").status_code == 201


def test_get_unknown_id(satchel):
    r = requests.get(f"{satchel.public_url}/file/{'ab' * 16}/nothing.txt", timeout=TIMEOUT)
    assert r.status_code == 404


def test_get_before_upload(satchel, alice):
    slot = alice.request_slot("later.txt", 4, "text/plain")
    assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404
    assert requests.head(slot.get_url, timeout=TIMEOUT).status_code == 404


def test_broken_put_then_retry(satchel, alice):
    data = os.urandom(256 * 1024)
    slot = alice.request_slot("broken.bin", len(data), "application/octet-stream")
    headers = ["Content-Type: application/octet-stream",
               *(f"{k}: {v}" for k, v in slot.put_headers.items())]
    with rawhttp.begin_put(slot.put_url, len(data), data[: len(data) // 2], headers):
        # While the upload hangs half-way, nothing is downloadable.
        assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404
    assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404

    # The slot is still usable: a complete PUT succeeds once Satchel has noticed
    # the dropped connection (until then it answers 409, upload in progress).
    def settled():
        r = put(slot, data)
        return (r,) if r.status_code != 409 else None  # (a Response of 4xx is falsy)

    (r,) = wait_until(settled, 5, "the slot still had an upload in progress 5 s after it broke")
    assert r.status_code == 201, r.status_code
    got = requests.get(slot.get_url, timeout=TIMEOUT)
    assert got.status_code == 200 and got.content == data
