"""HTTP/1.1 spoken by hand, for requests no well-behaved client library would send:
pipelined requests, conflicting framing headers, trickled bytes, idle sockets."""

import socket
from urllib.parse import urlsplit

TIMEOUT = 15


def connect(url, timeout=TIMEOUT):
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def path_of(url):
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def request(method, url, headers=(), body=b"", length=None):
    """The bytes of one request; `length` overrides the Content-Length sent (None: the
    body's, and none at all for a bodiless GET/HEAD)."""
    lines = [f"{method} {path_of(url)} HTTP/1.1", f"Host: {urlsplit(url).netloc}"]
    lines += list(headers)
    if length is None and (body or method == "PUT"):
        length = len(body)
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Response:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def __repr__(self):
        return f"<Response {self.status} {self.reason} {self.body[:60]!r}>"


def read_response(reader, head=False):
    """The next response on `reader` (a socket's makefile("rb")), or None at end of stream.
    `head`: it answers a HEAD, so it has no body whatever its Content-Length says."""
    try:
        status_line = reader.readline()
    except ConnectionResetError:
        return None
    if not status_line:
        return None
    version, status, reason = (status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
                               + [""])[:3]
    assert version == "HTTP/1.1", status_line
    headers = {}
    while True:
        line = reader.readline().decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if head or status in ("204", "304"):
        body = b""
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(reader.readline().split(b";")[0], 16)
            chunk = reader.read(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = reader.read(int(headers.get("content-length", "0")))
    return Response(int(status), reason, headers, body)


def exchange(url, data, heads=(), timeout=TIMEOUT):
    """Writes `data` in one go on a new connection and reads every response until the
    server closes it (or `timeout` passes in silence). `heads`: indexes of the responses
    that answer a HEAD."""
    responses = []
    with connect(url, timeout) as sock:
        sock.sendall(data)
        reader = sock.makefile("rb")
        while True:
            try:
                response = read_response(reader, head=len(responses) in heads)
            except socket.timeout:
                break
            if response is None:
                break
            responses.append(response)
    return responses


def closed_within(sock, seconds):
    """Whether the server closes `sock` (after answering, perhaps) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True
