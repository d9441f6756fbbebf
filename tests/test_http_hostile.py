"""Hostile HTTP requests: each gets a clean refusal, and the service keeps serving."""

import socket
from urllib.parse import unquote_to_bytes, urlsplit

import pytest
import requests

from harness import rawhttp

TIMEOUT = 15


def raw(base_url, request_bytes):
    """Sends raw bytes, returns the status line the server answers with."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
        sock.sendall(request_bytes)
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    return answer.split(b"\r\n", 1)[0].decode(errors="replace")


@pytest.fixture
def uploaded(satchel, alice):
    slot = alice.request_slot("target.txt", 5, "text/plain")
    r = requests.put(slot.put_url, data=b"hello", headers={"Content-Type": "text/plain"},
                     timeout=TIMEOUT)
    assert r.status_code == 201
    return slot


def base_of(slot):
    parts = urlsplit(slot.get_url)
    return f"{parts.scheme}://{parts.netloc}"


def decodes_to_utf8(segment):
    """Whether a path segment percent-decodes to UTF-8. axum's path extractor
    refuses a route's segment that does not with 400, before Satchel sees it."""
    try:
        unquote_to_bytes(segment).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@pytest.mark.parametrize("path, status", [
    # requests resolves the dot segments before sending: this is GET /etc/passwd.
    ("/file/../../../../etc/passwd", 404),
    ("/file/%2e%2e/%2e%2e/etc/passwd", 404),
    ("/file/..%2f..%2fetc%2fpasswd/x", 404),
    # ...and this GET /file/x/y.
    ("/upload/../file/x/y", 404),
    ("/file/00000000000000000000000000000000/x", 404),
    ("/file/ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ/x", 404),
    ("/file/" + "a" * 5000 + "/x", 404),
    ("/file/%00/x", 404),
    ("/file/%252e%252e/%252e%252e/etc/passwd", 404),
    # Overlong UTF-8 for "." and "/": in a path of another shape, nothing is routed...
    ("/file/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd", 404),
    # ...in a file id, not UTF-8: 400.
    ("/file/%c0%af%c0%afetc%c0%afpasswd/x", 400),
    ("/file/%ff%fe/x", 400),
    ("/", 404),
    ("/etc/passwd", 404),
])
def test_path_tricks_find_nothing(uploaded, path, status):
    r = requests.get(base_of(uploaded) + path, timeout=TIMEOUT)
    assert r.status_code == status, (path, r.status_code)
    assert b"root:" not in r.content


def test_file_is_served_whatever_the_name_segment(uploaded):
    # The id alone names the file; the last segment is decoration.
    other = uploaded.get_url.rsplit("/", 1)[0] + "/other-name.html"
    r = requests.get(other, timeout=TIMEOUT)
    assert r.status_code == 200 and r.content == b"hello"
    assert r.headers["Content-Type"] == "text/plain"


@pytest.mark.parametrize("method", ["POST", "DELETE", "PATCH", "TRACE", "PROPFIND"])
def test_other_methods_are_refused(uploaded, method):
    r = requests.request(method, uploaded.get_url, timeout=TIMEOUT)
    assert r.status_code == 405, (method, r.status_code)
    r = requests.request(method, uploaded.put_url, timeout=TIMEOUT)
    assert r.status_code == 405, (method, r.status_code)
    assert requests.get(uploaded.get_url, timeout=TIMEOUT).content == b"hello"


def test_token_of_another_slot_is_refused(satchel, alice):
    mine = alice.request_slot("mine.txt", 3, "text/plain")
    other = alice.request_slot("other.txt", 3, "text/plain")
    # other's id with mine's token
    mine_parts = mine.put_url.split("/")
    other_parts = other.put_url.split("/")
    crossed = "/".join(other_parts[:-2] + [mine_parts[-2], other_parts[-1]])
    r = requests.put(crossed, data=b"abc", headers={"Content-Type": "text/plain"},
                     timeout=TIMEOUT)
    assert r.status_code == 403
    for token in ["", "x", "A" * 43, "A" * 44, "%00" * 20]:
        url = "/".join(other_parts[:-2] + [token, other_parts[-1]])
        r = requests.put(url, data=b"abc", headers={"Content-Type": "text/plain"},
                         timeout=TIMEOUT)
        assert r.status_code == 403, (token, r.status_code)
    # The real token still works afterwards.
    assert requests.put(other.put_url, data=b"abc", headers={"Content-Type": "text/plain"},
                        timeout=TIMEOUT).status_code == 201


@pytest.mark.parametrize("length", ["", "Content-Length: 5\r\n"], ids=["alone", "with-length"])
def test_chunked_put_is_refused_with_411(satchel, alice, length):
    """A PUT must say its length: chunked is refused, and beside a Content-Length
    chunked wins (RFC 9112 6.3), so the length is dropped and the PUT refused too."""
    slot = alice.request_slot("chunked.bin", 5)
    parts = urlsplit(slot.put_url)
    status = raw(slot.put_url,
                 f"PUT {parts.path} HTTP/1.1\r\nHost: x\r\n{length}Transfer-Encoding: chunked"
                 "\r\n\r\n5\r\nhello\r\n0\r\n\r\n".encode())
    assert status == "HTTP/1.1 411 Length Required", status
    assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404


@pytest.mark.parametrize("size", [64 * 1024, 300_000])
def test_huge_header_line_is_refused(uploaded, size):
    status = raw(uploaded.get_url,
                 f"GET {urlsplit(uploaded.get_url).path} HTTP/1.1\r\nHost: x\r\n"
                 f"X-Junk: {'a' * size}\r\n\r\n".encode())
    assert status.startswith("HTTP/1.1 431"), status
    assert requests.get(uploaded.get_url, timeout=TIMEOUT).content == b"hello"


def test_too_many_headers_are_refused(uploaded):
    junk = "".join(f"X-{i}: {i}\r\n" for i in range(200))
    status = raw(uploaded.get_url,
                 f"GET {urlsplit(uploaded.get_url).path} HTTP/1.1\r\nHost: x\r\n{junk}\r\n".encode())
    assert status == "HTTP/1.1 431 Request Header Fields Too Large", status


def test_garbage_request_line_is_refused(uploaded):
    # A TLS ClientHello, as from a client that thinks the port speaks HTTPS.
    status = raw(uploaded.get_url, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
    assert status == "HTTP/1.1 400 Bad Request", status
    assert requests.get(uploaded.get_url, timeout=TIMEOUT).content == b"hello"


# -- pipelining and framing: one answer per request, in order, and no desync ------------
def test_pipelined_gets_and_heads_are_answered_in_order(uploaded):
    url = uploaded.get_url
    unknown = f"{base_of(uploaded)}/file/{'ab' * 16}/x"
    responses = rawhttp.exchange(url, b"".join([
        rawhttp.request("GET", url),
        rawhttp.request("HEAD", url),
        rawhttp.request("GET", url, headers=["Range: bytes=1-3"]),
        rawhttp.request("GET", unknown),
        rawhttp.request("GET", url, headers=["Connection: close"]),
    ]), heads={1})
    assert [(r.status, r.body) for r in responses] == [
        (200, b"hello"), (200, b""), (206, b"ell"), (404, b"no such file\n"), (200, b"hello")]
    assert responses[1].headers["content-length"] == "5"


def test_pipelined_put_then_get_sees_the_upload(satchel, alice):
    slot = alice.request_slot("pipelined.txt", 5, "text/plain")
    responses = rawhttp.exchange(slot.put_url, b"".join([
        rawhttp.request("PUT", slot.put_url, ["Content-Type: text/plain"], b"hello"),
        rawhttp.request("GET", slot.get_url, ["Connection: close"]),
    ]))
    assert [(r.status, r.body) for r in responses] == [(201, b"created\n"), (200, b"hello")]


def test_garbage_after_a_valid_request_ends_the_connection(uploaded):
    responses = rawhttp.exchange(uploaded.get_url, rawhttp.request("GET", uploaded.get_url)
                                 + b"\x00\x01garbage\r\n\r\n"
                                 + rawhttp.request("GET", uploaded.get_url))
    assert [r.status for r in responses] == [200, 400], responses
    assert responses[0].body == b"hello"


def test_body_longer_than_declared_is_cut_at_the_length(satchel, alice):
    # The bytes past Content-Length are the next request, here not a valid one.
    slot = alice.request_slot("longer.txt", 5, "text/plain")
    responses = rawhttp.exchange(slot.put_url, rawhttp.request(
        "PUT", slot.put_url, ["Content-Type: text/plain"], b"hello") + b"EXTRA bytes\r\n\r\n")
    assert [r.status for r in responses] == [201, 400], responses
    assert requests.get(slot.get_url, timeout=TIMEOUT).content == b"hello"


def test_body_shorter_than_declared_stores_nothing_and_the_slot_stays_usable(satchel, alice):
    slot = alice.request_slot("shorter.txt", 10, "text/plain")
    with rawhttp.connect(slot.put_url) as sock:
        sock.sendall(rawhttp.request("PUT", slot.put_url, ["Content-Type: text/plain"],
                                     b"hello", length=10))
        sock.shutdown(socket.SHUT_WR)
        response = rawhttp.read_response(sock.makefile("rb"))
    assert response is not None and response.status == 400, response
    assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404
    assert requests.put(slot.put_url, data=b"0123456789", headers={"Content-Type": "text/plain"},
                        timeout=TIMEOUT).status_code == 201


@pytest.mark.parametrize("framing, status", [
    # hyper lets chunked win over a length (RFC 9112 6.3) and drops the length; a PUT
    # without one is refused, and the connection closes with the body unread.
    (["Transfer-Encoding: chunked", "Content-Length: 5"], 411),
    (["Content-Length: 5", "Transfer-Encoding: chunked"], 411),
    (["Transfer-Encoding: chunked, identity", "Content-Length: 5"], 400),
    (["Transfer-Encoding: identity", "Content-Length: 5"], 400),
    (["Transfer-Encoding: xchunked", "Content-Length: 5"], 400),
    (["Transfer-Encoding : chunked", "Content-Length: 5"], 400),
    (["Transfer-Encoding:\x0bchunked", "Content-Length: 5"], 400),
    (["X-Fold: a", " Transfer-Encoding: chunked", "Content-Length: 5"], 400),
    (["Transfer-Encoding: chunked", "Transfer-Encoding: identity", "Content-Length: 5"], 400),
    (["Content-Length: 5", "Content-Length: 6"], 400),
    (["Content-Length: 5, 6"], 400),
    (["Content-Length: +5"], 400),
    (["Content-Length: 0x5"], 400),
])
def test_framing_tricks_are_refused_and_smuggle_nothing(satchel, alice, framing, status):
    slot = alice.request_slot("framing.txt", 5, "text/plain")
    path = rawhttp.path_of(slot.put_url)
    smuggled = rawhttp.request("GET", slot.get_url)
    head = "\r\n".join([f"PUT {path} HTTP/1.1", "Host: x", "Content-Type: text/plain"] + framing)
    # Read as chunked, the body is "hello"; read by length, "0\r\n\r" and then a GET.
    body = b"5\r\nhello\r\n0\r\n\r\n" + smuggled
    responses = rawhttp.exchange(slot.put_url, head.encode() + b"\r\n\r\n" + body)
    assert [r.status for r in responses] == [status], (framing, responses)
    assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404


def test_huge_url_is_refused(uploaded):
    # The request line counts towards the 16 KiB of request head.
    status = raw(uploaded.get_url, f"GET {urlsplit(uploaded.get_url).path}?{'a' * 65536} "
                 "HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == "HTTP/1.1 431 Request Header Fields Too Large", status


# -- percent-encoding tricks: an id or a token is what it is, never a path ------------
TRICKS = ["%2F", "%2f..%2f", "%252F", "%c0%af", "%e0%80%af", "%00", "%0d%0a", "%20", "%"]


@pytest.mark.parametrize("trick", TRICKS)
def test_percent_tricks_around_the_id_find_nothing(uploaded, trick):
    """404, or 400 where the tricked id does not decode to UTF-8 (a lone "%" may
    take two hex digits of the random id with it)."""
    file_id = uploaded.get_url.split("/")[-2]
    tricked_ids = [f"{file_id}{trick}", f"{trick}{file_id}",
                   f"{file_id[:16]}{trick}{file_id[16:]}"]
    expected = [(f"/file/{tricked}/x", 404 if decodes_to_utf8(tricked) else 400)
                for tricked in tricked_ids]
    # A path of another shape than /file/{id}/{name} is not routed at all.
    expected.append((f"/file/{file_id}{trick}x", 404))
    for path, status in expected:
        responses = rawhttp.exchange(uploaded.get_url, (f"GET {path} HTTP/1.1\r\nHost: x\r\n"
                                                        "Connection: close\r\n\r\n").encode())
        assert [r.status for r in responses] == [status], (path, responses)


@pytest.mark.parametrize("trick", TRICKS)
def test_percent_tricks_in_put_urls_store_nothing(satchel, alice, trick):
    """A tricked id names no slot (404), a tricked token opens nothing (403);
    400 where the tricked segment does not decode to UTF-8."""
    slot = alice.request_slot("tricked.txt", 5, "text/plain")
    segments = rawhttp.path_of(slot.put_url).split("/")  # "", "upload", id, token, name
    for index, wrong in ((2, 404), (3, 403)):
        for tricked in (segments[index] + trick, trick + segments[index]):
            path = "/".join(segments[:index] + [tricked] + segments[index + 1:])
            responses = rawhttp.exchange(slot.put_url, (
                f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                "Content-Length: 5\r\nConnection: close\r\n\r\nhello").encode())
            status = wrong if decodes_to_utf8(tricked) else 400
            assert [r.status for r in responses] == [status], (path, responses)
    assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404
    assert requests.put(slot.put_url, data=b"hello", headers={"Content-Type": "text/plain"},
                        timeout=TIMEOUT).status_code == 201


def test_replayed_put_after_success_is_refused(satchel, alice):
    slot = alice.request_slot("replay.txt", 5, "text/plain")
    put = rawhttp.request("PUT", slot.put_url, ["Content-Type: text/plain", "Connection: close"],
                          b"hello")
    assert [r.status for r in rawhttp.exchange(slot.put_url, put)] == [201]
    replayed = rawhttp.exchange(slot.put_url, put)
    assert [r.status for r in replayed] == [409], replayed
    assert requests.get(slot.get_url, timeout=TIMEOUT).content == b"hello"


@pytest.mark.parametrize("method", ["CONNECT", "FOO", "get", "M-SEARCH"])
def test_unknown_methods_are_refused(uploaded, method):
    for url in (uploaded.get_url, uploaded.put_url):
        responses = rawhttp.exchange(url, f"{method} {rawhttp.path_of(url)} HTTP/1.1\r\n"
                                     "Host: x\r\nConnection: close\r\n\r\n".encode())
        assert [r.status for r in responses] == [405], (method, responses)
    assert requests.get(uploaded.get_url, timeout=TIMEOUT).content == b"hello"
