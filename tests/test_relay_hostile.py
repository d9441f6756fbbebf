"""Hostile input to the relay: images built to hurt the thumbnailer,
forged or oversized sender thumbnails, address tricks, look-alike and
client-side encrypted URLs, someone else's file, a flood of recipients.

Each gets a clean answer (a receipt and a message without a thumbnail, or a
message error with the right condition), and Satchel keeps serving: it answers
a ping and a slot request right after, and its log shows no panic.

The plain refusals (unknown file, another host with the same path, someone
else's file by its own URL, 51 and 10 000 distinct recipients, foreign
domains, the rate limit) are in test_relay.py; these are the nastier variants.
All run against the session's default `server` (no XEP-0356, offline storage on),
with one Satchel whose rate limit is out of the way.
"""

import base64
import hashlib
import io
import os
import struct
import time
import uuid
import zlib
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape, quoteattr

import pytest

from harness import COMPONENT_JID
from harness.relay import (
    NS_ADDRESS, NS_BOB, NS_FILE, NS_HASHES, NS_HINTS, NS_NICK, NS_OOB, NS_RECEIPTS, NS_SFS,
    NS_THUMBS, NS_URL_DATA, ExpectedFile, bare, bodies, check_relay_message, expect_error,
    expect_receipt, is_relay_of, make_image, q, send_relay, upload, upload_image,
)

DELIVERY_TIMEOUT = 20
ALICE, BOB, CAROL = "alice@localhost", "bob@localhost", "carol@localhost"
BOB_MAX = 64 * 1024            # XEP-0231 data Satchel accepts (src/xmpp/bob.rs MAX_DATA_SIZE)

# Some 50 relays from alice within a minute: above the default rate limit (30 a
# minute, counted for refused requests too), which test_relay.py tests itself.
pytestmark = pytest.mark.satchel_config(relay={"relays_per_minute": 10_000})


# -- helpers ---------------------------------------------------------------------------------
class LogWatch:
    """What Satchel logs from now on."""

    def __init__(self, satchel):
        self.path = satchel.log_path
        self.start = self.path.stat().st_size if self.path.exists() else 0

    def new_text(self):
        with open(self.path, "rb") as f:
            f.seek(self.start)
            return f.read().decode("utf-8", "replace")

    def assert_no_panic(self):
        text = self.new_text()
        bad = [line for line in text.splitlines()
               if "panicked" in line or "panic" in line.lower() or "RUST_BACKTRACE" in line]
        assert not bad, "Satchel's log shows a panic:\n" + "\n".join(bad[:20])


def assert_responsive(satchel, client):
    """Satchel is alive and answers at once: a ping and a slot request."""
    assert satchel.running(), f"Satchel exited:\n{satchel.logs(40)}"
    t0 = time.monotonic()
    assert client.ping(COMPONENT_JID, timeout=5)
    slot = client.request_slot("after.txt", 10, "text/plain", timeout=5)
    assert slot.put_url and slot.get_url
    assert time.monotonic() - t0 < 5, "Satchel is slow to answer after hostile input"


def raw_relay(client, addresses_xml, url, extra="", id=None, caption=None):
    """A relay request whose XEP-0033 part is given verbatim (`addresses_xml`
    is the whole <addresses/> element, or several, or none)."""
    id = id or f"hostile-{uuid.uuid4().hex[:12]}"
    parts = [f"<message to={quoteattr(COMPONENT_JID)} id={quoteattr(id)}>", addresses_xml]
    if caption is not None:
        parts.append(f"<body>{escape(caption)}</body>")
    parts.append(f"<x xmlns='{NS_OOB}'><url>{escape(url)}</url></x>")
    parts.append(f"<request xmlns='{NS_RECEIPTS}'/>")
    parts.append(extra)
    parts.append("</message>")
    client.send_raw("".join(parts))
    return id


def addresses(*inner):
    return f"<addresses xmlns='{NS_ADDRESS}'>{''.join(inner)}</addresses>"


def to(jid, typ="to"):
    return f"<address type={quoteattr(typ)} jid={quoteattr(jid)}/>"


def cid_of(data):
    return f"sha1+{hashlib.sha1(data).hexdigest()}@bob.xmpp.org"


def sender_thumbnail_xml(data, cid=None, data_cid=None, media_type="image/png",
                         width=32, height=32, with_data=True):
    """A XEP-0264 thumbnail in XEP-0446 metadata, its bytes as XEP-0231 data.
    `cid` is what the thumbnail points at, `data_cid` what the <data/> claims."""
    cid = cid or cid_of(data)
    data_cid = data_cid or cid
    sharing = (f"<file-sharing xmlns='{NS_SFS}' disposition='inline'>"
               f"<file xmlns='{NS_FILE}'>"
               f"<thumbnail xmlns='{NS_THUMBS}' uri={quoteattr('cid:' + cid)} "
               f"media-type={quoteattr(media_type)} width='{width}' height='{height}'/>"
               f"</file></file-sharing>")
    bob = (f"<data xmlns='{NS_BOB}' cid={quoteattr(data_cid)} type={quoteattr(media_type)}>"
           f"{base64.b64encode(data).decode()}</data>")
    return sharing + (bob if with_data else "")


def small_png(width=32, height=32):
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 90)).save(buf, format="PNG")
    return buf.getvalue()


def with_netloc(url, netloc=None, scheme=None, path=None):
    p = urlsplit(url)
    return urlunsplit((scheme or p.scheme, p.netloc if netloc is None else netloc,
                       p.path if path is None else path, p.query, p.fragment))


def aesgcm(url):
    """The XEP-0454 form of a GET URL: aesgcm:// and a 12-byte IV + 32-byte key fragment."""
    return with_netloc(url, scheme="aesgcm") + "#" + os.urandom(44).hex()


# -- hostile images ------------------------------------------------------------------------------
def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bomb(width=60000, height=60000, zeros=16 * 1024 * 1024):
    """A small PNG whose IHDR (valid CRC) claims width x height RGB pixels, with an
    IDAT of highly compressible zeros: the classic decompression bomb."""
    comp = zlib.compressobj(9)
    chunk = b"\0" * (1024 * 1024)
    idat = b"".join(comp.compress(chunk) for _ in range(zeros // len(chunk))) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def jpeg_bomb(side=65500):
    """A real small JPEG whose SOF header is patched to claim side x side pixels."""
    data = bytearray(make_image(64, 48, "JPEG"))
    for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"):
        at = data.find(marker)
        if at >= 0:
            break
    assert at >= 0, "no SOF marker in the generated JPEG"
    # FFCx, length (2), precision (1), height (2), width (2)
    struct.pack_into(">HH", data, at + 5, side, side)
    return bytes(data)


def gif_bomb(side=65535):
    """A 1x1 GIF whose logical screen claims side x side pixels."""
    from PIL import Image
    buf = io.BytesIO()
    Image.new("P", (1, 1)).save(buf, format="GIF")
    data = bytearray(buf.getvalue())
    struct.pack_into("<HH", data, 6, side, side)
    return bytes(data)


def corrupt_jpeg(size=20_000):
    """Random bytes behind a JPEG magic (SOI + APP0)."""
    return b"\xff\xd8\xff\xe0" + os.urandom(size)


def truncated_png():
    """A real PNG cut off in the middle of its image data."""
    data = make_image(400, 300, "PNG")
    return data[: len(data) // 2]


HOSTILE_IMAGES = {
    # name: (builder, file name, media type)
    "png-bomb-60000x60000": (png_bomb, "bomb.png", "image/png"),
    "jpeg-header-65500x65500": (jpeg_bomb, "bomb.jpg", "image/jpeg"),
    "gif-screen-65535x65535": (gif_bomb, "bomb.gif", "image/gif"),
    "corrupt-jpeg": (corrupt_jpeg, "corrupt.jpg", "image/jpeg"),
    "truncated-png": (truncated_png, "truncated.png", "image/png"),
}


@pytest.mark.parametrize("kind", list(HOSTILE_IMAGES))
def test_hostile_image_is_delivered_without_thumbnail(satchel, connect, kind):
    """A decompression bomb or a corrupt image: the relay is accepted, the message
    arrives without a thumbnail, Satchel says why in its log, never panics, and
    answers at once afterwards."""
    build, name, media_type = HOSTILE_IMAGES[kind]
    data = build()
    alice, bob = connect("alice"), connect("bob")
    log = LogWatch(satchel)
    slot = upload(alice, data, name, media_type)

    t0 = time.monotonic()
    rid = send_relay(alice, [BOB], slot.get_url, caption=kind)
    expect_receipt(alice, rid, timeout=15)
    took = time.monotonic() - t0
    assert_responsive(satchel, alice)

    msg = bob.wait_for_message(is_relay_of(slot.get_url), timeout=DELIVERY_TIMEOUT)
    check_relay_message(msg, slot.get_url, ExpectedFile(data, name, media_type, caption=kind),
                        ALICE, privileged=False, expect_thumbnail=False)
    assert msg.find(q("data", NS_BOB)) is None, "a BoB <data/> without a thumbnail"
    assert took < 10, f"the receipt took {took:.1f}s: the thumbnailer stalled the relay"

    log.assert_no_panic()
    assert "no thumbnail" in log.new_text(), \
        f"no log line says why there is no thumbnail:\n{log.new_text()[-3000:]}"


# -- sender-made thumbnails ---------------------------------------------------------------------
@pytest.mark.parametrize("trick", ["forged-cid", "malformed-cid", "data-missing", "not-an-image",
                                   "data-over-64KiB"])
def test_bad_sender_thumbnail_is_bad_request(satchel, alice, trick):
    slot, _ = upload_image(alice, 64, 64, "thumbed.jpg")
    png = small_png()
    if trick == "forged-cid":
        # A well-formed cid, but the SHA-1 of other bytes.
        extra = sender_thumbnail_xml(png, cid=cid_of(b"something else entirely"))
    elif trick == "malformed-cid":
        extra = sender_thumbnail_xml(png, cid="sha1+NOT-HEX-" + "Z" * 27 + "@bob.xmpp.org")
    elif trick == "data-missing":
        extra = sender_thumbnail_xml(png, with_data=False)
    elif trick == "not-an-image":
        extra = sender_thumbnail_xml(os.urandom(2000))
    else:
        big = os.urandom(BOB_MAX + 6 * 1024)     # cid right, size over the limit
        extra = sender_thumbnail_xml(big)
    rid = send_relay(alice, [BOB], slot.get_url, extra=extra)
    expect_error(alice, rid, "bad-request")
    assert_responsive(satchel, alice)


def test_stray_oversized_bob_data_is_never_passed_on(satchel, connect):
    """A <data/> over 64 KiB that no thumbnail names is not read: the relay goes
    through, and the data is not forwarded to the recipients."""
    alice, bob = connect("alice"), connect("bob")
    slot, expected = upload_image(alice, 64, 64, "stray.jpg")
    big = os.urandom(BOB_MAX + 6 * 1024)
    extra = (f"<data xmlns='{NS_BOB}' cid='{cid_of(big)}' type='image/png'>"
             f"{base64.b64encode(big).decode()}</data>")
    rid = send_relay(alice, [BOB], slot.get_url, extra=extra)
    expect_receipt(alice, rid)
    msg = bob.wait_for_message(is_relay_of(slot.get_url), timeout=DELIVERY_TIMEOUT)
    check_relay_message(msg, slot.get_url, expected, ALICE, privileged=False)
    assert all(d.get("cid") != cid_of(big) for d in msg.findall(q("data", NS_BOB)))
    assert_responsive(satchel, alice)


def relay_a_later_one(alice, *recipients):
    """Relays a fresh upload from alice to `recipients` (clients) and waits until
    each has it. One delivery task takes relays in the order Satchel accepts
    them and the link keeps that order: whatever Satchel had accepted before
    has reached them by then."""
    slot, _ = upload_image(alice, 64, 64, "later.jpg")
    expect_receipt(alice, send_relay(alice, [c.jid for c in recipients], slot.get_url))
    for c in recipients:
        c.wait_for_message(is_relay_of(slot.get_url), timeout=DELIVERY_TIMEOUT)


# -- address tricks -------------------------------------------------------------------------------
BAD_ADDRESSES = {
    "noreply": addresses(to(BOB), "<address type='noreply'/>"),
    "ofrom-spoof": addresses(to(BOB), to(CAROL, "ofrom")),
    "replyto": addresses(to(BOB), to("mallory@localhost", "replyto")),
    "address-with-uri": addresses(to(BOB), "<address type='to' uri='xmpp:carol@localhost'/>"),
    "address-with-node": addresses(to(BOB), f"<address type='to' jid='{CAROL}' node='inbox'/>"),
    "delivered-true": addresses(to(BOB), f"<address type='to' jid='{CAROL}' delivered='true'/>"),
    "unknown-type": addresses(f"<address type='bogus' jid='{BOB}'/>"),
    "empty-addresses": addresses(),
    "two-addresses-elements": addresses(to(BOB)) + addresses(to(CAROL)),
    "server-as-recipient": addresses(to("localhost")),
    "satchel-as-recipient": addresses(to(COMPONENT_JID)),
    "invalid-jid": addresses(to("@@bob@@")),
    "overlong-localpart": addresses(to("b" * 2000 + "@localhost")),
}


@pytest.mark.parametrize("trick", list(BAD_ADDRESSES))
def test_address_tricks_are_bad_request(satchel, alice, trick):
    slot, _ = upload_image(alice, 64, 64, "addressed.jpg")
    rid = raw_relay(alice, BAD_ADDRESSES[trick], slot.get_url)
    expect_error(alice, rid, "bad-request")
    assert_responsive(satchel, alice)


def test_refused_address_trick_delivers_nothing(satchel, connect):
    """Nobody named in a refused request hears of it (checked once, for the ofrom spoof)."""
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    slot, _ = upload_image(alice, 64, 64, "spoof.jpg")
    rid = raw_relay(alice, BAD_ADDRESSES["ofrom-spoof"], slot.get_url)
    expect_error(alice, rid, "bad-request")
    relay_a_later_one(alice, bob, carol)
    for c in (bob, carol):
        assert not c.messages_matching(is_relay_of(slot.get_url)), f"{c.jid} got a refused relay"


# -- URLs ------------------------------------------------------------------------------------------
LOOKALIKES = {
    "host-suffix": lambda u, p: with_netloc(u, netloc=f"{p.netloc}.evil.example"),
    "host-in-path": lambda u, p: with_netloc(u, netloc="evil.example", path="/" + p.netloc + p.path),
    "userinfo": lambda u, p: with_netloc(u, netloc=f"evil.example@{p.netloc}"),
    "other-port": lambda u, p: with_netloc(u, netloc=f"{p.hostname}:{(p.port % 65000) + 1}"),
    "ftp-scheme": lambda u, p: with_netloc(u, scheme="ftp"),
    "no-scheme": lambda u, p: u.split("://", 1)[1],
    "javascript": lambda u, p: f"javascript:alert(1)//{p.netloc}{p.path}",
}


@pytest.mark.parametrize("lookalike", list(LOOKALIKES))
def test_lookalike_url_of_own_file_is_item_not_found(satchel, alice, lookalike):
    """The file id is alice's own completed upload, but the URL is not one of
    this Satchel's GET URLs: recipients would be sent elsewhere."""
    slot, _ = upload_image(alice, 64, 64, "lookalike.jpg")
    url = LOOKALIKES[lookalike](slot.get_url, urlsplit(slot.get_url))
    assert url != slot.get_url
    rid = send_relay(alice, [BOB], url)
    expect_error(alice, rid, "item-not-found")


def file_metadata(msg):
    f = msg.find(f"{q('file-sharing', NS_SFS)}/{q('file', NS_FILE)}")
    assert f is not None, "no XEP-0446 <file/> in the message"
    return f


def test_aesgcm_url_is_delivered_without_anything_read_from_the_ciphertext(satchel, connect):
    """An aesgcm:// link (XEP-0454): the stored bytes are ciphertext to Satchel.
    file_facts keeps only the name: no media type, size, hash or dimensions, no
    thumbnail; the URL (with its key fragment) goes to the recipient untouched.
    The upload here is a decodable JPEG, so a thumbnail would show that Satchel
    ignored the scheme."""
    alice, bob = connect("alice"), connect("bob")
    data = make_image(320, 240, "JPEG")
    slot = upload(alice, data, "encrypted.bin", "application/octet-stream")
    url = aesgcm(slot.get_url)
    rid = send_relay(alice, [BOB], url, caption="secret")
    expect_receipt(alice, rid)
    msg = bob.wait_for_message(is_relay_of(url), timeout=DELIVERY_TIMEOUT)

    assert bodies(msg) == [url]
    assert msg.findtext(f"{q('x', NS_OOB)}/{q('url', NS_OOB)}") == url
    assert msg.findtext(f"{q('x', NS_OOB)}/{q('desc', NS_OOB)}") == "secret"
    assert bare(msg.get("from")) == COMPONENT_JID
    ofrom = [a.get("jid") for a in msg.iter(q("address", NS_ADDRESS)) if a.get("type") == "ofrom"]
    assert [bare(j) for j in ofrom] == [ALICE]
    assert msg.findtext(q("nick", NS_NICK))
    assert msg.find(q("store", NS_HINTS)) is not None
    sfs = msg.find(q("file-sharing", NS_SFS))
    assert sfs.get("disposition") == "attachment"
    targets = [u.get("target") for u in sfs.iter(q("url-data", NS_URL_DATA))]
    assert targets == [url]
    f = file_metadata(msg)
    assert f.findtext(q("name", NS_FILE)) == "encrypted.bin"
    for absent in ("media-type", "size", "width", "height"):
        assert f.find(q(absent, NS_FILE)) is None, f"<{absent}/> read from ciphertext"
    assert f.find(q("hash", NS_HASHES)) is None, "a hash of the ciphertext"
    assert f.find(q("thumbnail", NS_THUMBS)) is None, "a thumbnail made of ciphertext"
    assert msg.find(q("data", NS_BOB)) is None


def test_aesgcm_url_passes_on_the_senders_checked_thumbnail(satchel, connect):
    """For an encrypted file only the sender can make a preview: a thumbnail it
    attached (cid = SHA-1 of its bytes) reaches the recipient byte for byte."""
    alice, bob = connect("alice"), connect("bob")
    data = os.urandom(5000)
    slot = upload(alice, data, "secret.bin", "application/octet-stream")
    url = aesgcm(slot.get_url)
    png = small_png(40, 30)
    rid = send_relay(alice, [BOB], url, extra=sender_thumbnail_xml(png, width=40, height=30))
    expect_receipt(alice, rid)
    msg = bob.wait_for_message(is_relay_of(url), timeout=DELIVERY_TIMEOUT)
    thumbs = file_metadata(msg).findall(q("thumbnail", NS_THUMBS))
    assert len(thumbs) == 1
    t = thumbs[0]
    assert t.get("uri") == f"cid:{cid_of(png)}"
    assert (t.get("media-type"), t.get("width"), t.get("height")) == ("image/png", "40", "30")
    datas = msg.findall(q("data", NS_BOB))
    assert len(datas) == 1 and datas[0].get("cid") == cid_of(png)
    assert base64.b64decode(datas[0].text) == png


def test_a_senders_thumbnail_too_large_for_the_message_is_dropped(satchel, connect):
    """A genuine thumbnail that would push the message past a few KiB is not passed
    on; the relay itself still goes through."""
    from PIL import Image
    alice, bob = connect("alice"), connect("bob")
    slot = upload(alice, os.urandom(5000), "secret.bin", "application/octet-stream")
    url = aesgcm(slot.get_url)
    buf = io.BytesIO()
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(buf, format="PNG")
    noisy = buf.getvalue()
    assert 8 * 1024 < len(noisy) < 64 * 1024
    expect_receipt(alice, send_relay(alice, [BOB], url,
                                     extra=sender_thumbnail_xml(noisy, width=64, height=64)))
    msg = bob.wait_for_message(is_relay_of(url), timeout=DELIVERY_TIMEOUT)
    assert msg.find(q("data", NS_BOB)) is None
    assert file_metadata(msg).find(q("thumbnail", NS_THUMBS)) is None


# -- someone else's file ---------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["aesgcm", "other-name-and-query"])
def test_someone_elses_file_in_another_form_is_forbidden(satchel, connect, form):
    """bob's file, named through a URL alice rewrote: still bob's."""
    alice, bob = connect("alice"), connect("bob")
    slot, _ = upload_image(bob, 64, 64, "bobs-private.jpg")
    if form == "aesgcm":
        url = aesgcm(slot.get_url)
    else:
        url = slot.get_url.rsplit("/", 1)[0] + "/alices.jpg?mine=1#x"
    rid = send_relay(alice, [CAROL], url)
    expect_error(alice, rid, "forbidden")


# -- floods ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["10000-copies-of-one", "10000-uri-addresses"])
def test_ten_thousand_addresses_are_not_acceptable(satchel, connect, shape):
    """Counted before anything else is parsed: duplicates that would collapse to one
    recipient, or addresses that are invalid anyway, still make it too many."""
    alice, bob = connect("alice"), connect("bob")
    slot, _ = upload_image(alice, 64, 64, "flood.jpg")
    if shape == "10000-copies-of-one":
        inner = to(BOB) * 10_000
    else:
        inner = "".join(f"<address type='to' uri='xmpp:u{i}@localhost'/>" for i in range(10_000))
    t0 = time.monotonic()
    rid = raw_relay(alice, addresses(inner), slot.get_url)
    expect_error(alice, rid, "not-acceptable", timeout=30)
    took = time.monotonic() - t0
    assert_responsive(satchel, alice)
    assert took < 15, f"refusing 10 000 addresses took {took:.1f}s"
    relay_a_later_one(alice, bob)
    assert not bob.messages_matching(is_relay_of(slot.get_url))


def test_satchel_log_has_no_panic_after_the_hostile_tests(satchel, alice):
    """Last: the whole log of the Satchel these tests used, from its start."""
    assert_responsive(satchel, alice)
    text = satchel.log_path.read_text(errors="replace")
    bad = [line for line in text.splitlines() if "panic" in line.lower()]
    assert not bad, "Satchel's log shows a panic:\n" + "\n".join(bad[:20])
