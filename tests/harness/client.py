"""A small synchronous-feeling XMPP client for the tests, built on slixmpp.

slixmpp is asyncio-based; each Client runs its own event loop in a background
thread and the public methods block until the answer arrives (or a timeout).
It connects in plaintext to a loopback c2s port (no TLS; PLAIN allowed).

    c = Client("alice@localhost", "pw", port).connect()
    slot = c.request_slot("a.txt", 5, "text/plain")   # -> Slot(put_url, get_url, put_headers)
    c.close()

Errors come back as XmppError with .condition, .type, .text and .error (the
<error/> element), so tests can look at extra children (<retry stamp=…/>,
<file-too-large><max-file-size>…).

Every message and presence the client receives is kept (as an ElementTree
element, across reconnects) for tests that wait for one:

    bob.wait_for_message(lambda m: m.findtext(body_tag) == url, timeout=10)
    alice.send_raw("<message to='upload.localhost' id='m1'>…</message>")
    bob.disconnect(); …; bob.reconnect()"""

import asyncio
import datetime as dt
import logging
import os
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath
from slixmpp.xmlstream.matcher.base import MatcherBase

from . import COMPONENT_JID

NS_UPLOAD = "urn:xmpp:http:upload:0"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_DATA = "jabber:x:data"
NS_PING = "urn:xmpp:ping"

log = logging.getLogger("harness.client")


class XmppError(Exception):
    """An IQ answered with type='error'."""

    def __init__(self, iq_xml):
        self.iq = iq_xml
        self.error = iq_xml.find("{jabber:client}error")
        if self.error is None:  # be lenient about the namespace
            self.error = next((c for c in iq_xml if c.tag.endswith("}error") or c.tag == "error"), None)
        self.type = self.error.get("type") if self.error is not None else None
        self.condition = None
        self.text = None
        self.app = []  # application-specific children of <error/>
        if self.error is not None:
            for child in self.error:
                if child.tag == f"{{{NS_STANZAS}}}text":
                    self.text = child.text
                elif child.tag.startswith(f"{{{NS_STANZAS}}}"):
                    self.condition = child.tag.split("}", 1)[1]
                else:
                    self.app.append(child)
        super().__init__(f"{self.type}/{self.condition}: {self.text!r} "
                         f"{[ET.tostring(a, encoding='unicode') for a in self.app]}")

    def find(self, path, namespaces=None):
        """Find an element below <error/> (ElementTree path syntax)."""
        if self.error is None:
            return None
        return self.error.find(path, namespaces)

    def __str__(self):
        return f"XmppError({super().__str__()}) in {ET.tostring(self.iq, encoding='unicode')}"


class XmppTimeout(Exception):
    pass


@dataclass
class Slot:
    put_url: str
    get_url: str
    put_headers: dict = field(default_factory=dict)
    xml: object = None

    def __iter__(self):  # allows `put_url, get_url, headers = client.request_slot(...)`
        return iter((self.put_url, self.get_url, self.put_headers))


@dataclass
class DiscoInfo:
    identities: list  # of (category, type, name)
    features: set
    forms: list       # of {"FORM_TYPE": ..., var: [values]}
    xml: object = None

    def form(self, form_type):
        for f in self.forms:
            if f.get("FORM_TYPE") == [form_type]:
                return f
        return None


def _to_et(stanza_xml):
    """A standalone copy of a slixmpp stanza's XML element."""
    return ET.fromstring(ET.tostring(stanza_xml))


def stanza_error(stanza):
    """(type, condition, text) of a stanza's <error/>, or None when it has none."""
    err = stanza.find("{jabber:client}error")
    if err is None:
        return None
    cond = text = None
    for child in err:
        if child.tag == f"{{{NS_STANZAS}}}text":
            text = child.text
        elif child.tag.startswith(f"{{{NS_STANZAS}}}"):
            cond = child.tag.split("}", 1)[1]
    return err.get("type"), cond, text


def xml_str(el):
    return ET.tostring(el, encoding="unicode")


def parse_xep0082(stamp):
    """An aware datetime from a XEP-0082 DateTime (2026-11-25T17:00:00Z, or with
    +00:00 and fractions)."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def retry_stamp(error):
    """The time in the XEP-0363 <retry stamp/> of an <error/> element (or XmppError)."""
    retry = error.find(f"{{{NS_UPLOAD}}}retry")
    assert retry is not None, f"no <retry/> in {xml_str(error) if ET.iselement(error) else error}"
    return parse_xep0082(retry.get("stamp"))


class _AnswersWithIdPrefix(MatcherBase):
    """IQ results and errors whose id starts with a prefix; never requests, so
    slixmpp still answers the IQ requests others send (Satchel's probes)."""

    def match(self, stanza):
        return (stanza.name == "iq" and stanza["type"] in ("result", "error")
                and stanza["id"].startswith(self._criteria))


class Client:
    def __init__(self, jid, password, port, host="127.0.0.1", timeout=15.0,
                 send_presence=True):
        self.jid = jid
        self.password = password
        self.host = host
        self.port = port
        self.timeout = timeout
        self.send_initial_presence = send_presence
        self.full_jid = None            # the bound JID of the current session
        self.messages = []              # every <message/> received, oldest first
        self.presences = []             # every <presence/> received
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name=f"xmpp-{jid}", daemon=True)
        self._thread.start()
        self.xmpp = None

    # -- loop plumbing -------------------------------------------------------
    def _run_loop(self):
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coro, timeout=None):
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout=(timeout or self.timeout) + 5)
        except TimeoutError:
            fut.cancel()
            raise XmppTimeout(f"{self.jid}: no answer within {timeout or self.timeout}s")

    # -- connection ----------------------------------------------------------
    def connect(self):
        self._call(self._connect())
        return self

    async def _connect(self):
        x = slixmpp.ClientXMPP(
            self.jid, self.password,
            plugin_config={"feature_mechanisms": {"unencrypted_plain": True}},
        )
        x.loop = self._loop
        # Plaintext on loopback: never try TLS, and let PLAIN go in the clear.
        x.enable_plaintext = True
        x.enable_starttls = False
        x.enable_direct_tls = False
        x.use_ipv6 = False
        for p in ("xep_0030", "xep_0199", "xep_0004", "xep_0050"):
            x.register_plugin(p)
        # Slixmpp would otherwise answer unknown IQs on our behalf only; nothing else to set.
        started = self._loop.create_future()

        def on_start(_event):
            if not started.done():
                started.set_result(True)

        def on_fail(event):
            if not started.done():
                started.set_exception(RuntimeError(f"{self.jid}: login failed: {event}"))

        x.add_event_handler("session_start", on_start)
        x.add_event_handler("failed_auth", on_fail)
        x.add_event_handler("connection_failed", on_fail)
        # Keep every message and presence, whatever its payload (slixmpp's own
        # "message" event only fires for messages with a <body/>).
        x.register_handler(Callback("satchel-test messages",
                                    MatchXPath("{jabber:client}message"),
                                    lambda st: self._keep(self.messages, st)))
        x.register_handler(Callback("satchel-test presences",
                                    MatchXPath("{jabber:client}presence"),
                                    lambda st: self._keep(self.presences, st)))
        self.xmpp = x
        x.connect(self.host, self.port)
        try:
            await asyncio.wait_for(started, self.timeout)
        except asyncio.TimeoutError:
            x.abort()
            raise XmppTimeout(f"{self.jid}: no session within {self.timeout}s "
                              f"(127.0.0.1:{self.port})")
        self.full_jid = x.boundjid.full
        if self.send_initial_presence:
            x.send_presence()

    def _keep(self, where, stanza):
        el = _to_et(stanza.xml)
        el.set("{urn:satchel:test}received-at", repr(time.monotonic()))
        with self._cond:
            where.append(el)
            self._cond.notify_all()

    def disconnect(self, wait=0.5, send_unavailable=True):
        """End the XMPP session (the user goes offline) but keep the client, its
        event loop and the messages received so far; reconnect() logs in again.

        send_unavailable: say <presence type='unavailable'/> before closing the
        stream, as clients do when they log out. With False the stream just ends;
        the server then makes the unavailable presence itself, but ejabberd 23.01's
        mod_privilege does not forward that one to a privileged component."""
        if self.xmpp is None:
            return
        x = self.xmpp

        async def _disc():
            try:
                if send_unavailable:
                    x.send_presence(ptype="unavailable")
                x.disconnect(wait=wait)
                await asyncio.wait_for(x.disconnected, 5)
            except Exception:
                x.abort()
        try:
            self._call(_disc(), timeout=8)
        finally:
            self.xmpp = None
            self.full_jid = None

    def reconnect(self):
        """Log in again after disconnect() (a new session, a new resource)."""
        if self.xmpp is not None:
            self.disconnect()
        return self.connect()

    @property
    def connected(self):
        return self.xmpp is not None

    # -- messages ------------------------------------------------------------------
    def send_raw(self, xml):
        """Send a stanza given as an XML string (default namespace jabber:client),
        e.g. "<message to='upload.localhost' id='m1'>…</message>"."""
        if self.xmpp is None:
            raise RuntimeError(f"{self.jid} is not connected")
        if not isinstance(xml, str):
            xml = xml_str(xml)
        ET.fromstring(xml)  # fail here, not as a stream error, on a typo

        async def _send():
            self.xmpp.send_raw(xml)
        self._call(_send())

    def wait_for_message(self, predicate=None, timeout=None, since=0):
        """The first message received (from index `since` of self.messages on) for
        which predicate(element) is true, waiting up to `timeout` seconds for it;
        raises XmppTimeout listing what did arrive."""
        return self.wait_for_messages(predicate, 1, timeout, since)[0]

    def wait_for_messages(self, predicate=None, count=1, timeout=None, since=0):
        """The first `count` matching messages (see wait_for_message)."""
        return self._wait(self.messages, predicate, count, timeout, since, "message")

    def wait_for_presence(self, predicate=None, timeout=None, since=0):
        return self._wait(self.presences, predicate, 1, timeout, since, "presence")[0]

    def _wait(self, where, predicate, count, timeout, since, what):
        timeout = self.timeout if timeout is None else timeout
        predicate = predicate or (lambda _m: True)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in where[since:] if predicate(m)]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = "\n  ".join(xml_str(m) for m in where[since:][-10:]) or "(none)"
                    raise XmppTimeout(f"{self.jid}: {len(found)} of {count} matching {what}(s) "
                                      f"within {timeout}s; last received:\n  {seen}")
                self._cond.wait(left)

    def messages_matching(self, predicate=None, since=0):
        """The messages received so far that match (no waiting)."""
        predicate = predicate or (lambda _m: True)
        with self._cond:
            return [m for m in self.messages[since:] if predicate(m)]

    def mark(self):
        """An index into self.messages: pass it as `since` to only look at what comes later."""
        with self._cond:
            return len(self.messages)

    def close(self):
        if not self._thread.is_alive():
            return
        if self.xmpp is not None:
            async def _close():
                try:
                    self.xmpp.disconnect(wait=0.5)
                    await asyncio.wait_for(self.xmpp.disconnected, 3)
                except Exception:
                    self.xmpp.abort()
            try:
                self._call(_close(), timeout=5)
            except Exception:
                pass
            self.xmpp = None

        async def _cancel_all():
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            try:
                self._call(_cancel_all(), timeout=5)
            except Exception:
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- IQ primitives ---------------------------------------------------------
    async def _send_iq(self, to, type_, payload, timeout):
        iq = self.xmpp.Iq()
        iq["type"] = type_
        if to is not None:
            iq["to"] = to
        iq["id"] = uuid.uuid4().hex
        for el in payload:
            iq.append(el)
        try:
            resp = await iq.send(timeout=timeout)
        except IqError as e:
            return _to_et(e.iq.xml)
        except IqTimeout:
            raise XmppTimeout(f"no answer from {to} within {timeout}s to "
                              f"{ET.tostring(iq.xml, encoding='unicode')}")
        return _to_et(resp.xml)

    def iq_raw(self, payload, to=COMPONENT_JID, type_="get", timeout=None):
        """Send an IQ whose children are given as an XML string (or elements or
        None) and return the answer as an ElementTree element, error or not."""
        if payload is None:
            elements = []
        elif isinstance(payload, str):
            wrapper = ET.fromstring(f"<wrapper xmlns='jabber:client'>{payload}</wrapper>")
            elements = list(wrapper)
        elif isinstance(payload, ET.Element):
            elements = [payload]
        else:
            elements = list(payload)
        return self._call(self._send_iq(to, type_, elements, timeout or self.timeout),
                          timeout=timeout)

    def raw_iq_answers(self, stanzas, timeout=None, answers=None):
        """Send IQs given as XML strings, each with an id of its own, in one go
        (as fast as the stream takes them, without waiting for answers), and
        return {id: answer element} for those answered within `timeout`.

        An IQ nobody answers simply has no entry. `answers`: a dict to fill as
        the answers arrive, for another thread to watch."""
        timeout = self.timeout if timeout is None else timeout
        ids = [ET.fromstring(xml).get("id") for xml in stanzas]
        prefix = os.path.commonprefix(ids)
        assert len(set(ids)) == len(ids), "every IQ needs an id of its own"
        answers = {} if answers is None else answers
        done = threading.Event()
        wanted = set(ids)

        def keep(stanza):
            if stanza["id"] in wanted:
                answers[stanza["id"]] = _to_et(stanza.xml)
                if len(answers) == len(wanted):
                    done.set()

        name = f"satchel-test answers {uuid.uuid4().hex}"

        async def _send():
            self.xmpp.register_handler(Callback(name, _AnswersWithIdPrefix(prefix), keep))
            for xml in stanzas:
                self.xmpp.send_raw(xml)
        self._call(_send())
        done.wait(timeout)

        async def _unregister():
            self.xmpp.remove_handler(name)
        self._call(_unregister())
        return dict(answers)

    def iq(self, payload, to=COMPONENT_JID, type_="get", timeout=None):
        """Like iq_raw, but raise XmppError on an error answer."""
        resp = self.iq_raw(payload, to=to, type_=type_, timeout=timeout)
        if resp.get("type") == "error":
            raise XmppError(resp)
        return resp

    # -- helpers ---------------------------------------------------------------
    def _disco_query(self, ns, jid, node):
        """The <query/> of the answer to a disco query in namespace `ns`."""
        q = ET.Element(f"{{{ns}}}query")
        if node:
            q.set("node", node)
        return self.iq(q, to=jid).find(f"{{{ns}}}query")

    def disco_info(self, jid=COMPONENT_JID, node=None):
        query = self._disco_query(NS_DISCO_INFO, jid, node)
        identities = [(i.get("category"), i.get("type"), i.get("name"))
                      for i in query.findall(f"{{{NS_DISCO_INFO}}}identity")]
        features = {f.get("var") for f in query.findall(f"{{{NS_DISCO_INFO}}}feature")}
        forms = []
        for x in query.findall(f"{{{NS_DATA}}}x"):
            form = {}
            for fld in x.findall(f"{{{NS_DATA}}}field"):
                form[fld.get("var")] = [v.text or "" for v in fld.findall(f"{{{NS_DATA}}}value")]
            forms.append(form)
        return DiscoInfo(identities, features, forms, query)

    def disco_items(self, jid=COMPONENT_JID, node=None):
        query = self._disco_query(NS_DISCO_ITEMS, jid, node)
        return [(i.get("jid"), i.get("node"), i.get("name"))
                for i in query.findall(f"{{{NS_DISCO_ITEMS}}}item")]

    def ping(self, jid=COMPONENT_JID, timeout=None):
        """Raises XmppError / XmppTimeout when the ping is not answered with a result."""
        self.iq(ET.Element(f"{{{NS_PING}}}ping"), to=jid, timeout=timeout)
        return True

    def request_slot(self, filename, size, content_type=None, jid=COMPONENT_JID, timeout=None,
                     purpose=None):
        """XEP-0363 slot request. `size` is sent as given (str() of it), so tests
        can send '-1' or 'abc'; `purpose` ('message', 'ephemeral', 'permanent')
        adds the XEP-0363 1.2 purpose element. Returns a Slot; raises XmppError."""
        req = ET.Element(f"{{{NS_UPLOAD}}}request")
        req.set("filename", filename)
        req.set("size", str(size))
        if content_type is not None:
            req.set("content-type", content_type)
        if purpose is not None:
            ET.SubElement(req, f"{{urn:xmpp:http:upload:purpose:0}}{purpose}")
        resp = self.iq(req, to=jid, timeout=timeout)
        slot = resp.find(f"{{{NS_UPLOAD}}}slot")
        if slot is None:
            raise AssertionError(f"no <slot/> in {ET.tostring(resp, encoding='unicode')}")
        put = slot.find(f"{{{NS_UPLOAD}}}put")
        get = slot.find(f"{{{NS_UPLOAD}}}get")
        if put is None or get is None:
            raise AssertionError(f"<slot/> without put/get: {ET.tostring(resp, encoding='unicode')}")
        headers = {h.get("name"): (h.text or "") for h in put.findall(f"{{{NS_UPLOAD}}}header")}
        return Slot(put.get("url"), get.get("url"), headers, slot)


# -- helpers used by tests/conftest.py and examples/demo_client.py ---------------------
def connect_user(server, user="alice", timeout=15.0, send_presence=True):
    """A logged-in Client for one of the server's test users."""
    return Client(f"{user}@{server.domain}", server.users[user], server.c2s_port,
                  timeout=timeout, send_presence=send_presence).connect()


def wait_component(server, timeout=20.0, satchel=None, user="carol"):
    """Wait until the server routes to a connected component (a ping is answered)."""
    deadline = time.monotonic() + timeout
    last = None
    with connect_user(server, user) as probe:
        while time.monotonic() < deadline:
            if satchel is not None and not satchel.running():
                raise RuntimeError(f"satchel exited (code {satchel.process and satchel.process.returncode})"
                                   f"\n{satchel.logs()}")
            try:
                probe.ping(COMPONENT_JID, timeout=3)
                return
            except (XmppError, XmppTimeout) as e:
                last = e
                time.sleep(0.2)
    raise RuntimeError(f"{COMPONENT_JID} not reachable through {server.kind} within {timeout}s: "
                       f"{last}\n{satchel.logs() if satchel else ''}\n{server.logs(20)}")
