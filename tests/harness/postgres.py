"""A real PostgreSQL (Debian's package) for cluster mode: a cluster made with
initdb in a temp dir, run as the `postgres` user (PostgreSQL refuses root) on
a loopback port, its socket in the same dir; a `satchel` role with a password
(scram over TCP, as in production) owning a `satchel` database. Read back
with psql, as an operator would."""

import glob
import os
import shutil
import signal
import subprocess

import pytest

from .service import Service
from .util import as_user, chown_tree, free_port, wait_until

USER = "postgres"
PASSWORD = "satchel-db-secret-0123"


def _bin(name):
    """A PostgreSQL program: Debian keeps them out of PATH, per version."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class Postgres(Service):
    name = "postgres"
    tempdir_prefix = "satchel-postgres-"
    start_timeout = 60.0
    stop_timeout = 20.0
    # Fast shutdown: SIGTERM is PostgreSQL's smart shutdown, which waits for
    # every client to leave, and Satchel's pool never does; the SIGKILL that
    # ended the wait left a database to recover at the next start.
    stop_signal = signal.SIGINT

    def __init__(self, workdir=None, tls=None, client_certs=False):
        """tls: a `harness.pki.ServerPki` whose certificate the server
        offers; it then takes TCP connections over TLS only (`hostssl`).
        client_certs: it also authenticates them by a certificate from the
        same CA whose CN is the user (`cert`), not by password; `client_cert`
        and `client_key` are then one for `satchel`."""
        super().__init__(workdir)
        self.tls = tls
        self.client_certs = client_certs
        self.client_cert = self.dir / "satchel-client.crt"
        self.client_key = self.dir / "satchel-client.key"
        self.port = free_port()
        self.data = self.dir / "data"
        self.console_log = self.dir / "postgres.log"
        self.user = USER if os.geteuid() == 0 else None
        self.url = f"postgres://satchel:{PASSWORD}@127.0.0.1:{self.port}/satchel"

    @staticmethod
    def installed():
        return _bin("initdb") is not None and _bin("postgres") is not None

    def prepare(self):
        if self.data.exists():
            return
        if self.user:
            chown_tree(self.dir, self.user)
        subprocess.run(as_user(self.user, [
            _bin("initdb"), "-D", str(self.data), "-U", "postgres", "--no-sync",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"]),
            check=True, capture_output=True, cwd=self.dir)
        if self.tls:
            # PostgreSQL reads its key only if no one else may.
            for name, source in (("server.crt", self.tls.cert), ("server.key", self.tls.key)):
                target = self.data / name
                shutil.copyfile(source, target)
                os.chmod(target, 0o600)
            method = "scram-sha-256"
            if self.client_certs:
                method = "cert"
                root = self.data / "root.crt"
                shutil.copyfile(self.tls.ca, root)
                with open(self.data / "postgresql.conf", "a") as conf:
                    conf.write("ssl_ca_file = 'root.crt'\n")
                self.renew_client_cert()
            (self.data / "pg_hba.conf").write_text(
                "local all all trust\n"
                f"hostssl all all 127.0.0.1/32 {method}\n")
            if self.user:
                chown_tree(self.data, self.user)

    def command(self):
        return as_user(self.user, [
            _bin("postgres"), "-D", str(self.data), "-p", str(self.port),
            "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1",
            "-c", "fsync=off", "-c", "max_connections=200",
            *(["-c", "ssl=on"] if self.tls else [])]), None

    def ready_ports(self):
        return [self.port]

    def renew_client_cert(self):
        """A new client certificate for `satchel` in place of the old one, as
        a renewal writes it (new files renamed over the old); its serial."""
        serial = int.from_bytes(os.urandom(8), "big") >> 1
        self.tls.authority.issue(serial, self.client_cert, self.client_key,
                                 common_name="satchel", usage="clientAuth")
        return serial

    def after_start(self):
        # The port opens before a recovery is over: wait for the server to
        # take connections.
        wait_until(self.takes_connections, timeout=self.start_timeout,
                   what=lambda: f"PostgreSQL taking connections:\n{self.logs(10)}")
        exists = self.psql("SELECT 1 FROM pg_roles WHERE rolname = 'satchel'", db="postgres")
        if not exists:
            self.psql(f"CREATE ROLE satchel LOGIN PASSWORD '{PASSWORD}'", db="postgres")
            self.psql("CREATE DATABASE satchel OWNER satchel", db="postgres")

    def takes_connections(self):
        return subprocess.run(
            as_user(self.user, [_bin("pg_isready"), "-h", str(self.dir), "-p", str(self.port),
                                "-U", "postgres", "-q"]),
            capture_output=True, cwd=self.dir).returncode == 0

    def reset(self):
        """Empties the database: drops what Satchel made (it makes its tables
        again at its next start)."""
        self.psql("DROP OWNED BY satchel")

    def psql(self, sql, db="satchel"):
        """Runs `sql` as the superuser over the socket; its rows, as text."""
        result = subprocess.run(
            as_user(self.user, [_bin("psql"), "-h", str(self.dir), "-p", str(self.port),
                                "-U", "postgres", "-d", db, "-At", "-v", "ON_ERROR_STOP=1",
                                "-c", sql]),
            check=True, capture_output=True, text=True, cwd=self.dir)
        return result.stdout.strip()

    def dump(self):
        """Every byte of the `satchel` database, as pg_dump writes it."""
        return subprocess.run(
            as_user(self.user, [_bin("pg_dump"), "-h", str(self.dir), "-p", str(self.port),
                                "-U", "postgres", "-d", "satchel"]),
            check=True, capture_output=True, cwd=self.dir).stdout

    def satchel_config(self, instance, lease_secs=3):
        """The overrides that make a Satchel an instance of this cluster
        (over TLS, trusting the server's CA, if the server has TLS)."""
        metadata = {"backend": "postgres", "url": self.url}
        if self.tls:
            metadata.update(url=f"{self.url}?sslmode=require", ca_file=str(self.tls.ca))
        return {"metadata": metadata,
                "cluster": {"instance": instance, "lease_secs": lease_secs}}


def require_postgres():
    """Skips the calling test where PostgreSQL is not installed, or fails it
    where it must be (SATCHEL_REQUIRE_POSTGRES, set by .ci/run)."""
    if Postgres.installed():
        return
    if os.environ.get("SATCHEL_REQUIRE_POSTGRES"):
        pytest.fail("PostgreSQL is required here: apt-get install postgresql")
    pytest.skip("PostgreSQL not installed (apt-get install postgresql)")
