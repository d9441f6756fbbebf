"""Abuse over XMPP: what a hostile user can send through a real server, and
what they get back.

- IQs with no or two children: bad-request. Prosody answers them itself in
  the component's name and never routes them; ejabberd passes them on and
  Satchel answers.
- Huge attribute values: an answer with the right condition, the link stays.
- Users of a domain Satchel does not serve: not-allowed, for slots and relays.
- Spoofed answers: another recipient of the same relay forging a bounce for
  someone else's message, or answering Satchel's query to its server.
- A flood of 10,000 slot requests from one user: the allowance, then
  resource-constraint with a retry stamp; other users are served meanwhile
  and Satchel's memory stays flat.

Satchel's own handling of what the servers filter out is covered by the
router's unit tests (src/xmpp/router.rs)."""

import datetime as dt
import threading
import time

import pytest

from harness import COMPONENT_JID
from harness.client import NS_STANZAS, NS_UPLOAD, retry_stamp
from harness.relay import expect_error, expect_receipt, is_relay_of, send_relay, upload_image
from harness.util import wait_until

BOB, CAROL = "bob@localhost", "carol@localhost"
REQUEST = f"<request xmlns='{NS_UPLOAD}' filename='a.bin' size='10'/>"


def condition_of(answer):
    error = answer.find("{jabber:client}error")
    assert error is not None, f"not an error: {answer}"
    names = [c.tag.split("}")[1] for c in error if c.tag.startswith(f"{{{NS_STANZAS}}}")
             and c.tag != f"{{{NS_STANZAS}}}text"]
    return error.get("type"), names[0]


def rss_kib(satchel):
    with open(f"/proc/{satchel.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def assert_no_panic(satchel):
    assert satchel.running(), satchel.logs(40)
    assert "panicked" not in satchel.logs(2000)


# -- IQs with no or several children ------------------------------------------------
@pytest.mark.parametrize("children", ["", REQUEST + REQUEST, REQUEST + "<ping xmlns='urn:xmpp:ping'/>"],
                         ids=["none", "two-requests", "request-and-ping"])
def test_iq_without_exactly_one_child_is_a_bad_request(satchel, alice, server, children):
    iq_id = f"children-{time.monotonic_ns()}"
    answer = alice.raw_iq_answers(
        [f"<iq type='get' id='{iq_id}' to='{COMPONENT_JID}'>{children}</iq>"], timeout=5)[iq_id]
    # What the user sees is the same on both servers...
    assert answer.get("from") == COMPONENT_JID
    assert condition_of(answer) == ("modify", "bad-request")
    # ...but Prosody answers in the component's name and never routes it to
    # Satchel, while ejabberd passes it on and Satchel answers.
    assert (iq_id in satchel.logs(50)) == (server.kind != "prosody"), satchel.logs(10)
    assert alice.request_slot("after.bin", 10).put_url
    assert_no_panic(satchel)


# -- huge attribute values ----------------------------------------------------------
HUGE = "9" * 100_000


@pytest.mark.parametrize("request_xml, condition", [
    (f"<request xmlns='{NS_UPLOAD}' filename='a.bin' size='{HUGE}'/>", "bad-request"),
    (f"<request xmlns='{NS_UPLOAD}' filename='a.bin' size='10' content-type='{HUGE}'/>",
     "bad-request"),
    (f"<request xmlns='{NS_UPLOAD}' filename='a.bin' size='10' x='{HUGE}'/>", None),
    (f"<request xmlns='{NS_UPLOAD}' filename='a.bin' size='10'><x y='{HUGE}'/></request>", None),
], ids=["size", "content-type", "unknown-attribute", "unknown-child"])
def test_huge_attribute_values_get_an_answer(satchel, alice, request_xml, condition):
    iq_id = f"huge-{time.monotonic_ns()}"
    answer = alice.raw_iq_answers(
        [f"<iq type='get' id='{iq_id}' to='{COMPONENT_JID}'>{request_xml}</iq>"],
        timeout=10)[iq_id]
    if condition is None:
        # What Satchel does not read does not matter: the slot is granted.
        assert answer.get("type") == "result", answer
        assert answer.find(f"{{{NS_UPLOAD}}}slot") is not None
    else:
        assert condition_of(answer) == ("modify", condition)
    assert "link to the XMPP server lost" not in satchel.logs(400)
    assert alice.request_slot("after.bin", 10).put_url


def test_huge_id_is_echoed_in_the_answer(satchel, alice):
    iq_id = "i" * 100_000
    answer = alice.raw_iq_answers(
        [f"<iq type='get' id='{iq_id}' to='{COMPONENT_JID}'>{REQUEST}</iq>"], timeout=10)[iq_id]
    assert answer.get("type") == "result"


# -- other domains ----------------------------------------------------------------------
@pytest.mark.satchel_config(limits={"allowed_domains": ["example.org"]}, fresh=True)
def test_relay_from_a_user_of_another_domain_is_not_allowed(satchel, alice):
    # The refusal comes before the URL is looked at: no upload needed.
    rid = send_relay(alice, [BOB], "https://upload.localhost/file/00/a.jpg")
    expect_error(alice, rid, "not-allowed")


# -- spoofed answers --------------------------------------------------------------------
def bounce(message_id):
    return (f"<message type='error' to='{COMPONENT_JID}' id='{message_id}'>"
            f"<error type='cancel'><item-not-found xmlns='{NS_STANZAS}'/></error></message>")


def test_another_recipient_cannot_bounce_someone_elses_message(satchel, server, connect):
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    slot, _ = upload_image(alice, 64, 64, "shared.jpg")
    since = alice.mark()
    rid = send_relay(alice, [("to", BOB), ("to", CAROL)], slot.get_url)
    expect_receipt(alice, rid, since=since)
    mine = carol.wait_for_message(is_relay_of(slot.get_url), timeout=15)
    bob.wait_for_message(is_relay_of(slot.get_url), timeout=15)
    # Message ids are <relay>-<recipient index>-<attempt>: carol sees the stem.
    stem, index, attempt = mine.get("id").rsplit("-", 2)
    bobs = f"{stem}-{1 - int(index)}-{attempt}"
    carol.send_raw(bounce(bobs))
    # Her server's word as bob does not pass either.
    carol.send_raw(bounce(bobs).replace("<message ", f"<message from='{BOB}' ", 1))
    if server.kind == "prosody":
        # Prosody puts carol's own JID over the forged one: Satchel gets a second
        # bounce from carol. Her stanzas arrive in order: both are in once this is answered.
        assert carol.ping(COMPONENT_JID)
        bounces = 2
    else:
        # ejabberd ends carol's stream for the forged 'from' (invalid-from): it goes nowhere.
        bounces = 1
    wait_until(lambda: satchel.logs(200).count("bounce from someone other than the recipient")
               == bounces, 10, lambda: satchel.logs(40))
    # Whatever Satchel sent alice about them went out before the answer to this ping.
    assert alice.ping(COMPONENT_JID)
    failures = [m for m in alice.messages[since:]
                if m.get("type") == "error" and m.get("id") == rid]
    assert not failures, "alice was told bob's delivery failed"
    assert_no_panic(satchel)


def test_a_user_cannot_answer_the_query_to_the_server(satchel, alice):
    for n in range(1, 4):
        alice.send_raw(
            f"<iq type='result' to='{COMPONENT_JID}' id='satchel-server-info-{n}'>"
            "<query xmlns='http://jabber.org/protocol/disco#info'>"
            "<feature var='msgoffline'/></query></iq>")
    wait_until(lambda: "disco#info query from someone else; ignored" in satchel.logs(200), 10,
               lambda: satchel.logs(40))
    assert alice.ping(COMPONENT_JID)


# -- a flood of slot requests -------------------------------------------------------------
FLOOD = 10_000
ALLOWANCE = 50


@pytest.mark.satchel_config(limits={"slot_requests_per_minute": ALLOWANCE}, fresh=True)
def test_ten_thousand_slot_requests_from_one_user(satchel, alice, bob):
    alice.request_slot("warm-up.bin", 10)  # the first request allocates what every later one reuses
    rss_before = rss_kib(satchel)
    flood = [f"<iq type='get' id='flood-{i}' to='{COMPONENT_JID}'>"
             f"<request xmlns='{NS_UPLOAD}' filename='f{i}.bin' size='10'/></iq>"
             for i in range(FLOOD)]
    result = {}
    flooding = threading.Thread(
        target=lambda: alice.raw_iq_answers(flood, timeout=60, answers=result))
    t0, started = time.monotonic(), dt.datetime.now(dt.timezone.utc)
    flooding.start()
    # bob is served while alice floods: once Satchel has begun answering her.
    wait_until(lambda: result, 30, "no answer to the flood")
    assert len(result) < FLOOD, "the flood was over before bob asked"
    t_bob = time.monotonic()
    assert bob.request_slot("bobs.bin", 10, timeout=10).put_url
    bob_latency = time.monotonic() - t_bob
    flooding.join()
    elapsed = time.monotonic() - t0
    print(f"{len(result)} answers in {elapsed:.1f} s; bob served in {bob_latency:.2f} s")

    assert len(result) == FLOOD, f"only {len(result)} of {FLOOD} answered"
    granted = [a for a in result.values() if a.get("type") == "result"]
    refused = [a for a in result.values() if a.get("type") == "error"]
    assert len(granted) == ALLOWANCE - 1, "the warm-up request counts too"
    now = dt.datetime.now(dt.timezone.utc)
    for answer in refused:
        assert condition_of(answer) == ("wait", "resource-constraint")
        # A minute from the refusal (in whole seconds), which came during the flood.
        stamp = retry_stamp(answer.find("{jabber:client}error"))
        assert started + dt.timedelta(seconds=59) <= stamp <= now + dt.timedelta(seconds=60), stamp
    assert bob_latency < 5
    grown = rss_kib(satchel) - rss_before
    assert grown < 16 * 1024, f"Satchel's RSS grew by {grown} KiB"
    assert bob.request_slot("bobs-again.bin", 10).put_url
    assert_no_panic(satchel)
