"""A real browser (Debian's headless Chromium) uploads from another origin.

The page is served by a Python http.server on another loopback port (another
origin than Satchel's public_url). Its script PUTs with an Authorization header,
which forces a CORS preflight, then GETs the file back and writes the outcome
into the DOM, which the test reads from `chromium --dump-dom`.
`--virtual-time-budget` makes Chromium wait for the page's fetches before dumping.
Runs against one XMPP server only (the HTTP side does not depend on it)."""

import functools
import html
import os
import signal
import http.server
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlencode

import pytest

from harness.util import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>satchel upload test</title></head>
<body><pre id="out">PENDING</pre>
<script>
(async () => {
  const q = new URLSearchParams(location.search);
  const body = q.get('body');
  const log = [];
  try {
    const put = await fetch(q.get('put'), {
      method: 'PUT',
      headers: {'Content-Type': q.get('ct'), 'Authorization': q.get('auth')},
      body: body,
    });
    log.push('PUT=' + put.status);
    const get = await fetch(q.get('get'));
    const text = await get.text();
    log.push('GET=' + get.status);
    log.push('MATCH=' + (text === body));
  } catch (e) {
    log.push('ERROR=' + e);
  }
  document.getElementById('out').textContent = 'DONE ' + log.join(' ');
})();
</script></body></html>
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def page_server():
    root = Path(tempfile.mkdtemp(prefix="satchel-page-"))
    (root / "upload.html").write_text(PAGE)
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(_QuietHandler, directory=str(root)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()
    httpd.server_close()
    shutil.rmtree(root, ignore_errors=True)


def dump_dom(url, timeout=60):
    profile = tempfile.mkdtemp(prefix="satchel-chromium-")
    try:
        argv = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-quic", f"--user-data-dir={profile}",
            "--enable-logging=stderr", "--virtual-time-budget=10000", "--dump-dom", url,
        ]
        # Its own process group, so that no helper process outlives the test.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        r = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        # Chromium complains at length about the missing D-Bus; keep the rest
        # (with --enable-logging, CORS refusals show up as console messages).
        err = "\n".join(line for line in r.stderr.splitlines() if "dbus" not in line)
        return r.stdout, err
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")
def test_browser_upload_from_another_origin(server, satchel, alice, page_server):
    if server.kind != "prosody":
        pytest.skip("the browser test runs against one XMPP server (prosody) only")
    body = "uploaded by a browser \u2713"
    slot = alice.request_slot("browser.txt", len(body.encode()), "text/plain")
    auth = slot.put_headers.get("Authorization", "Bearer x")
    url = f"{page_server}/upload.html?" + urlencode({
        "put": slot.put_url, "get": slot.get_url, "ct": "text/plain", "body": body, "auth": auth,
    })
    dom, err = dump_dom(url)
    m = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert m, f"no result element in the dumped DOM:\n{dom[:2000]}\n{err[-2000:]}"
    outcome = html.unescape(m.group(1))
    assert outcome == "DONE PUT=201 GET=200 MATCH=true", f"{outcome}\nchromium stderr:\n{err[-2000:]}"
