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


def begin_put(url, length, body_start=b"", headers=("Content-Type: application/octet-stream",),
              timeout=TIMEOUT):
    """A PUT of `length` bytes that Satchel has begun to take, and the socket it
    runs on (for the rest of the body, or to drop it half-way).

    The head asks `Expect: 100-continue`; hyper sends the 100 Continue when the
    handler first reads the body, that is once the slot is opened, the upload
    has begun in the store and holds one of the upload permits, and the
    connection counts as busy. Then `body_start` goes out."""
    sock = connect(url, timeout)
    try:
        sock.sendall(request("PUT", url, [*headers, "Expect: 100-continue"], length=length))
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(4096)
            assert data, f"connection closed before 100 Continue: {answer!r}"
            answer += data
        assert answer.startswith(b"HTTP/1.1 100 Continue\r\n"), answer
        sock.sendall(body_start)
    except BaseException:
        sock.close()
        raise
    return sock
