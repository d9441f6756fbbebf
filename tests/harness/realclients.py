"""Real XMPP clients, each with its own XEP-0363 code, driven the way their
users drive them: go-sendxmpp from the command line, Profanity and Poezio in
a terminal (tmux). Each trusts only the session's throwaway CA (harness.pki), both for
the server's STARTTLS and for Satchel's HTTPS: nothing here turns
verification off.

    gsx = GoSendxmpp(server, "alice", pki, workdir)
    gsx.upload(path, "bob@localhost")
    prof = Profanity(server, "bob", pki, workdir)
    prof.open_chat("upload.localhost"); prof.wait_for(url)"""

import os
import shutil
import subprocess
from pathlib import Path

from . import DOMAIN
from .tmux import TmuxProgram, tmux
from .util import Process, chown_tree, make_tempdir, wait_until

TIMEOUT = 30


def trust_directory(pki, home):
    """A directory holding only the session's CA, hashed as OpenSSL looks it up
    (what Profanity's `/tls certpath` and libcurl's CAPATH read)."""
    certs = Path(home) / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    shutil.copy(pki.ca, certs / "ca.pem")
    subprocess.run(["openssl", "rehash", str(certs)], check=True, capture_output=True,
                   timeout=30)
    return certs


class GoSendxmpp:
    """go-sendxmpp (Debian package) as `user`: Go reads the trusted CAs from
    SSL_CERT_FILE, for STARTTLS and for the HTTPS upload alike."""

    def __init__(self, server, user, pki, workdir):
        self.server = server
        self.jid = f"{user}@{DOMAIN}"
        self.password = server.users[user]
        self.home = Path(workdir) / f"go-sendxmpp-{user}"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, HOME=str(self.home), SSL_CERT_FILE=str(pki.ca))
        self.listener = None

    @staticmethod
    def installed():
        return shutil.which("go-sendxmpp") is not None

    def _argv(self, *args):
        return ["go-sendxmpp", "-u", self.jid, "-p", self.password,
                "-j", f"127.0.0.1:{self.server.c2s_port}", *args]

    def upload(self, path, recipient):
        """Uploads `path` through the service it finds by disco and sends its URL
        to `recipient`; raises with go-sendxmpp's output if it fails."""
        done = subprocess.run(self._argv("-h", str(path), recipient), env=self.env,
                              capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 0, f"go-sendxmpp failed: {done.stdout}{done.stderr}"

    def listen(self):
        """Starts `go-sendxmpp -l`, which prints every message it receives."""
        self.listener = Process(self._argv("-l"), self.home / "listen.log", env=self.env,
                                name="go-sendxmpp -l").start()
        return self

    def received(self):
        return (self.home / "listen.log").read_text(errors="replace")

    def wait_received(self, text, timeout=TIMEOUT):
        return wait_until(lambda: text in self.received(), timeout=timeout,
                          what=lambda: f"go-sendxmpp -l never printed {text!r}:\n"
                                       f"{self.received()}")

    def close(self):
        if self.listener is not None:
            self.listener.stop()


class Profanity(TmuxProgram):
    """Profanity (Debian package, libstrophe + libcurl) logged in as `user` over
    STARTTLS that must verify (`tls force`), with the CA in `/tls certpath`,
    which its HTTP upload (libcurl) uses too."""

    def __init__(self, server, user, pki, workdir):
        self.home = Path(workdir) / f"profanity-{user}"
        self.home.mkdir(parents=True, exist_ok=True)
        certs = trust_directory(pki, self.home)
        super().__init__(["profanity", "-l", "DEBUG"], env={
            "HOME": self.home, "XDG_CONFIG_HOME": self.home / "config",
            "XDG_DATA_HOME": self.home / "data", "LANG": "C.UTF-8", "TERM": "screen"})
        self.jid = f"{user}@{DOMAIN}"
        self.wait_for("/help")
        self.type(f"/tls certpath set {certs}")
        self.wait_for("Certificate path set")
        self.type(f"/connect {self.jid} server 127.0.0.1 port {server.c2s_port} tls force")
        self.wait_for("Enter password")
        self.type(server.users[user])
        self.wait_for("logged in successfully")

    @staticmethod
    def installed():
        return shutil.which("profanity") is not None and TmuxProgram.installed()

    def open_chat(self, jid):
        """Opens (or shows) the chat window with `jid`."""
        self.type(f"/msg {jid}")
        self.wait_for(f" {jid} ")

    def send_file(self, recipient, path):
        """`/sendfile` in the chat with `recipient`: uploads `path` through the
        service Profanity finds by disco, then sends its URL."""
        self.open_chat(recipient)
        self.type(f"/sendfile {path}")
        return self.wait_for(f"me: https://", ending=f"/{Path(path).name}")

    def log(self):
        logs = list((self.home / "data").rglob("profanity.log"))
        return logs[0].read_text(errors="replace") if logs else ""


POEZIO = Path(os.environ.get("SATCHEL_POEZIO", "/opt/satchel-test-clients/poezio/bin/poezio"))
# Poezio refuses to run as root: it runs as this user and group.
POEZIO_USER, POEZIO_GROUP = "nobody", "nogroup"


class Poezio(TmuxProgram):
    """Poezio 0.18 from PyPI (with its upload plugin; Debian's 0.14 cannot
    upload) as `user`, run as an unprivileged user in a home of its own. It
    verifies STARTTLS against `ca_cert_path` and its uploads (aiohttp)
    against SSL_CERT_FILE, both the session's CA."""

    def __init__(self, server, user, pki):
        self.home = make_tempdir(f"satchel-poezio-{user}-")
        shutil.copy(pki.ca, self.home / "ca.pem")
        config = self.home / ".config" / "poezio"
        config.mkdir(parents=True)
        (config / "poezio.cfg").write_text(
            "[Poezio]\n"
            f"jid = {user}@{DOMAIN}\n"
            f"password = {server.users[user]}\n"
            "custom_host = 127.0.0.1\n"
            f"custom_port = {server.c2s_port}\n"
            f"ca_cert_path = {self.home / 'ca.pem'}\n"
            "plugins_autoload = upload\n")
        chown_tree(self.home, POEZIO_USER)
        super().__init__(["setpriv", f"--reuid={POEZIO_USER}", f"--regid={POEZIO_GROUP}",
                          "--clear-groups", "--", "env", f"HOME={self.home}",
                          f"SSL_CERT_FILE={self.home / 'ca.pem'}", "TERM=screen",
                          "LANG=C.UTF-8", POEZIO])
        self.wait_for(f"Your JID is {user}@{DOMAIN}")

    @staticmethod
    def installed():
        return POEZIO.exists() and TmuxProgram.installed()

    def command(self, text):
        """Types a command and sends it once the input line shows it whole.

        A "/" typed in the roster tab opens the input line, which drops what
        is typed in the same burst, so it goes alone, first; and while Poezio
        is still starting, what is typed may be wiped: then it is typed again."""
        def input_line_is(expected):
            return lambda: self.screen().rstrip().splitlines()[-1].endswith(expected)

        for _ in range(3):
            self.type("/", enter=False)
            try:
                wait_until(input_line_is("/"), timeout=5, what="poezio's input line")
                self.type(text.removeprefix("/"), enter=False)
                wait_until(input_line_is(text), timeout=5, what=f"{text!r} typed")
            except AssertionError:
                tmux("send-keys", "-t", self.session, "C-u")
                continue
            tmux("send-keys", "-t", self.session, "Enter")
            return
        raise AssertionError(f"poezio never took {text!r}:\n{self.screen()}")

    def open_chat(self, jid):
        self.command(f"/message {jid}")
        self.wait_for(f"[{jid}]")

    def send_file(self, recipient, path):
        """`/upload` in the chat with `recipient` (the upload plugin sends the URL)."""
        self.open_chat(recipient)
        local = self.home / Path(path).name
        shutil.copy(path, local)
        chown_tree(self.home, POEZIO_USER)
        self.command(f"/upload {local}")
        return self.wait_for("https://", ending=f"/{local.name}")

    def close(self):
        super().close()
        shutil.rmtree(self.home, ignore_errors=True)


class Libervia:
    """Libervia 0.9 (Debian's libervia-backend and libervia-cli) as `user`: its
    backend on a D-Bus session bus of its own, and the `libervia-cli` commands
    a user types. Both are Debian's Python programs, run with Debian's
    python3 (`/usr/bin/env python3` may find another). Twisted verifies
    STARTTLS and the HTTPS upload against SSL_CERT_FILE, the session's CA."""

    def __init__(self, server, user, pki, workdir):
        self.profile = user
        self.home = Path(workdir) / f"libervia-{user}"
        (self.home / "config" / "libervia").mkdir(parents=True, exist_ok=True)
        (self.home / "config" / "libervia" / "libervia.conf").write_text(
            "[DEFAULT]\nlog_level = info\n")
        bus = f"unix:path={self.home / 'bus'}"
        self.env = dict(os.environ, HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / "config"),
                        XDG_DATA_HOME=str(self.home / "data"),
                        XDG_CACHE_HOME=str(self.home / "cache"),
                        DBUS_SESSION_BUS_ADDRESS=bus, SSL_CERT_FILE=str(pki.ca),
                        PATH="/usr/bin:/bin")
        self.bus = Process(["dbus-daemon", "--session", "--nofork", f"--address={bus}"],
                           self.home / "dbus.log", env=self.env, name="dbus-daemon").start()
        wait_until(lambda: (self.home / "bus").exists(), timeout=TIMEOUT, what="the D-Bus socket")
        self.backend = Process(["/usr/bin/python3", "/usr/bin/libervia-backend", "fg"],
                               self.home / "backend.log", env=self.env,
                               name="libervia-backend").start()
        wait_until(lambda: "Backend is ready" in self.backend_log(), timeout=60,
                   what=lambda: f"libervia-backend never got ready:\n{self.backend_log()}")
        password = server.users[user]
        self.cli("profile", "create", "-j", f"{user}@{DOMAIN}", "-x", password, "-p", "pw",
                 user, profile=False)
        self.cli("param", "set", "--start-session", "Connection", "Force server", "127.0.0.1")
        for name, value in (("Force port", server.c2s_port), ("Password", password)):
            self.cli("param", "set", "Connection", name, str(value))
        self.cli("profile", "connect", "-c")

    @staticmethod
    def installed():
        return all(Path(p).exists() for p in ("/usr/bin/libervia-backend",
                                               "/usr/bin/libervia-cli", "/usr/bin/dbus-daemon"))

    def backend_log(self):
        return (self.home / "backend.log").read_text(errors="replace")

    def cli(self, *args, profile=True, stdin=None):
        """Runs `libervia-cli ARGS` (as this profile); its standard output."""
        subcommand, rest = list(args[:2]), list(args[2:])
        if profile:
            subcommand += ["-p", self.profile, "--pwd", "pw"]
        done = subprocess.run(["/usr/bin/python3", "/usr/bin/libervia-cli", *subcommand, *rest],
                              env=self.env, input=stdin, capture_output=True, text=True,
                              timeout=TIMEOUT)
        assert done.returncode == 0, (f"libervia-cli {' '.join(args)} failed:\n{done.stdout}"
                                      f"{done.stderr}\n{self.backend_log()[-3000:]}")
        return done.stdout

    def upload(self, path):
        """`libervia-cli file upload`: the service found by disco; returns the URL."""
        return self.cli("file", "upload", str(path)).strip().splitlines()[-1]

    def send(self, recipient, text):
        self.cli("message", "send", recipient, stdin=text)

    def close(self):
        self.backend.stop()
        self.bus.stop()
