"""Dino, a graphical XMPP client (Debian's `dino-im`, GTK), in a virtual X
display (Xvfb), with its screen read by `import` (ImageMagick) and clicked with
xdotool.

Dino has no setting for the server's address: it asks DNS for the domain's
SRV record and falls back to port 5222 of the domain, so its server must
listen on 127.0.0.1:5222. Nor does it take a CA of its own: GLib verifies
TLS against the system bundle, so Dino runs in a mount namespace of its own
(`unshare -m`, as root) where that bundle is the session's throwaway CA and
nothing else; the machine's trust store is never touched. Its account is
written into its database, as its own account dialog would."""

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from .util import Process, make_tempdir, wait_until

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
TIMEOUT = 30


class VirtualDisplay:
    """Xvfb on the first free display number."""

    def __init__(self, width=1280, height=800):
        number = next(n for n in range(90, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
        self.name = f":{number}"
        self.log = make_tempdir("satchel-xvfb-") / "xvfb.log"
        self.process = Process(["Xvfb", self.name, "-screen", "0", f"{width}x{height}x24",
                                "-nolisten", "tcp"], self.log, name="Xvfb").start()
        wait_until(lambda: Path(f"/tmp/.X11-unix/X{number}").exists(), timeout=TIMEOUT,
                   what="Xvfb's socket")

    def screenshot(self, path):
        subprocess.run(["import", "-window", "root", "-display", self.name, str(path)],
                       check=True, capture_output=True, timeout=TIMEOUT)
        return path

    def click(self, x, y):
        subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "1"],
                       env=dict(os.environ, DISPLAY=self.name), check=True, timeout=TIMEOUT)

    def close(self):
        self.process.stop()


class Dino:
    def __init__(self, display, pki, jid, password):
        self.home = make_tempdir("satchel-dino-")
        shutil.copy(pki.ca, self.home / "ca-bundle.crt")
        self.env = dict(os.environ, HOME=str(self.home), DISPLAY=display.name,
                        XDG_DATA_HOME=str(self.home / "data"),
                        XDG_CONFIG_HOME=str(self.home / "config"),
                        XDG_CACHE_HOME=str(self.home / "cache"), NO_AT_BRIDGE="1")
        self.db = self.home / "data" / "dino" / "dino.db"
        # The first start makes the database; the account goes in while Dino is stopped.
        self.process = self._start()
        wait_until(lambda: self._has_table("account"), timeout=TIMEOUT, what="Dino's database")
        self.process.stop()
        with sqlite3.connect(self.db) as db:
            db.execute("INSERT INTO account (bare_jid, resourcepart, password, alias, enabled)"
                       " VALUES (?, 'dino', ?, ?, 1)", (jid, password, jid.split("@")[0]))
        self.process = self._start()

    @staticmethod
    def installed():
        return all(shutil.which(tool) for tool in ("dino-im", "Xvfb", "xdotool", "import",
                                                    "unshare", "dbus-run-session"))

    def _start(self):
        bundle = self.home / "ca-bundle.crt"
        return Process(["unshare", "--mount", "sh", "-c",
                        f"mount --bind {bundle} {SYSTEM_BUNDLE} && "
                        "exec dbus-run-session -- dino-im"],
                       self.home / "dino.log", env=self.env, name="dino").start()

    def _has_table(self, name):
        if not self.db.exists():
            return False
        try:
            with sqlite3.connect(self.db) as db:
                return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?",
                                  (name,)).fetchone() is not None
        except sqlite3.Error:
            return False

    def query(self, sql, *args):
        """Rows of Dino's database (it keeps every message there)."""
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
                return db.execute(sql, args).fetchall()
        except sqlite3.Error:
            return []

    def wait_message(self, body):
        return wait_until(lambda: self.query("SELECT id FROM message WHERE body = ?", body),
                          timeout=TIMEOUT, what=lambda: f"Dino never stored {body!r}:\n"
                          + (self.home / "dino.log").read_text(errors="replace")[-2000:])

    def downloaded(self, file_name):
        """The bytes of `file_name` once Dino has downloaded it, else None."""
        rows = self.query("SELECT path FROM file_transfer WHERE file_name = ? AND path != ''",
                          file_name)
        for (path,) in rows:
            local = self.home / "data" / "dino" / "files" / path
            if local.exists() and local.stat().st_size > 0:
                return local.read_bytes()
        return None

    def close(self):
        self.process.stop()
        if not os.environ.get("SATCHEL_KEEP_TMP"):
            shutil.rmtree(self.home, ignore_errors=True)
