"""Real clients, each with its own XEP-0363 code, upload through Satchel and
show what it relays, on Prosody and ejabberd: go-sendxmpp (command line) and
Profanity (a terminal client, driven in tmux) from Debian's packages, and
Poezio 0.18 from PyPI (in tmux too, as an unprivileged user).

Each finds `upload.localhost` by disco (the servers' own upload modules are
off), logs in over STARTTLS and uploads over HTTPS, verifying both against the
session's throwaway CA and nothing else. What a user relies on: the upload
lands in Satchel (its URL, its bytes), the recipient's client gets the URL,
and a message Satchel relays reaches the client, also one sent while it was
offline. Profanity also runs the XEP-0050 commands a user has."""

import os
import uuid

import pytest
import requests

from harness.pki import session_pki
from harness.realclients import GoSendxmpp, Libervia, Poezio, Profanity
from harness.relay import expect_receipt, send_relay

TIMEOUT = 30

def needs(client, what):
    return pytest.mark.skipif(
        not client.installed() and not os.environ.get("SATCHEL_REQUIRE_CLIENTS"),
        reason=f"{what} is not installed (.ci/run installs it)")


needs_go_sendxmpp = needs(GoSendxmpp, "go-sendxmpp (Debian package)")
needs_profanity = needs(Profanity, "profanity and tmux (Debian packages)")
needs_poezio = needs(Poezio, "poezio 0.18 (PyPI, in /opt/satchel-test-clients/poezio)")
needs_libervia = needs(Libervia, "libervia-backend, libervia-cli and dbus (Debian packages)")


@pytest.fixture
def pki():
    return session_pki()


@pytest.fixture
def https_satchel(satchel_manager, pki):
    """Satchel serving HTTPS with the session's localhost certificate."""
    return satchel_manager.get({"http": {"tls_cert": str(pki.cert), "tls_key": str(pki.key)}})


def unique_file(tmp_path, suffix=".txt"):
    """A file with a name and bytes of its own: (path, bytes)."""
    name = f"from-client-{uuid.uuid4().hex[:8]}{suffix}"
    data = f"uploaded by a real client {uuid.uuid4()}\n".encode()
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def body_of(message):
    body = message.find("{jabber:client}body")
    return "" if body is None else (body.text or "")


def received_url(client, satchel, filename):
    """The URL of `filename` in a message `client` receives, which must be Satchel's."""
    prefix = f"{satchel.public_url}/file/"
    message = client.wait_for_message(lambda m: body_of(m).endswith(f"/{filename}"),
                                      timeout=TIMEOUT)
    url = body_of(message)
    assert url.startswith(prefix), f"{url} is not a URL of Satchel ({prefix})"
    return url


def satchel_url_in(text, satchel, filename):
    """The URL of Satchel's that ends with `filename`, in a client's output."""
    prefix = f"{satchel.public_url}/file/"
    urls = [word for word in text.split() if word.startswith(prefix)
            and word.endswith(f"/{filename}")]
    assert urls, f"no URL of Satchel ({prefix}...) for {filename} in:\n{text}"
    return urls[-1]


def fetch(url, pki):
    r = requests.get(url, verify=str(pki.ca), timeout=TIMEOUT)
    assert r.status_code == 200, (url, r.status_code, r.text)
    return r.content


def relayed_file(alice, satchel, pki, recipient):
    """alice uploads a file (slixmpp) and asks Satchel to relay it to
    `recipient`; returns its URL once Satchel has the relay stored."""
    data = f"relayed {uuid.uuid4()}".encode()
    slot = alice.request_slot(f"relayed-{uuid.uuid4().hex[:8]}.txt", len(data), "text/plain")
    r = requests.put(slot.put_url, data=data, verify=str(pki.ca), timeout=TIMEOUT,
                     headers={**slot.put_headers, "Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    expect_receipt(alice, send_relay(alice, [recipient], slot.get_url))
    return slot.get_url


# -- go-sendxmpp --------------------------------------------------------------------
@needs_go_sendxmpp
def test_go_sendxmpp_uploads_over_verified_tls(https_satchel, pki, tmp_path):
    """alice's go-sendxmpp uploads; bob's go-sendxmpp (listening, or picking
    it up from offline storage) prints the URL."""
    path, data = unique_file(tmp_path)
    GoSendxmpp(https_satchel.server, "alice", pki, tmp_path).upload(path, "bob@localhost")
    bob = GoSendxmpp(https_satchel.server, "bob", pki, tmp_path).listen()
    try:
        bob.wait_received(f"/{path.name}")
        url = satchel_url_in(bob.received(), https_satchel, path.name)
    finally:
        bob.close()
    assert fetch(url, pki) == data


@needs_go_sendxmpp
def test_go_sendxmpp_gets_a_relay_sent_while_it_was_offline(https_satchel, alice, pki,
                                                             tmp_path):
    url = relayed_file(alice, https_satchel, pki, "bob@localhost")
    listener = GoSendxmpp(https_satchel.server, "bob", pki, tmp_path).listen()
    try:
        listener.wait_received(url)
    finally:
        listener.close()


# -- Profanity and Poezio (terminal clients) -------------------------------------------
def closed_after(open_session):
    """A fixture body: a factory of sessions (`open_session(user)`), each
    closed after the test."""
    sessions = []

    def start(user):
        sessions.append(open_session(user))
        return sessions[-1]

    yield start
    for session in sessions:
        session.close()


@pytest.fixture
def profanity(https_satchel, pki, tmp_path):
    """A factory of Profanity sessions, closed after the test."""
    yield from closed_after(lambda user: Profanity(https_satchel.server, user, pki, tmp_path))


@pytest.fixture
def poezio(https_satchel, pki):
    """A factory of Poezio sessions, closed after the test."""
    yield from closed_after(lambda user: Poezio(https_satchel.server, user, pki))


@needs_profanity
def test_profanity_uploads_over_verified_tls(https_satchel, profanity, pki, tmp_path):
    """alice's Profanity uploads; bob's Profanity shows the URL."""
    path, data = unique_file(tmp_path)
    bob = profanity("bob")
    screen = profanity("alice").send_file("bob@localhost", path)
    url = satchel_url_in(screen, https_satchel, path.name)
    bob.open_chat("alice@localhost")
    bob.wait_for(url)
    assert fetch(url, pki) == data


@needs_profanity
def test_profanity_shows_a_message_satchel_relays(https_satchel, profanity, alice, pki):
    bob = profanity("bob")
    url = relayed_file(alice, https_satchel, pki, "bob@localhost")
    # Without XEP-0356 privileges Satchel sends from its own JID (with ofrom).
    bob.open_chat("upload.localhost")
    bob.wait_for(url)


@needs_profanity
def test_profanity_runs_the_users_commands(https_satchel, profanity, pki, tmp_path):
    alice = profanity("alice")
    # On a loaded machine Profanity, just logged in, was seen to drop the
    # first command it was given (nothing shown, nothing reached Satchel):
    # the command is given again until its answer shows.
    usage = f"Largest file (bytes): {https_satchel.max_file_size}"
    for attempt in range(3):
        alice.type("/cmd exec usage upload.localhost")
        try:
            alice.wait_for(usage, timeout=20)
            break
        except AssertionError:
            if attempt == 2:
                raise
    path, _ = unique_file(tmp_path)
    url = satchel_url_in(alice.send_file("bob@localhost", path), https_satchel, path.name)
    assert requests.get(url, verify=str(pki.ca), timeout=TIMEOUT).status_code == 200
    alice.type("/cmd exec delete upload.localhost")
    alice.wait_for("Or its URL")
    alice.type(f"/field2 {url}")
    alice.type("/form submit")
    alice.wait_for(f"Deleted {path.name}")
    assert requests.get(url, verify=str(pki.ca), timeout=TIMEOUT).status_code == 404


@needs_poezio
def test_poezio_uploads_over_verified_tls(https_satchel, poezio, pki, tmp_path):
    """alice's Poezio uploads; bob's Poezio shows the URL."""
    path, data = unique_file(tmp_path)
    bob = poezio("bob")
    screen = poezio("alice").send_file("bob@localhost", path)
    url = satchel_url_in(screen, https_satchel, path.name)
    bob.open_chat("alice@localhost")
    bob.wait_for(url)
    assert fetch(url, pki) == data


@needs_poezio
def test_poezio_shows_a_message_satchel_relays(https_satchel, poezio, alice, pki):
    bob = poezio("bob")
    url = relayed_file(alice, https_satchel, pki, "bob@localhost")
    bob.open_chat("upload.localhost")
    bob.wait_for(url)


# -- Libervia -------------------------------------------------------------------------
@needs_libervia
def test_libervia_uploads_over_verified_tls(https_satchel, bob, pki, tmp_path):
    """Libervia names a type in its slot request and PUTs without one (the 415
    Satchel used to answer). Its receiving side is not tested: it drops
    Satchel's relayed message (xeps/xep-0446.md says why)."""
    path, data = unique_file(tmp_path, suffix=".bin")
    libervia = Libervia(https_satchel.server, "alice", pki, tmp_path)
    try:
        url = libervia.upload(path)
        assert url.startswith(f"{https_satchel.public_url}/file/"), url
        libervia.send("bob@localhost", url)
    finally:
        libervia.close()
    assert received_url(bob, https_satchel, path.name) == url
    assert fetch(url, pki) == data
