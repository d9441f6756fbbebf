"""XEP-0363 slot requests per second, end to end through an XMPP server.

A small raw-socket XMPP client on asyncio (plaintext c2s on loopback, SASL
PLAIN, resource binding, nothing else: no roster, no presence), so that the
load generator costs far less CPU than slixmpp would. Each connection keeps
exactly one slot request in flight (a closed loop); the rate is the number of
answered requests per second of wall time.

    rate = asyncio.run(slot_rate(sessions, "share.localhost", seconds=3))"""

import asyncio
import base64
import itertools
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import quoteattr

NS_STREAM = "http://etherx.jabber.org/streams"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_UPLOAD = "urn:xmpp:http:upload:0"
NS_CLIENT = "jabber:client"


class Session:
    """One logged-in c2s connection."""

    def __init__(self, reader, writer, domain):
        self.reader, self.writer, self.domain = reader, writer, domain
        self._queue = []
        self._parser = None
        self._depth = 0
        self.ids = itertools.count()

    def _restart(self):
        self._parser = ET.XMLPullParser(events=("start", "end"))
        self._depth = 0
        self.writer.write(
            f"<?xml version='1.0'?><stream:stream to='{self.domain}' version='1.0' "
            f"xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAM}'>".encode())

    async def next(self):
        """The next top-level stanza (or stream element) as an Element."""
        while not self._queue:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("stream closed by the server")
            self._parser.feed(data)
            for event, el in self._parser.read_events():
                if event == "start":
                    self._depth += 1
                    if self._depth == 1:
                        self._root = el
                else:
                    self._depth -= 1
                    if self._depth == 1:
                        self._queue.append(el)
                        self._root.remove(el)
        return self._queue.pop(0)

    async def expect(self, tag):
        el = await self.next()
        if el.tag != tag:
            raise RuntimeError(f"expected {tag}, got {ET.tostring(el, encoding='unicode')[:300]}")
        return el

    @classmethod
    async def login(cls, port, user, password, domain="localhost", resource="load",
                    host="127.0.0.1"):
        reader, writer = await asyncio.open_connection(host, port)
        s = cls(reader, writer, domain)
        s._restart()
        features = await s.expect(f"{{{NS_STREAM}}}features")
        mechs = [m.text for m in features.iter(f"{{{NS_SASL}}}mechanism")]
        if "PLAIN" not in mechs:
            raise RuntimeError(f"no SASL PLAIN on port {port}: {mechs}")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        writer.write(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>".encode())
        await s.expect(f"{{{NS_SASL}}}success")
        s._restart()
        await s.expect(f"{{{NS_STREAM}}}features")
        writer.write(f"<iq type='set' id='bind'><bind xmlns='{NS_BIND}'><resource>"
                     f"{resource}</resource></bind></iq>".encode())
        iq = await s.expect(f"{{{NS_CLIENT}}}iq")
        if iq.get("type") != "result":
            raise RuntimeError(f"bind failed: {ET.tostring(iq, encoding='unicode')}")
        return s

    async def request_slot(self, service, size=1024):
        """One slot request; True when a <slot/> came back."""
        iq_id = f"s{next(self.ids)}"
        self.writer.write(
            f"<iq type='get' id='{iq_id}' to={quoteattr(service)}><request xmlns='{NS_UPLOAD}' "
            f"filename='bench-{iq_id}.bin' size='{size}' "
            f"content-type='application/octet-stream'/></iq>".encode())
        while True:
            el = await self.next()
            if el.tag == f"{{{NS_CLIENT}}}iq" and el.get("id") == iq_id:
                if el.get("type") == "result" and el.find(f"{{{NS_UPLOAD}}}slot") is not None:
                    return True
                self.last_error = ET.tostring(el, encoding="unicode")
                return False

    def close(self):
        try:
            self.writer.write(b"</stream:stream>")
            self.writer.close()
        except Exception:
            pass


async def open_sessions(port, users, count, tag="load"):
    """`count` sessions spread round-robin over `users` ({name: password})."""
    names = list(users)
    return await asyncio.gather(*[
        Session.login(port, names[i % len(names)], users[names[i % len(names)]],
                      resource=f"{tag}{i}")
        for i in range(count)])


async def slot_rate(sessions, service, seconds, label=None):
    """Answered slot requests per second with one request in flight per session,
    for about `seconds` seconds. Raises if any request failed."""
    deadline = time.monotonic() + seconds
    counts = [0] * len(sessions)
    failures = []

    async def loop(i, s):
        while time.monotonic() < deadline:
            if not await s.request_slot(service):
                failures.append(s.last_error)
                return
            counts[i] += 1

    start = time.monotonic()
    await asyncio.gather(*[loop(i, s) for i, s in enumerate(sessions)])
    elapsed = time.monotonic() - start
    if failures:
        raise RuntimeError(f"{label or service}: {len(failures)} slot request(s) to {service} "
                           f"failed: {failures[0]}")
    return sum(counts) / elapsed
