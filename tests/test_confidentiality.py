"""What Satchel keeps, and what it lets out: no plaintext or secret on disk or in
the log, and never an altered byte served from a tampered store."""

import os
from urllib.parse import urlsplit

import pytest
import requests

TIMEOUT = 15
MARKER = b"SATCHEL-KNOWN-PLAINTEXT-" + os.urandom(8).hex().encode()


def upload(client, data, name="secret.bin"):
    slot = client.request_slot(name, len(data), "application/octet-stream")
    r = requests.put(slot.put_url, data=data,
                     headers={"Content-Type": "application/octet-stream"}, timeout=TIMEOUT)
    assert r.status_code == 201, (r.status_code, r.text)
    return slot


def cpu_has_aes_and_clmul():
    """What Satchel's "auto" cipher looks for (x86-64 flags, or ARMv8 ones)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = {flag for line in f if line.startswith(("flags", "Features"))
                     for flag in line.split(":", 1)[1].split()}
    except OSError:
        return False
    return {"aes", "pclmulqdq"} <= flags or {"aes", "pmull"} <= flags


def blob_of(satchel, slot):
    file_id = urlsplit(slot.get_url).path.split("/")[2]
    return satchel.store_path / "content" / file_id[:2] / file_id


@pytest.mark.satchel_config(fresh=True)
def test_known_plaintext_is_nowhere_in_the_store(satchel, alice):
    data = (MARKER + b" ") * 5000
    slot = upload(alice, data)
    assert requests.get(slot.get_url, timeout=TIMEOUT).content == data
    # A file this small is kept in sled with its record, sealed all the same.
    small = upload(alice, MARKER, "small.bin")
    assert requests.get(small.get_url, timeout=TIMEOUT).content == MARKER
    files = [p for p in satchel.store_path.rglob("*") if p.is_file()]
    assert blob_of(satchel, slot) in files
    assert blob_of(satchel, small) not in files
    for path in files + [satchel.key_file]:
        assert MARKER not in path.read_bytes(), f"plaintext found in {path}"
    # "auto" says at start which cipher it chose, and why.
    expected = "aes-256-gcm" if cpu_has_aes_and_clmul() else "chacha20-poly1305"
    assert f"new files are sealed with {expected}: the CPU" in satchel.log_path.read_text()


def test_tokens_and_contents_never_reach_the_log(satchel, alice):
    slot = upload(alice, MARKER * 10)
    ticket = urlsplit(slot.put_url).path.split("/")[3]
    assert len(ticket) > 43, ticket
    # The slot's terms are sealed: the URL does not say who uploads.
    assert "alice" not in slot.put_url
    requests.put(slot.put_url.replace(ticket, "A" * len(ticket)), data=b"x", timeout=TIMEOUT)
    log = satchel.log_path.read_bytes()
    assert ticket.encode() not in log
    assert MARKER not in log
    assert satchel.key_file.read_bytes() not in log
    # JIDs are pseudonyms unless logging.show_jids asks for them (even at debug level).
    assert b"alice@localhost" not in log
    assert b"from=user-" in log


@pytest.mark.parametrize("cipher", [
    pytest.param(cipher, marks=pytest.mark.satchel_config(storage={"cipher": cipher}))
    for cipher in ("chacha20-poly1305", "aes-256-gcm")
])
def test_a_tampered_chunk_is_never_served(satchel, alice, cipher):
    chunk = 64 * 1024
    data = os.urandom(4 * chunk)
    slot = upload(alice, data)
    blob = blob_of(satchel, slot)
    sealed = bytearray(blob.read_bytes())
    sealed[2 * (chunk + 16) + 100] ^= 0x01      # a byte in the third chunk
    blob.write_bytes(bytes(sealed))

    received = b""
    try:
        with requests.get(slot.get_url, stream=True, timeout=TIMEOUT) as r:
            for piece in r.iter_content(8192):
                received += piece
    except requests.exceptions.RequestException:
        pass                                     # the connection is cut: that is the point
    assert len(received) < len(data), "the whole file was served from a tampered store"
    assert data.startswith(received), "altered bytes were served"
    assert len(received) <= 2 * chunk, "bytes of the tampered chunk were served"
    # Chunks before the damage still serve, as ranges.
    r = requests.get(slot.get_url, headers={"Range": f"bytes=0-{chunk - 1}"}, timeout=TIMEOUT)
    assert r.status_code == 206 and r.content == data[:chunk]
    assert "failed to decrypt" in satchel.logs(200)
    assert f"new files are sealed with {cipher}: the configuration pins it" \
        in satchel.log_path.read_text()
