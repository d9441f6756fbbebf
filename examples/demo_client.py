#!/usr/bin/env python3
"""Satchel demo: a local Prosody on loopback with Satchel plugged in, and a real
XMPP client (slixmpp) that uploads a file through XEP-0363 and downloads it back.

Run through examples/demo.sh (which installs what is missing and builds Satchel),
or directly: python3 examples/demo_client.py [--keep] [--server prosody|ejabberd]

It reuses the test harness in tests/harness/, so the server config it runs is the
one in examples/servers/."""

import argparse
import hashlib
import struct
import sys
import zlib
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness import COMPONENT_JID, make_server  # noqa: E402
from harness.client import NS_UPLOAD, connect_user  # noqa: E402
from harness.demo import finish, start, step  # noqa: E402


def make_png(width=96, height=64):
    """A small gradient PNG, made from scratch (no imaging library needed)."""
    rows = b"".join(
        b"\0" + bytes(v for x in range(width) for v in (x * 255 // width, y * 255 // height, 160))
        for y in range(height)
    )

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9))
            + chunk(b"IEND", b""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true",
                    help="leave the XMPP server and Satchel running afterwards")
    ap.add_argument("--server", choices=["prosody", "ejabberd"], default="prosody")
    args = ap.parse_args()

    server = make_server(args.server)
    satchel = None
    ok = False
    try:
        step(f"starting {args.server} on loopback (config rendered from examples/servers/)")
        satchel = start(server)

        step(f"logging in as alice@{server.domain} with slixmpp")
        with connect_user(server, "alice") as alice:
            info = alice.disco_info(COMPONENT_JID)
            form = info.form(NS_UPLOAD) or {}
            print(f"    {COMPONENT_JID} offers {NS_UPLOAD}: {NS_UPLOAD in info.features}; "
                  f"max-file-size {form.get('max-file-size', ['?'])[0]} bytes")

            data = make_png()
            step(f"requesting an upload slot for demo.png ({len(data)} bytes, image/png)")
            slot = alice.request_slot("demo.png", len(data), "image/png")
        print(f"    PUT {slot.put_url}")
        print(f"    GET {slot.get_url}")

        step("uploading with HTTP PUT")
        r = requests.put(slot.put_url, data=data,
                         headers={"Content-Type": "image/png", **slot.put_headers}, timeout=30)
        print(f"    {r.status_code} {r.reason}")
        if r.status_code != 201:
            raise SystemExit(f"upload failed: {r.status_code} {r.text}")

        step("downloading it back with HTTP GET")
        g = requests.get(slot.get_url, timeout=30)
        print(f"    {g.status_code} {g.reason}, {len(g.content)} bytes, "
              f"Content-Type {g.headers.get('Content-Type')}")
        same = g.status_code == 200 and g.content == data
        print(f"    sha256 sent {hashlib.sha256(data).hexdigest()[:16]}…, "
              f"received {hashlib.sha256(g.content).hexdigest()[:16]}… -> "
              f"{'identical' if same else 'DIFFERENT'}")
        if not same:
            raise SystemExit("the downloaded bytes differ from the uploaded ones")

        step("where the file lives")
        files = [p for p in satchel.store_path.rglob("*") if p.is_file()]
        plain = any(data in p.read_bytes() for p in files)
        print(f"    encrypted store: {satchel.store_path} ({len(files)} files)")
        print(f"    master key:      {satchel.key_file}")
        print(f"    plaintext of demo.png found in the store: {'YES (!)' if plain else 'no'}")
        print(f"    Satchel's log:   {satchel.log_path}")
        ok = True
    finally:
        finish(server, satchel, args.keep and ok, ["alice"],
               f"curl -o demo.png '{slot.get_url}'" if ok else "")
    print("demo: OK" if ok else "demo: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
