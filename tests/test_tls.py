"""HTTPS without a proxy: Satchel terminates TLS itself with `http.tls_cert` and
`http.tls_key`.

A throwaway CA is made at test time with the `openssl` command; the server
certificate it signs names 127.0.0.1 (and localhost), the host of the https
public_url. curl verifies it against that CA alone (`--cacert`), as a phone
verifies a real one against its trust store. What a user relies on: slots
hand out https URLs; uploads and downloads (ranges too) work over verified
TLS; a plain-HTTP client gets a clear answer; handshakes that never finish
cost what silent connections cost; a renewed certificate is picked up on
SIGHUP or when the files change, without breaking open connections; a bad
pair stops the start with one line naming the key."""

import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness.pki import ThrowawayCA
from harness.satchel import log_size, satchel_binary, to_toml, wait_for_log
from harness.util import free_port, wait_until

TIMEOUT = 15
PKI = Path(tempfile.mkdtemp(prefix="satchel-tls-"))
CA = PKI / "ca.pem"
CERT = PKI / "cert.pem"
KEY = PKI / "key.pem"
HEADER_TIMEOUT = 5
MAX_CONNECTIONS = 8

TLS = dict(http={"tls_cert": str(CERT), "tls_key": str(KEY),
                 "header_timeout_secs": HEADER_TIMEOUT,
                 "max_connections": MAX_CONNECTIONS})


def issue(serial, cert=CERT, key=KEY):
    """A new certificate with `serial` in place of `cert` and `key`."""
    AUTHORITY.issue(serial, cert, key)


AUTHORITY = None


@pytest.fixture(scope="module", autouse=True)
def pki():
    """The CA and a first server certificate, serial 1.

    pytest may tear this down and set it up again when the tests of one server
    are run apart from the other's: the directory is made anew each time."""
    global AUTHORITY
    AUTHORITY = ThrowawayCA(PKI)
    issue(1)
    yield
    if not os.environ.get("SATCHEL_KEEP_TMP"):
        AUTHORITY.remove()


def curl(*args, data=None):
    """curl with the test CA as its only trust anchor: (exit code, stdout bytes)."""
    r = subprocess.run(["curl", "--silent", "--show-error", "--cacert", str(CA),
                        "--max-time", str(TIMEOUT), *args],
                       input=data, capture_output=True, timeout=TIMEOUT + 5)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def curl_put(slot, data):
    headers = [arg for name, value in slot.put_headers.items()
               for arg in ("-H", f"{name}: {value}")]
    return curl("-X", "PUT", "--data-binary", "@-", "-H", "Content-Type: application/octet-stream",
                *headers, "-w", "%{http_code}", "-o", "/dev/null", slot.put_url, data=data)


def served_serial(port):
    """The serial number of the certificate a new connection to `port` is shown."""
    context = ssl.create_default_context(cafile=str(CA))
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return int(tls.getpeercert()["serialNumber"], 16)


def https_connection(satchel):
    context = ssl.create_default_context(cafile=str(CA))
    return http.client.HTTPSConnection("127.0.0.1", satchel.http_port, timeout=TIMEOUT,
                                       context=context)


@pytest.mark.satchel_config(**TLS)
def test_upload_and_download_over_verified_https(satchel, alice):
    data = os.urandom(300_000)
    slot = alice.request_slot("secret.bin", len(data), "application/octet-stream")
    base = f"https://127.0.0.1:{satchel.http_port}/"
    assert slot.put_url.startswith(base + "upload/"), slot.put_url
    assert slot.get_url.startswith(base + "file/"), slot.get_url

    code, status, err = curl_put(slot, data)
    assert (code, status) == (0, b"201"), err
    code, body, err = curl(slot.get_url)
    assert code == 0, err
    assert body == data

    code, body, err = curl("-r", "1000-1999", "-w", "\n%{http_code}", slot.get_url)
    assert code == 0, err
    assert body == data[1000:2000] + b"\n206"

    # The certificate is checked: without the CA, curl refuses it.
    r = subprocess.run(["curl", "--silent", "--max-time", str(TIMEOUT), slot.get_url],
                       capture_output=True, timeout=TIMEOUT + 5)
    assert r.returncode == 60, r  # CURLE_PEER_FAILED_VERIFICATION


@pytest.mark.satchel_config(**TLS)
def test_plain_http_to_the_https_port_is_told_so(satchel):
    url = f"http://127.0.0.1:{satchel.http_port}/file/x/y"
    code, body, err = curl("-w", "\n%{http_code}", url)
    assert code == 0, err
    assert body == b"this port speaks HTTPS; use an https:// URL\n\n400"
    # And the port still speaks HTTPS.
    assert served_serial(satchel.http_port) >= 1


@pytest.mark.satchel_config(**TLS)
def test_unfinished_handshakes_are_closed_and_shed_like_silent_connections(satchel, alice):
    data = b"through the crowd"
    slot = alice.request_slot("crowd.txt", len(data), "application/octet-stream")
    since = log_size(satchel)
    # A ClientHello's first byte, then nothing: the handshake never finishes.
    stalled = []
    for _ in range(MAX_CONNECTIONS):
        s = socket.create_connection(("127.0.0.1", satchel.http_port), timeout=TIMEOUT)
        s.sendall(b"\x16")
        stalled.append(s)
    try:
        # At the cap a newcomer takes the place of one of them.
        code, status, err = curl_put(slot, data)
        assert (code, status) == (0, b"201"), err
        wait_for_log(satchel, r"shed to make room", since)
        # The others are closed once the header timeout has passed.
        for s in stalled:
            s.settimeout(HEADER_TIMEOUT + TIMEOUT)
            try:
                assert s.recv(1) == b""
            except ConnectionResetError:
                pass
        wait_for_log(satchel, r"no complete request within the header timeout", since)
    finally:
        for s in stalled:
            s.close()


@pytest.mark.satchel_config(**TLS)
def test_a_renewed_certificate_is_served_without_dropping_connections(satchel, alice):
    port = satchel.http_port
    data = os.urandom(5000)
    slot = alice.request_slot("kept.bin", len(data), "application/octet-stream")
    code, status, err = curl_put(slot, data)
    assert (code, status) == (0, b"201"), err
    path = "/" + slot.get_url.split("/", 3)[3]

    before = served_serial(port)
    # The renewal is made first, so that the kept connection idles briefly.
    staged_cert, staged_key = PKI / "staged-cert.pem", PKI / "staged-key.pem"
    issue(before + 1, cert=staged_cert, key=staged_key)
    kept = https_connection(satchel)
    kept.request("GET", path)
    assert kept.getresponse().read() == data
    kept_socket = kept.sock

    # Renewed, then SIGHUP.
    since = log_size(satchel)
    os.replace(staged_cert, CERT)
    os.replace(staged_key, KEY)
    os.kill(satchel.process.pid, signal.SIGHUP)
    wait_until(lambda: served_serial(port) == before + 1, TIMEOUT,
               "new connections get the renewed certificate")

    # The connection opened before carries on, on the same socket (within
    # the header timeout, after which an idle connection is closed anyway).
    kept.request("GET", path, headers={"Range": "bytes=0-9"})
    response = kept.getresponse()
    assert (response.status, response.read()) == (206, data[:10])
    assert kept.sock is kept_socket
    kept.close()
    wait_for_log(satchel, r"TLS certificate reloaded", since)
    code, body, err = curl(slot.get_url)
    assert (code, body) == (0, data), err

    # Renewed again, without a signal: the changed files are noticed.
    issue(before + 2)
    wait_until(lambda: served_serial(port) == before + 2, TIMEOUT,
               "the changed files are reloaded")

    # A broken renewal is refused with a warning naming the file; the last good
    # certificate stays.
    since = log_size(satchel)
    KEY.write_text("not a key\n")
    os.kill(satchel.process.pid, signal.SIGHUP)
    wait_for_log(satchel, rf"not reloaded.*{re.escape(str(KEY))}", since)
    assert served_serial(port) == before + 2
    issue(before + 3)  # left whole for the tests that follow


@pytest.mark.parametrize("break_it, key", [
    (lambda d: (d / "cert.pem").unlink(), "http.tls_cert"),
    (lambda d: (d / "key.pem").write_text("garbage"), "http.tls_key"),
    (lambda d: issue(9, cert=d / "other.pem", key=d / "key.pem"), "http.tls_key"),
])
def test_a_bad_certificate_or_key_stops_the_start_naming_the_key(break_it, key, tmp_path):
    (tmp_path / "cert.pem").write_bytes(CERT.read_bytes())
    (tmp_path / "key.pem").write_bytes(KEY.read_bytes())
    break_it(tmp_path)
    config = tmp_path / "satchel.toml"
    port = free_port()
    config.write_text(to_toml({
        "component": {"jid": "upload.localhost", "server": "127.0.0.1:1", "secret": "s"},
        "http": {"listen": f"127.0.0.1:{port}", "public_url": f"https://127.0.0.1:{port}",
                 "tls_cert": str(tmp_path / "cert.pem"), "tls_key": str(tmp_path / "key.pem")},
        "storage": {"path": str(tmp_path / "store")},
        "limits": {"max_file_size": 1000},
    }))
    r = subprocess.run([satchel_binary(), "--config", config], capture_output=True, text=True,
                       timeout=TIMEOUT, env={**os.environ, "NO_COLOR": "1"})
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if key in line]
    assert len(lines) == 1, r.stderr
    assert str(tmp_path) in lines[0], lines[0]
    assert not (tmp_path / "store").exists(), "nothing is created before the pair is checked"


def test_sighup_without_tls_reloads_nothing_and_satchel_keeps_serving(satchel, alice):
    # SIGHUP's default action is to end the process; Satchel takes it as a reload.
    since = log_size(satchel)
    os.kill(satchel.process.pid, signal.SIGHUP)
    # An unchanged file and no certificate: nothing changes (tests/test_reload.py
    # reloads settings).
    wait_for_log(satchel, r"configuration reloaded changed=0 refused=0", since)
    assert satchel.running()
    data = b"still here"
    slot = alice.request_slot("after-hup.txt", len(data), "application/octet-stream")
    code, status, err = curl_put(slot, data)
    assert (code, status) == (0, b"201"), err
