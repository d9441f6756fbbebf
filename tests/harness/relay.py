"""Helpers for the relay tests: build a XEP-0033 relay request, wait for
Satchel's answer (a XEP-0184 receipt or a message error), check a delivered
relay message against the spec, down to the file's bytes and the thumbnail's
pixels, and follow a relay's delivery in Satchel's log.

    rid = send_relay(alice, ["bob@localhost"], slot.get_url, caption="hi")
    answer = wait_relay_answer(alice, rid)          # RelayAnswer(kind="receipt"|"error", ...)
    msg = bob.wait_for_message(is_relay_of(slot.get_url), timeout=20)
    summary = check_relay_message(msg, slot.get_url, expected_file, sender="alice@localhost")

Messages are ElementTree elements as harness.client.Client collects them."""

import base64
import functools
import hashlib
import io
import re
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr, escape

import requests

from . import COMPONENT_JID
from .client import stanza_error, xml_str
from .satchel import wait_for_log

NS_CLIENT = "jabber:client"
NS_ADDRESS = "http://jabber.org/protocol/address"
NS_OOB = "jabber:x:oob"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_SFS = "urn:xmpp:sfs:0"
NS_FILE = "urn:xmpp:file:metadata:0"
NS_HASHES = "urn:xmpp:hashes:2"
NS_THUMBS = "urn:xmpp:thumbs:1"
NS_URL_DATA = "http://jabber.org/protocol/url-data"
NS_BOB = "urn:xmpp:bob"
NS_HINTS = "urn:xmpp:hints"
NS_NICK = "http://jabber.org/protocol/nick"
NS_PRIVILEGE = ("urn:xmpp:privilege:1", "urn:xmpp:privilege:2")

THUMB_MAX_SIDE = 128            # spec default: longest side at most 128 px
MAX_STANZA_BYTES = 10 * 1024    # spec: the whole message stays under 10 KiB
PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/gif": "GIF"}


def q(tag, ns=NS_CLIENT):
    return f"{{{ns}}}{tag}"


def bare(jid):
    return (jid or "").split("/", 1)[0]


# -- the request ----------------------------------------------------------------------
def relay_request_xml(recipients, url, caption=None, id=None, receipt=True,
                      to=COMPONENT_JID, extra=""):
    """A XEP-0033 relay request as a string. `recipients` is a list of
    JIDs (type 'to') or of (type, jid) pairs; `extra` is appended verbatim inside
    the <message/> (e.g. a sender-made thumbnail)."""
    addrs = []
    for r in recipients:
        typ, jid = r if isinstance(r, tuple) else ("to", r)
        addrs.append(f"<address type={quoteattr(typ)} jid={quoteattr(jid)}/>")
    parts = [f"<message to={quoteattr(to)} id={quoteattr(id)}>",
             f"<addresses xmlns='{NS_ADDRESS}'>{''.join(addrs)}</addresses>"]
    if caption is not None:
        parts.append(f"<body>{escape(caption)}</body>")
    if url is not None:
        parts.append(f"<x xmlns='{NS_OOB}'><url>{escape(url)}</url></x>")
    if receipt:
        parts.append(f"<request xmlns='{NS_RECEIPTS}'/>")
    parts.append(extra)
    parts.append("</message>")
    return "".join(parts)


def send_relay(client, recipients, url, caption=None, id=None, **kw):
    """Send a relay request from `client`; returns the request's id."""
    id = id or f"relay-{uuid.uuid4().hex[:12]}"
    client.send_raw(relay_request_xml(recipients, url, caption=caption, id=id, **kw))
    return id


@dataclass
class RelayAnswer:
    kind: str                 # "receipt" or "error"
    message: object           # the <message/> element
    error_type: str = None
    condition: str = None
    text: str = None

    def __str__(self):
        return f"RelayAnswer({self.kind} {self.error_type}/{self.condition} {self.text!r}: {xml_str(self.message)})"


def is_answer_to(request_id):
    """Predicate: Satchel's receipt for request_id, or a message error carrying its id."""
    def pred(m):
        if bare(m.get("from")) != COMPONENT_JID:
            return False
        if m.get("type") == "error":
            return m.get("id") == request_id
        rec = m.find(q("received", NS_RECEIPTS))
        return rec is not None and rec.get("id") == request_id
    return pred


def wait_relay_answer(client, request_id, timeout=15, since=0):
    """Satchel's answer to a relay request: RelayAnswer(kind='receipt'|'error')."""
    m = client.wait_for_message(is_answer_to(request_id), timeout=timeout, since=since)
    if m.get("type") == "error":
        typ, cond, text = stanza_error(m) or (None, None, None)
        return RelayAnswer("error", m, typ, cond, text)
    return RelayAnswer("receipt", m)


def expect_receipt(client, request_id, timeout=15, since=0):
    a = wait_relay_answer(client, request_id, timeout=timeout, since=since)
    assert a.kind == "receipt", f"relay {request_id} refused: {a}"
    return a


def expect_error(client, request_id, condition, timeout=15, since=0):
    a = wait_relay_answer(client, request_id, timeout=timeout, since=since)
    assert a.kind == "error", f"relay {request_id} accepted, expected {condition}: {a}"
    assert a.condition == condition, f"expected {condition}, got {a}"
    return a


# -- what a recipient gets -------------------------------------------------------------
def bodies(m):
    return [b.text or "" for b in m.findall(q("body"))]


def is_relay_of(url):
    """Predicate: a delivered relay message for `url` (not an error, not a carbon or
    MAM wrapper: its own <body/> is the URL)."""
    def pred(m):
        return m.get("type") != "error" and url in bodies(m)
    return pred


@dataclass
class ExpectedFile:
    data: bytes
    name: str
    media_type: str
    width: int = None          # None: not an image (no dimensions, no thumbnail expected)
    height: int = None
    caption: str = None


@dataclass
class RelaySummary:
    sender_as: str             # "sender" (XEP-0356) or "component" (ofrom + nick)
    from_jid: str
    type: str
    stanza_bytes: int
    file: dict = field(default_factory=dict)
    thumbnail: dict = None     # {"media_type", "width", "height", "bytes", "cid"}
    xml: str = ""


def _text(el, path):
    found = el.find(path)
    return None if found is None else (found.text or "").strip()


def check_relay_message(msg, url, expected, sender, privileged=None, download=True,
                        expect_thumbnail=None):
    """Assert that `msg` is the relay message for `url` as Satchel sends it, on behalf
    of `sender` (a bare JID). privileged: True (must come from the sender), False
    (must come from Satchel with ofrom + nick), None (either, consistently).
    expect_thumbnail defaults to whether `expected` has dimensions. Downloads the
    file to compare size and SHA-256. Returns a RelaySummary."""
    from PIL import Image  # Pillow: tests/requirements.txt

    raw = xml_str(msg)
    ctx = f"\nin {raw[:3000]}"
    if expect_thumbnail is None:
        expect_thumbnail = expected.width is not None

    # Sender identity.
    frm = bare(msg.get("from"))
    if frm == bare(sender):
        sender_as = "sender"
    else:
        sender_as = "component"
        assert frm == COMPONENT_JID, f"from={msg.get('from')!r}: neither {sender} nor Satchel{ctx}"
        addrs = msg.find(q("addresses", NS_ADDRESS))
        assert addrs is not None, f"no XEP-0033 <addresses/> naming the sender{ctx}"
        ofrom = [a.get("jid") for a in addrs.findall(q("address", NS_ADDRESS))
                 if a.get("type") == "ofrom"]
        assert [bare(j) for j in ofrom] == [bare(sender)], f"ofrom {ofrom} != {sender}{ctx}"
        nick = _text(msg, q("nick", NS_NICK))
        assert nick, f"no XEP-0172 <nick/>{ctx}"
    if privileged is True:
        assert sender_as == "sender", f"expected the message as {sender} (XEP-0356){ctx}"
    elif privileged is False:
        assert sender_as == "component", f"expected the message from {COMPONENT_JID}{ctx}"
    assert msg.get("type") == "chat", f"type={msg.get('type')!r}, expected chat{ctx}"

    # Body and OOB.
    assert bodies(msg) and all(b == url for b in bodies(msg)), f"body != URL {url}{ctx}"
    oob = msg.find(q("x", NS_OOB))
    assert oob is not None, f"no OOB <x/>{ctx}"
    assert _text(oob, q("url", NS_OOB)) == url, f"OOB url != {url}{ctx}"
    if expected.caption:
        assert _text(oob, q("desc", NS_OOB)) == expected.caption, f"OOB desc != caption{ctx}"
    assert msg.find(q("store", NS_HINTS)) is not None, f"no <store/> hint{ctx}"

    # XEP-0447 file sharing with XEP-0446 metadata.
    sfs = msg.find(q("file-sharing", NS_SFS))
    assert sfs is not None, f"no <file-sharing/>{ctx}"
    # Media a browser shows without running anything is inline; the rest (PDF,
    # archives, SVG, HTML) is offered as an attachment.
    inline = expected.media_type.split("/")[0] in ("image", "audio", "video") \
        and expected.media_type != "image/svg+xml" or expected.media_type == "text/plain"
    want = "inline" if inline else "attachment"
    assert sfs.get("disposition") == want, f"disposition={sfs.get('disposition')!r}, want {want}{ctx}"
    f = sfs.find(q("file", NS_FILE))
    assert f is not None, f"no <file/> metadata{ctx}"
    meta = {
        "media_type": _text(f, q("media-type", NS_FILE)),
        "name": _text(f, q("name", NS_FILE)),
        "size": _text(f, q("size", NS_FILE)),
        "width": _text(f, q("width", NS_FILE)),
        "height": _text(f, q("height", NS_FILE)),
    }
    hashes = {h.get("algo"): (h.text or "").strip() for h in f.findall(q("hash", NS_HASHES))}
    assert "sha-256" in hashes, f"no sha-256 <hash/>{ctx}"
    meta["sha256"] = hashes["sha-256"]
    assert meta["media_type"] == expected.media_type, f"media-type {meta['media_type']!r}{ctx}"
    assert meta["name"] == expected.name, f"name {meta['name']!r} != {expected.name!r}{ctx}"
    assert meta["size"] == str(len(expected.data)), f"size {meta['size']!r} != {len(expected.data)}{ctx}"
    want_hash = base64.b64encode(hashlib.sha256(expected.data).digest()).decode()
    assert meta["sha256"] == want_hash, f"hash {meta['sha256']!r} != {want_hash}{ctx}"
    if expected.width is not None:
        assert (meta["width"], meta["height"]) == (str(expected.width), str(expected.height)), \
            f"dimensions {meta['width']}x{meta['height']} != {expected.width}x{expected.height}{ctx}"
    sources = sfs.find(q("sources", NS_SFS))
    assert sources is not None, f"no <sources/>{ctx}"
    targets = [u.get("target") for u in sources.findall(q("url-data", NS_URL_DATA))]
    assert url in targets, f"url-data targets {targets} lack {url}{ctx}"

    # XEP-0264 thumbnail, its bytes inline as XEP-0231 BoB in the same message.
    thumbs = f.findall(q("thumbnail", NS_THUMBS))
    datas = msg.findall(q("data", NS_BOB))
    thumb = None
    if expect_thumbnail:
        assert thumbs, f"no <thumbnail/>{ctx}"
        t = thumbs[0]
        uri = t.get("uri") or ""
        assert uri.startswith("cid:"), f"thumbnail uri {uri!r} is not a cid:{ctx}"
        cid = uri[4:]
        match = [d for d in datas if d.get("cid") == cid]
        assert len(match) == 1, f"{len(match)} BoB <data/> with cid {cid}{ctx}"
        d = match[0]
        tbytes = base64.b64decode((d.text or "").strip(), validate=False)
        assert tbytes, f"empty BoB data{ctx}"
        want_cid = f"sha1+{hashlib.sha1(tbytes).hexdigest()}@bob.xmpp.org"
        assert cid == want_cid, f"cid {cid} is not the SHA-1 of the data ({want_cid}){ctx}"
        assert d.get("type") == t.get("media-type"), \
            f"BoB type {d.get('type')!r} != thumbnail media-type {t.get('media-type')!r}{ctx}"
        assert t.get("media-type") in ("image/webp", "image/jpeg", "image/png"), ctx
        img = Image.open(io.BytesIO(tbytes))
        img.load()
        tw, th = int(t.get("width")), int(t.get("height"))
        assert img.size == (tw, th), f"thumbnail decodes to {img.size}, promised {tw}x{th}{ctx}"
        assert img.format == PIL_FORMATS[t.get("media-type")], \
            f"thumbnail is {img.format}, promised {t.get('media-type')}{ctx}"
        assert max(tw, th) <= THUMB_MAX_SIDE, f"thumbnail {tw}x{th} larger than {THUMB_MAX_SIDE}{ctx}"
        if expected.width:
            # Same aspect ratio as the original, to a pixel.
            assert abs(tw / th - expected.width / expected.height) < 2 / min(tw, th) + 0.02, \
                f"thumbnail {tw}x{th} distorts {expected.width}x{expected.height}{ctx}"
        thumb = {"media_type": t.get("media-type"), "width": tw, "height": th,
                 "bytes": len(tbytes), "cid": cid, "max_age": d.get("max-age")}
    else:
        assert not thumbs, f"unexpected <thumbnail/>{ctx}"

    size = len(ET.tostring(msg))
    assert size < MAX_STANZA_BYTES, f"relay message is {size} bytes (limit {MAX_STANZA_BYTES}){ctx}"

    if download:
        r = requests.get(url, timeout=15)
        assert r.status_code == 200, f"GET {url}: {r.status_code}"
        got = base64.b64encode(hashlib.sha256(r.content).digest()).decode()
        assert got == meta["sha256"], "downloaded bytes do not match the metadata hash"
        assert str(len(r.content)) == meta["size"]
        assert r.headers.get("Content-Type", "").split(";")[0].strip() == meta["media_type"]
        if expected.width is not None:
            img = Image.open(io.BytesIO(r.content))
            assert img.size == (expected.width, expected.height)

    return RelaySummary(sender_as=sender_as, from_jid=msg.get("from"), type=msg.get("type"),
                        stanza_bytes=size, file=meta, thumbnail=thumb, xml=raw)


# -- what Satchel's log says of a relay ----------------------------------------------------
def relay_id_of(satchel, request_id, timeout=15):
    """The id Satchel gave the relay that request `request_id` asked for."""
    pattern = (r"relay\{id=" + re.escape(request_id) + r" [^}]*\}: [^\n]*"
               r"relay accepted relay=([0-9a-f]{32})")
    match, _ = wait_for_log(satchel, pattern, timeout=timeout)
    return match.group(1)


def wait_for_a_bounce(satchel, relay_id, since, timeout=60):
    """Wait until Satchel, connected anew after byte `since` of its log, has
    had a message of relay `relay_id` bounce: it knows its recipient is away."""
    _, connected = wait_for_log(satchel, r"connected to the XMPP server", since, timeout)
    wait_for_log(satchel, r"bounced;[^\n]* relay=" + relay_id, connected, timeout)


# -- test files -------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def make_image(width=640, height=480, fmt="JPEG", seed=1):
    """Bytes of a deterministic test image (a gradient with some structure)."""
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (width, height))
    px = img.load()
    for y in range(height):
        for x in range(width):
            px[x, y] = ((x * 255) // max(width - 1, 1), (y * 255) // max(height - 1, 1),
                        ((x ^ y) * seed) & 0xFF)
    draw = ImageDraw.Draw(img)
    draw.ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4), outline=(255, 255, 255), width=5)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buf.getvalue()


def upload(client, data, name, media_type):
    """Upload `data` through a slot of `client`; returns the Slot."""
    slot = client.request_slot(name, len(data), media_type)
    headers = dict(slot.put_headers)
    headers["Content-Type"] = media_type
    r = requests.put(slot.put_url, data=data, headers=headers, timeout=15)
    assert r.status_code == 201, (r.status_code, r.text)
    return slot


def upload_image(client, width=640, height=480, name="photo.jpg", fmt="JPEG", caption=None):
    """Upload a generated image; returns (slot, ExpectedFile)."""
    media_type = {"JPEG": "image/jpeg", "PNG": "image/png"}[fmt]
    data = make_image(width, height, fmt)
    slot = upload(client, data, name, media_type)
    return slot, ExpectedFile(data, name, media_type, width, height, caption)
