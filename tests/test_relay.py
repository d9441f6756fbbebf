"""The relay: a client names recipients and the GET URL of its upload in a
XEP-0033 message to Satchel; Satchel stores the relay, answers a XEP-0184 receipt
and delivers to each recipient a message with the URL, OOB, XEP-0447/0446
metadata and a XEP-0264 thumbnail carried inline as XEP-0231 BoB.

Servers: the session's default `server` (no XEP-0356 privilege, offline storage
on) for the checks and refusals, and `variant` servers (one at a time, started
once per session) for the other combinations of mod_privilege and offline
storage: delivery as the sender, and Satchel's own retries when the server has
nowhere to keep a message for an offline recipient.
"""

import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest

from harness import COMPONENT_JID, make_server
from harness.client import connect_user
from harness.relay import (
    NS_ADDRESS, ExpectedFile, check_relay_message, expect_error, expect_receipt,
    is_relay_of, relay_id_of, send_relay, upload, upload_image,
    wait_for_a_bounce, wait_relay_answer,
)
from harness.satchel import log_size
from harness.session import SERVER_KINDS, SatchelManager, report_logs_of
from harness.util import variant_name

DELIVERY_TIMEOUT = 20          # live delivery, or delivery by the server's offline storage
RETRY_TIMEOUT = 60             # Satchel's own retry after the server dropped or bounced it
ALICE, BOB, CAROL = "alice@localhost", "bob@localhost", "carol@localhost"


# -- environments ------------------------------------------------------------------------
@dataclass
class Env:
    server: object
    satchel: object
    connect: object            # connect(user) -> logged-in Client, closed after the test
    privileged: bool
    offline: bool


@pytest.fixture
def env(server, satchel, connect):
    """The default server: Satchel without XEP-0356 privilege, offline storage on."""
    return Env(server, satchel, connect, privileged=False, offline=True)


VARIANTS = [(True, True), (True, False), (False, False)]   # (privileged, offline)


def variant_params(privileged=None, offline=None):
    """The variant_server params (kind, privileged, offline) that match."""
    return [(k, p, o) for k in SERVER_KINDS for p, o in VARIANTS
            if privileged in (None, p) and offline in (None, o)]


def variant_id(v):
    return f"{v[0]}-{variant_name(v[1], v[2])}"


def only_variants(**which):
    """Run a test on the matching variant servers only (an indirect parametrization
    of variant_server: the same param value reuses the same server)."""
    return pytest.mark.parametrize("variant_server", variant_params(**which),
                                   indirect=True, ids=variant_id)


@pytest.fixture(scope="session", params=variant_params(), ids=variant_id)
def variant_server(request, satchel_bin):
    """A server with mod_privilege and/or offline storage as the param says, with its
    own SatchelManager. Session-scoped and parametrized, so pytest groups the tests
    by variant and runs one such server at a time."""
    kind, privileged, offline = request.param
    s = make_server(kind, privileged=privileged, offline=offline)
    try:
        s.start()
    except Exception:
        s.cleanup()
        raise
    mgr = SatchelManager(s)
    yield s, mgr
    mgr.cleanup()
    s.cleanup()


@pytest.fixture
def variant(request, variant_server):
    server, mgr = variant_server
    satchel = mgr.get()
    report_logs_of(request.node, satchel)   # its log goes into failure reports
    clients = []

    def _connect(user="alice"):
        c = connect_user(server, user)
        clients.append(c)
        return c

    yield Env(server, satchel, _connect, server.privileged, server.offline)
    for c in clients:
        c.close()


# -- shared scenarios ------------------------------------------------------------------------
def relay_live(env):
    alice, bob = env.connect("alice"), env.connect("bob")
    slot, expected = upload_image(alice, 640, 480, "holiday.jpg", caption="the beach")
    rid = send_relay(alice, [BOB], slot.get_url, caption="the beach")
    expect_receipt(alice, rid)
    msg = bob.wait_for_message(is_relay_of(slot.get_url), timeout=DELIVERY_TIMEOUT)
    return check_relay_message(msg, slot.get_url, expected, ALICE, privileged=env.privileged)


def relay_to_offline_then_login(env, wait_before_login=2.0, interrupt=None):
    """Relay to bob while he is offline (he logged out properly), then log him in.

    interrupt(mark), when given, breaks Satchel's link while bob is away, calling
    mark() once the old link is gone and before the new one comes; bob then logs
    in only once Satchel, connected anew, has had a message of the relay bounce.
    Were he to log in at the very moment Satchel sends, he would get that message
    from Satchel's own JID: the designed route for a recipient nobody has seen
    online yet on a server that keeps no offline messages (it can bounce, where a
    message as the sender could vanish)."""
    alice = env.connect("alice")
    bob = env.connect("bob")
    bob.disconnect()
    slot, expected = upload_image(alice, 300, 200, "later.png", fmt="PNG", caption="for later")
    rid = send_relay(alice, [BOB], slot.get_url, caption="for later")
    expect_receipt(alice, rid)
    time.sleep(wait_before_login)      # the server stores, bounces or drops it meanwhile
    if interrupt is not None:
        relay = relay_id_of(env.satchel, rid)
        since = []
        interrupt(lambda: since.append(log_size(env.satchel)))
        wait_for_a_bounce(env.satchel, relay, since[0], timeout=RETRY_TIMEOUT)
    bob.reconnect()
    timeout = DELIVERY_TIMEOUT if env.offline else RETRY_TIMEOUT
    msg = bob.wait_for_message(is_relay_of(slot.get_url), timeout=timeout)
    return check_relay_message(msg, slot.get_url, expected, ALICE, privileged=env.privileged)


# -- discovery and receipt ----------------------------------------------------------------------
def test_disco_lists_multicast_addressing(satchel, alice):
    assert NS_ADDRESS in alice.disco_info(COMPONENT_JID).features


def test_receipt_answers_the_request_id(env):
    alice, bob = env.connect("alice"), env.connect("bob")
    slot, _ = upload_image(alice, 64, 64, "tiny.jpg")
    rid = f"m1-{time.monotonic_ns()}"
    answer = expect_receipt(alice, send_relay(alice, [BOB], slot.get_url, id=rid))
    m = answer.message
    assert m.get("from") == COMPONENT_JID
    assert m.get("to", "").split("/")[0] == ALICE
    assert m.find("{urn:xmpp:receipts}received").get("id") == rid
    assert m.get("type") != "error"
    bob.wait_for_message(is_relay_of(slot.get_url), timeout=DELIVERY_TIMEOUT)


# -- delivery --------------------------------------------------------------------------------
def test_live_delivery(env):
    relay_live(env)


def test_live_delivery_variant(variant):
    summary = relay_live(variant)
    assert summary.sender_as == ("sender" if variant.privileged else "component")


def test_delivery_to_several_recipients(env):
    alice, bob, carol = env.connect("alice"), env.connect("bob"), env.connect("carol")
    slot, expected = upload_image(alice, 200, 400, "tall.jpg")
    rid = send_relay(alice, [("to", BOB), ("cc", CAROL)], slot.get_url)
    expect_receipt(alice, rid)
    for client in (bob, carol):
        msg = client.wait_for_message(is_relay_of(slot.get_url), timeout=DELIVERY_TIMEOUT)
        check_relay_message(msg, slot.get_url, expected, ALICE, privileged=env.privileged)


def test_non_image_file_gets_no_thumbnail(env):
    alice, bob = env.connect("alice"), env.connect("bob")
    data = b"%PDF-1.4\n" + bytes(range(256)) * 8
    slot = upload(alice, data, "notes.pdf", "application/pdf")
    expect_receipt(alice, send_relay(alice, [BOB], slot.get_url))
    msg = bob.wait_for_message(is_relay_of(slot.get_url), timeout=DELIVERY_TIMEOUT)
    check_relay_message(msg, slot.get_url, ExpectedFile(data, "notes.pdf", "application/pdf"),
                        ALICE, privileged=env.privileged, expect_thumbnail=False)


def test_delivery_to_recipient_who_logs_in_later(env):
    """The server's offline storage keeps the relay message until bob logs in."""
    relay_to_offline_then_login(env)


def test_delivery_to_recipient_who_logs_in_later_variant(variant):
    """With offline storage: stored by the server. Without: the server bounced it
    (no privilege) or dropped it silently (Prosody + mod_privilege), or Satchel held
    it because it saw bob go offline; either way it arrives once bob is back."""
    relay_to_offline_then_login(variant)


@only_variants(offline=False)
def test_delivery_after_the_server_dropped_it(variant):
    """No offline storage: bob is offline for a while (long enough for bounces and
    a first retry), then comes back and gets the message from Satchel's outbox."""
    relay_to_offline_then_login(variant, wait_before_login=5.0)


@only_variants(offline=False)
def test_delivery_survives_a_satchel_restart(variant):
    """The relay is durable once receipted: Satchel restarts while bob is offline
    and the restarted process delivers it, as alice where the server grants the
    privilege."""
    def restart_satchel(mark):
        variant.satchel.stop()
        mark()
        variant.satchel.start()

    relay_to_offline_then_login(variant, wait_before_login=1.0, interrupt=restart_satchel)


@only_variants(offline=False)
def test_delivery_survives_a_restart_of_the_xmpp_server(variant):
    """The XMPP server restarts while bob is offline and the message is owed:
    Satchel reconnects by itself and delivers it when bob is back."""
    from harness.client import wait_component

    def restart_server(mark):
        mark()
        variant.server.restart()
        wait_component(variant.server, satchel=variant.satchel)

    relay_to_offline_then_login(variant, wait_before_login=1.0, interrupt=restart_server)


def test_variant_server_advertises_offline_storage(variant):
    """Harness check: `msgoffline` in the domain's disco#info iff offline storage is on."""
    alice = variant.connect("alice")
    assert ("msgoffline" in alice.disco_info(variant.server.domain).features) == variant.offline


# -- refusals ----------------------------------------------------------------------------------
def assert_nothing_delivered(client, url, seconds=2.0):
    time.sleep(seconds)
    got = client.messages_matching(is_relay_of(url))
    assert not got, f"{client.jid} got a refused relay: {got}"


def other_host(url, netloc="files.example.org:8443"):
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.mark.parametrize("which", ["unknown-id", "other-host", "not-uploaded-yet"])
def test_unknown_url_is_item_not_found(env, which):
    alice = env.connect("alice")
    if which == "unknown-id":
        url = f"{env.satchel.public_url}/file/{'0' * 32}/nothing.jpg"
    elif which == "other-host":
        slot, _ = upload_image(alice, 64, 64, "mine.jpg")
        url = other_host(slot.get_url)
    else:
        url = alice.request_slot("pending.jpg", 1000, "image/jpeg").get_url
    rid = send_relay(alice, [BOB], url)
    expect_error(alice, rid, "item-not-found")


def test_someone_elses_file_is_forbidden(env):
    alice, bob = env.connect("alice"), env.connect("bob")
    slot, _ = upload_image(bob, 64, 64, "bobs.jpg")
    rid = send_relay(alice, [CAROL], slot.get_url)
    expect_error(alice, rid, "forbidden")


@pytest.mark.parametrize("count", [51, 10_000])
def test_too_many_recipients_is_not_acceptable(env, count):
    alice, bob = env.connect("alice"), env.connect("bob")
    slot, _ = upload_image(alice, 64, 64, "many.jpg")
    recipients = [BOB] + [f"{i}@localhost" for i in range(count - 1)]
    rid = send_relay(alice, recipients, slot.get_url)
    expect_error(alice, rid, "not-acceptable", timeout=30)
    assert_nothing_delivered(bob, slot.get_url)
    # Satchel is still there for everyone.
    assert alice.ping(COMPONENT_JID)


@pytest.mark.satchel_config(fresh=True)
def test_fifty_recipients_are_accepted(env, satchel_manager):
    """The default limit is inclusive. 49 of them have no account: their bounces stay
    in this Satchel's outbox, so the next test gets a new Satchel."""
    try:
        alice, bob = env.connect("alice"), env.connect("bob")
        slot, expected = upload_image(alice, 64, 64, "fifty.jpg")
        recipients = [BOB] + [f"nobody{i}@localhost" for i in range(49)]
        expect_receipt(alice, send_relay(alice, recipients, slot.get_url))
        msg = bob.wait_for_message(is_relay_of(slot.get_url), timeout=DELIVERY_TIMEOUT)
        check_relay_message(msg, slot.get_url, expected, ALICE, privileged=env.privileged)
    finally:
        satchel_manager.invalidate()


@pytest.mark.parametrize("recipients", [["bob@example.org"], [BOB, "mallory@example.net"]],
                         ids=["foreign", "one-foreign-among-local"])
def test_recipient_in_a_foreign_domain_is_not_allowed(env, recipients):
    alice, bob = env.connect("alice"), env.connect("bob")
    slot, _ = upload_image(alice, 64, 64, "local-only.jpg")
    rid = send_relay(alice, recipients, slot.get_url)
    expect_error(alice, rid, "not-allowed")
    assert_nothing_delivered(bob, slot.get_url)


@pytest.mark.satchel_config(fresh=True)
def test_more_than_30_relays_a_minute_is_policy_violation(env, satchel_manager):
    """30 relays within a minute are fine; the 31st is refused (default limit)."""
    try:
        carol = env.connect("carol")
        env.connect("bob")      # online, so that his server stores none of the 30
        slot, _ = upload_image(carol, 64, 64, "burst.jpg")
        ids = [send_relay(carol, [BOB], slot.get_url) for _ in range(30)]
        for rid in ids:
            expect_receipt(carol, rid, timeout=30)
        rid = send_relay(carol, [BOB], slot.get_url)
        expect_error(carol, rid, "policy-violation")
        # Others are not affected by carol's limit.
        alice = env.connect("alice")
        own, _ = upload_image(alice, 64, 64, "unaffected.jpg")
        expect_receipt(alice, send_relay(alice, [BOB], own.get_url))
    finally:
        satchel_manager.invalidate()    # the next test gets a Satchel with a fresh rate limit


def test_request_without_url_or_addresses_is_refused(env):
    alice = env.connect("alice")
    slot, _ = upload_image(alice, 64, 64, "incomplete.jpg")
    no_url = send_relay(alice, [BOB], None)
    no_addr = send_relay(alice, [], slot.get_url)
    for rid in (no_url, no_addr):
        a = wait_relay_answer(alice, rid)
        assert a.kind == "error", f"accepted an incomplete request: {a}"
        assert a.condition in ("bad-request", "item-not-found", "not-acceptable"), str(a)
    assert alice.ping(COMPONENT_JID)


# -- delete after download -------------------------------------------------------------------
@pytest.mark.satchel_config(relay={"delete_after_download": True}, fresh=True)
def test_file_is_deleted_once_every_recipient_downloaded_it(env):
    """With relay.delete_after_download, each recipient gets a personal URL; the
    file goes once each of them has fetched it to the end, and not before."""
    import requests

    alice, bob, carol = env.connect("alice"), env.connect("bob"), env.connect("carol")
    slot, expected = upload_image(alice, 320, 240, "once.jpg")
    expect_receipt(alice, send_relay(alice, [BOB, CAROL], slot.get_url))
    from harness.relay import bodies

    def personal_relay(m):
        return m.get("type") != "error" and any(b.startswith(slot.get_url) for b in bodies(m))

    urls = []
    for client in (bob, carol):
        msg = client.wait_for_message(personal_relay, timeout=DELIVERY_TIMEOUT)
        body = msg.find("{jabber:client}body").text
        assert body.startswith(slot.get_url + "?r="), body
        urls.append(body)
    assert urls[0] != urls[1], "each recipient has a URL of their own"
    # A partial read is not a download.
    partial = requests.get(urls[0], headers={"Range": "bytes=0-9"}, timeout=15)
    assert partial.status_code == 206
    assert requests.get(urls[0], timeout=15).content == expected.data
    assert requests.head(slot.get_url, timeout=15).status_code == 200, "carol has not downloaded yet"
    assert requests.get(urls[1], timeout=15).content == expected.data
    deadline = time.monotonic() + 5
    while requests.head(slot.get_url, timeout=15).status_code != 404:
        assert time.monotonic() < deadline, "the file outlived its last awaited download"
        time.sleep(0.2)
