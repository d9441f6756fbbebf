"""Hostile HTTP requests: each gets a clean refusal, and the service keeps serving."""

import socket
from urllib.parse import urlsplit

import pytest
import requests

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


@pytest.mark.parametrize("path", [
    "/file/../../../../etc/passwd",
    "/file/%2e%2e/%2e%2e/etc/passwd",
    "/file/..%2f..%2fetc%2fpasswd/x",
    "/upload/../file/x/y",
    "/file/00000000000000000000000000000000/x",
    "/file/ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ/x",
    "/file/" + "a" * 5000 + "/x",
    "/file/%00/x",
    "/",
    "/etc/passwd",
])
def test_path_tricks_find_nothing(uploaded, path):
    r = requests.get(base_of(uploaded) + path, timeout=TIMEOUT)
    assert r.status_code in (400, 404), (path, r.status_code)
    assert b"root:" not in r.content


def test_file_is_served_whatever_the_name_segment(uploaded):
    # The id alone names the file; the last segment is decoration.
    other = uploaded.get_url.rsplit("/", 1)[0] + "/other-name.html"
    r = requests.get(other, timeout=TIMEOUT)
    assert r.status_code == 200 and r.content == b"hello"
    assert "text/plain" in r.headers["Content-Type"]


@pytest.mark.parametrize("method", ["POST", "DELETE", "PATCH", "TRACE", "PROPFIND"])
def test_other_methods_are_refused(uploaded, method):
    r = requests.request(method, uploaded.get_url, timeout=TIMEOUT)
    assert r.status_code in (404, 405), (method, r.status_code)
    r = requests.request(method, uploaded.put_url, timeout=TIMEOUT)
    assert r.status_code in (404, 405), (method, r.status_code)
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
        assert r.status_code in (403, 404), (token, r.status_code)
    # The real token still works afterwards.
    assert requests.put(other.put_url, data=b"abc", headers={"Content-Type": "text/plain"},
                        timeout=TIMEOUT).status_code == 201


def test_chunked_put_without_length_is_refused(satchel, alice):
    slot = alice.request_slot("chunked.bin", 5)
    parts = urlsplit(slot.put_url)
    status = raw(slot.put_url,
                 f"PUT {parts.path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n0\r\n\r\n".encode())
    assert status.startswith("HTTP/1.1 411"), status


def test_conflicting_length_and_chunked_is_refused(satchel, alice):
    slot = alice.request_slot("smuggle.bin", 5)
    parts = urlsplit(slot.put_url)
    status = raw(slot.put_url,
                 f"PUT {parts.path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".encode())
    assert status.split(" ")[1] in ("400", "411"), status
    assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404


def test_huge_header_line_is_refused(uploaded):
    status = raw(uploaded.get_url,
                 f"GET {urlsplit(uploaded.get_url).path} HTTP/1.1\r\nHost: x\r\n"
                 f"X-Junk: {'a' * 300000}\r\n\r\n".encode())
    assert status.split(" ")[1] in ("400", "431"), status
    assert requests.get(uploaded.get_url, timeout=TIMEOUT).content == b"hello"


def test_too_many_headers_are_refused(uploaded):
    junk = "".join(f"X-{i}: {i}\r\n" for i in range(200))
    status = raw(uploaded.get_url,
                 f"GET {urlsplit(uploaded.get_url).path} HTTP/1.1\r\nHost: x\r\n{junk}\r\n".encode())
    assert status.split(" ")[1] in ("400", "431"), status


def test_garbage_request_line_is_refused(uploaded):
    status = raw(uploaded.get_url, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
    assert status == "" or status.startswith("HTTP/1.1 400"), status
    assert requests.get(uploaded.get_url, timeout=TIMEOUT).content == b"hello"
