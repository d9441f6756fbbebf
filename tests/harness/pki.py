"""A throwaway certificate authority, made with the `openssl` command, for
tests that verify TLS the way real clients do: against a trust anchor, not by
turning verification off.

`ThrowawayCA(dir)` makes the CA; `issue()` signs a server certificate for
localhost and 127.0.0.1. `session_pki()` is the one the whole test session
shares: the XMPP servers offer STARTTLS with its certificate, and the real
clients (go-sendxmpp, profanity, poezio) are told to trust its CA."""

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path


class ThrowawayCA:
    def __init__(self, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self.dir / "ca.pem"
        self.new_key(self.dir / "ca.key")
        self.openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=Satchel test CA",
                     "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign", "-out", "ca.pem")

    def openssl(self, *args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self.dir,
                       timeout=30)

    def new_key(self, path):
        self.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-out", str(path))

    def issue(self, serial, cert, key, common_name="127.0.0.1", usage="serverAuth"):
        """A new key and a certificate for it with `serial`, signed by the CA, naming
        127.0.0.1 and localhost, in place of `cert` and `key` (each written whole,
        then renamed over the old). `usage`: its extended key usage, `clientAuth`
        for a client's certificate."""
        self.new_key(self.dir / "next.key")
        self.openssl("req", "-new", "-key", "next.key", "-subj", f"/CN={common_name}",
                     "-out", "next.csr")
        (self.dir / "ext.cnf").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
            f"keyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n")
        self.openssl("x509", "-req", "-in", "next.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                     "-set_serial", str(serial), "-days", "2", "-extfile", "ext.cnf",
                     "-out", "next.pem")
        os.replace(self.dir / "next.pem", cert)
        os.replace(self.dir / "next.key", key)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class ServerPki:
    """A CA and one certificate for localhost, its key, and both in one file
    (what ejabberd's `certfiles` reads)."""

    def __init__(self):
        self.authority = ThrowawayCA(tempfile.mkdtemp(prefix="satchel-pki-"))
        self.ca = self.authority.ca
        self.cert = self.authority.dir / "localhost.crt"
        self.key = self.authority.dir / "localhost.key"
        self.authority.issue(1, self.cert, self.key, common_name="localhost")
        self.bundle = self.authority.dir / "localhost.pem"
        self.bundle.write_bytes(self.cert.read_bytes() + self.key.read_bytes())
        # The servers run as their own users and read copies: the directory stays private.


_lock = threading.Lock()
_session = None


def session_pki():
    """The session's CA and localhost certificate, made on first use."""
    global _session
    with _lock:
        if _session is None:
            _session = ServerPki()
        return _session
