#!/usr/bin/env python3
"""Satchel offline-delivery demo: alice sends a photo to bob, who is offline,
through Satchel's relay; bob logs in later, sees the preview and downloads it.

A local Prosody (or ejabberd) on loopback with Satchel plugged in, and real
XMPP clients (slixmpp):

  1. alice uploads a generated photo (XEP-0363),
  2. alice asks Satchel to relay it to bob (a XEP-0033 message naming bob and
     the GET URL); Satchel stores the relay and answers a XEP-0184 receipt,
  3. bob, who was offline all along, logs in and gets the message: the URL,
     the caption, the XEP-0446 metadata and a thumbnail Satchel made, carried
     inline as XEP-0231 Bits of Binary,
  4. bob downloads the file and checks it against the SHA-256 of the metadata.

Run through examples/demo.sh --relay (which installs what is missing and builds
Satchel), or directly:

  python3 examples/offline_demo.py [--keep] [--server prosody|ejabberd]
                                   [--no-offline] [--privileged]

--no-offline runs the server without offline storage, so that the message
waits in Satchel's own outbox until bob is back; --privileged grants Satchel
XEP-0356 permission to send the message as alice.

It reuses the test harness in tests/harness/, so the server config it runs is
the one in examples/servers/."""

import argparse
import base64
import hashlib
import io
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness import COMPONENT_JID, make_server  # noqa: E402
from harness.client import XmppTimeout, connect_user  # noqa: E402
from harness.relay import (  # noqa: E402
    NS_ADDRESS, NS_BOB, NS_FILE, NS_HASHES, NS_NICK, NS_OOB, NS_SFS, NS_THUMBS,
    bare, is_relay_of, q, send_relay, wait_relay_answer,
)
from harness.demo import finish, start, step  # noqa: E402

THUMBNAIL_PATH = Path("/tmp/satchel-demo-thumbnail")   # + .jpg / .webp / .png
EXTENSIONS = {"image/jpeg": ".jpg", "image/webp": ".webp", "image/png": ".png"}
PHOTO_NAME = "sunset-over-the-lake.jpg"
CAPTION = "Sunset at the lake, wish you were here!"


def make_photo(width=1200, height=800):
    """A JPEG 'photo' made with Pillow: a sky gradient, a sun, hills and a lake."""
    from PIL import Image, ImageDraw, ImageFilter

    img = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(img)
    horizon = height * 3 // 5
    for y in range(horizon):                        # sky: deep blue to orange
        t = y / horizon
        draw.line([(0, y), (width, y)],
                  fill=(int(40 + 215 * t), int(60 + 110 * t), int(140 - 90 * t)))
    for y in range(horizon, height):                # lake: darker, bluish
        t = (y - horizon) / (height - horizon)
        draw.line([(0, y), (width, y)],
                  fill=(int(200 - 150 * t), int(110 - 60 * t), int(90 + 40 * t)))
    sun = (width * 2 // 3, horizon - height // 10, height // 9)
    cx, cy, r = sun
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 220, 120))
    for i in range(6):                              # the sun's reflection
        w = r - i * r // 7
        y = horizon + 12 + i * 22
        draw.rectangle((cx - w, y, cx + w, y + 8), fill=(250, 190, 110))
    draw.polygon([(0, horizon), (width // 5, horizon - 170), (width * 2 // 5, horizon - 60),
                  (width // 2, horizon - 120), (width * 3 // 5, horizon)], fill=(60, 40, 70))
    draw.polygon([(width // 2, horizon), (width * 4 // 5, horizon - 90), (width, horizon - 30),
                  (width, horizon)], fill=(80, 50, 80))
    for i in range(5):                              # a few birds
        x, y = width // 6 + i * 70, height // 6 + (i % 2) * 25
        draw.line([(x, y), (x + 12, y + 8), (x + 24, y)], fill=(30, 30, 40), width=3)
    img = img.filter(ImageFilter.GaussianBlur(0.8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def text(el, path):
    found = el.find(path)
    return None if found is None else (found.text or "").strip()


def shown(stanza):
    """The stanza as indented XML (each namespace declared where it changes), with
    the Base64 of the BoB data shortened."""
    from xml.sax.saxutils import escape, quoteattr

    def split(tag):
        return tag[1:].split("}", 1) if tag.startswith("{") else ("", tag)

    def render(el, parent_ns, indent):
        ns, name = split(el.tag)
        attrs = "" if ns == parent_ns else f" xmlns={quoteattr(ns)}"
        for k, v in el.attrib.items():
            if k.startswith("{urn:satchel:test}"):   # the test client's own bookkeeping
                continue
            kns, kname = split(k)
            prefix = "xml:" if kns == "http://www.w3.org/XML/1998/namespace" else ""
            attrs += f" {prefix}{kname}={quoteattr(v)}"
        body = (el.text or "").strip()
        if el.tag == q("data", NS_BOB) and len(body) > 40:
            body = f"{body[:32]}…({len(body)} chars of Base64)"
        pad = "  " * indent
        if len(el) == 0:
            return f"{pad}<{name}{attrs}>{escape(body)}</{name}>" if body else f"{pad}<{name}{attrs}/>"
        inner = "\n".join(render(c, ns, indent + 1) for c in el)
        return f"{pad}<{name}{attrs}>{escape(body)}\n{inner}\n{pad}</{name}>"

    return render(stanza, "jabber:client", 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true",
                    help="leave the XMPP server and Satchel running afterwards")
    ap.add_argument("--server", choices=["prosody", "ejabberd"], default="prosody")
    ap.add_argument("--no-offline", action="store_true",
                    help="run the server without offline storage (Satchel keeps the message)")
    ap.add_argument("--privileged", action="store_true",
                    help="grant Satchel XEP-0356 message and presence permission")
    ap.add_argument("--wait", type=float, default=3.0,
                    help="seconds bob stays offline after the receipt (default 3)")
    args = ap.parse_args()

    server = make_server(args.server, privileged=args.privileged, offline=not args.no_offline)
    satchel = alice = bob = None
    url = None
    ok = False
    try:
        variant = []
        variant.append("with offline storage" if server.offline else "WITHOUT offline storage")
        variant.append("XEP-0356 mod_privilege" if server.privileged else "no mod_privilege")
        step(f"starting {args.server} on loopback ({', '.join(variant)}; "
             f"config rendered from examples/servers/)")
        satchel = start(server)

        alice_jid, bob_jid = f"alice@{server.domain}", f"bob@{server.domain}"
        step(f"logging in as {alice_jid}; {bob_jid} is offline (not logged in)")
        alice = connect_user(server, "alice")
        info = alice.disco_info(COMPONENT_JID)
        print(f"    {COMPONENT_JID} offers multicast relay ({NS_ADDRESS}): "
              f"{NS_ADDRESS in info.features}")

        photo = make_photo()
        from PIL import Image
        width, height = Image.open(io.BytesIO(photo)).size
        step(f"alice uploads {PHOTO_NAME} ({len(photo)} bytes, {width}x{height}, image/jpeg)")
        slot = alice.request_slot(PHOTO_NAME, len(photo), "image/jpeg")
        r = requests.put(slot.put_url, data=photo,
                         headers={"Content-Type": "image/jpeg", **slot.put_headers}, timeout=30)
        print(f"    PUT {slot.put_url} -> {r.status_code} {r.reason}")
        if r.status_code != 201:
            raise SystemExit(f"upload failed: {r.status_code} {r.text}")
        url = slot.get_url
        print(f"    GET URL {url}")
        file_id = urlsplit(url).path.split("/")[2]
        blob = satchel.store_path / "content" / file_id[:2] / file_id
        stored = [p for p in satchel.store_path.rglob("*") if p.is_file()]
        leaked = any(photo in p.read_bytes() for p in stored)
        print(f"    stored encrypted in {blob} ({blob.stat().st_size} bytes)")
        print(f"    the photo's plaintext found in the store ({len(stored)} files under "
              f"{satchel.store_path}): {'YES (!)' if leaked else 'no'}")
        print(f"    master key {satchel.key_file}, outside the store")

        step(f"alice asks {COMPONENT_JID} to relay it to {bob_jid} (XEP-0033), "
             f"with a receipt request (XEP-0184)")
        rid = send_relay(alice, [bob_jid], url, caption=CAPTION)
        print(f"    <message to='{COMPONENT_JID}' id='{rid}'> addresses: to {bob_jid}; "
              f"body: {CAPTION!r}; oob url: the GET URL")
        answer = wait_relay_answer(alice, rid, timeout=30)
        if answer.kind != "receipt":
            raise SystemExit(f"Satchel refused the relay: {answer}")
        received = answer.message.find("{urn:xmpp:receipts}received")
        print(f"    receipt from {answer.message.get('from')}: "
              f"<received xmlns='urn:xmpp:receipts' id='{received.get('id')}'/>"
              f" -> the relay is stored durably")

        where = (f"{args.server}'s offline storage" if server.offline
                 else "Satchel's outbox (the server has no offline storage)")
        step(f"bob is still offline; the message waits in {where} for {args.wait:g}s")
        time.sleep(args.wait)

        step(f"bob logs in as {bob_jid}")
        t0 = time.monotonic()
        bob = connect_user(server, "bob")
        # Without offline storage Satchel retries with backoff (or, with presence
        # permission, as soon as it sees bob come online): allow for that.
        timeout = 20 if server.offline else 120
        try:
            msg = bob.wait_for_message(is_relay_of(url), timeout=timeout)
        except XmppTimeout as e:
            raise SystemExit(f"bob got no relay message within {timeout}s: {e}")
        print(f"    the message arrived {time.monotonic() - t0:.1f}s after login")

        step("what bob received")
        print("    " + shown(msg).replace("\n", "\n    "))

        step("what bob's client shows (before downloading anything)")
        frm = msg.get("from")
        if bare(frm) == alice_jid:
            print(f"    from:      {frm} (sent as alice: XEP-0356)")
        else:
            addrs = msg.find(q("addresses", NS_ADDRESS))
            ofrom = [a.get("jid") for a in (addrs if addrs is not None else [])
                     if a.get("type") == "ofrom"]
            print(f"    from:      {frm}, on behalf of {', '.join(ofrom) or '?'} "
                  f"(XEP-0033 ofrom), nick {text(msg, q('nick', NS_NICK))!r}")
        print(f"    body:      {text(msg, q('body'))}")
        oob = msg.find(q("x", NS_OOB))
        caption = text(oob, q("desc", NS_OOB)) if oob is not None else None
        print(f"    caption:   {caption!r}")
        sfs = msg.find(q("file-sharing", NS_SFS))
        if sfs is None or sfs.find(q("file", NS_FILE)) is None:
            raise SystemExit("no XEP-0447 <file-sharing/> metadata in the message")
        f = sfs.find(q("file", NS_FILE))
        meta = {k: text(f, q(k, NS_FILE)) for k in ("media-type", "name", "size", "width", "height")}
        hashes = {h.get("algo"): (h.text or "").strip() for h in f.findall(q("hash", NS_HASHES))}
        print(f"    file:      type {meta['media-type']}, name {meta['name']}, "
              f"size {meta['size']} bytes, {meta['width']}x{meta['height']} px "
              f"({sfs.get('disposition')})")
        sha256_b64 = hashes.get("sha-256")
        sha256_hex = base64.b64decode(sha256_b64).hex() if sha256_b64 else None
        print(f"    sha-256:   {sha256_b64} (hex {sha256_hex})")

        thumb = f.find(q("thumbnail", NS_THUMBS))
        if thumb is None:
            raise SystemExit("no XEP-0264 <thumbnail/> in the metadata")
        cid = (thumb.get("uri") or "")[len("cid:"):]
        data = next((d for d in msg.findall(q("data", NS_BOB)) if d.get("cid") == cid), None)
        if data is None:
            raise SystemExit(f"no XEP-0231 <data/> for the thumbnail's {thumb.get('uri')}")
        tbytes = base64.b64decode((data.text or "").strip())
        cid_ok = cid == f"sha1+{hashlib.sha1(tbytes).hexdigest()}@bob.xmpp.org"
        timg = Image.open(io.BytesIO(tbytes))
        timg.load()
        print(f"    thumbnail: {thumb.get('media-type')}, {thumb.get('width')}x{thumb.get('height')} px, "
              f"{len(tbytes)} bytes inline (BoB, max-age {data.get('max-age')}s); "
              f"decodes to {timg.size[0]}x{timg.size[1]}; cid is its SHA-1: "
              f"{'yes' if cid_ok else 'NO'}")
        print(f"    message:   {len(ET.tostring(msg))} bytes in all")
        thumb_path = THUMBNAIL_PATH.with_suffix(EXTENSIONS.get(thumb.get("media-type"), ".img"))
        thumb_path.write_bytes(tbytes)
        print(f"    thumbnail saved to {thumb_path}")
        if not cid_ok:
            raise SystemExit("the thumbnail's cid does not name its bytes")

        step("bob downloads the file with HTTP GET and checks it")
        g = requests.get(text(msg, q("body")), timeout=30)
        got_hex = hashlib.sha256(g.content).hexdigest()
        print(f"    {g.status_code} {g.reason}, {len(g.content)} bytes, "
              f"Content-Type {g.headers.get('Content-Type')}")
        print(f"    sha-256 of the download {got_hex}")
        print(f"    sha-256 in the metadata {sha256_hex}")
        size_ok = str(len(g.content)) == meta["size"]
        hash_ok = g.status_code == 200 and got_hex == sha256_hex
        same = g.content == photo
        print(f"    size {'OK' if size_ok else 'MISMATCH'}, SHA-256 {'OK' if hash_ok else 'MISMATCH'}, "
              f"bytes identical to alice's photo: {'yes' if same else 'NO'}")
        if not (size_ok and hash_ok and same):
            raise SystemExit("the downloaded file does not match the metadata")
        ok = True
    finally:
        for c in (alice, bob):
            if c is not None:
                c.close()
        finish(server, satchel, args.keep and ok, ["alice", "bob"],
               f"curl -o {PHOTO_NAME} '{url}'" if ok else "")
    print("offline demo: OK" if ok else "offline demo: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
