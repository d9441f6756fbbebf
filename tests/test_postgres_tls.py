"""TLS to the cluster's database: a PostgreSQL (Debian's, started by the
tests) that takes TCP connections over TLS only, with a certificate from the
tests' throwaway CA.

What an operator relies on: with `?sslmode=require` and `metadata.ca_file`
naming the CA, Satchel connects over TLS and works (every connection of its
role is encrypted, as PostgreSQL itself reports); without `sslmode=require`
it does not fall back to sending the password in the clear, the server
refuses it and the start fails in one line; a certificate signed by another
CA is refused, at start and by `satchel check-config`, without the password
in the output. A PostgreSQL that authenticates clients by certificate gets
the one `metadata.client_cert_file` names (and its user, by the certificate's
CN), a certificate renewed in place from the next connection on, and without
one the start fails in one line. One Satchel with its bytes
in local files: the database link is what is tested."""

import os
import subprocess

import pytest
import requests

from harness.client import wait_component
from harness.util import wait_until
from harness.pki import ServerPki, session_pki
from harness.postgres import PASSWORD, Postgres, require_postgres
from harness.satchel import Satchel, satchel_binary

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def tls_postgres():
    require_postgres()
    db = Postgres(tls=session_pki()).start()
    yield db
    db.cleanup()


@pytest.fixture(scope="module")
def cert_postgres_server():
    require_postgres()
    db = Postgres(tls=session_pki(), client_certs=True).start()
    yield db
    db.cleanup()


@pytest.fixture
def cert_postgres(cert_postgres_server):
    """The server emptied: each test's Satchel has a master key of its own."""
    cert_postgres_server.reset()
    return cert_postgres_server


@pytest.fixture
def prosody(server, satchel_manager):
    if server.kind != "prosody":
        pytest.skip("the database link is the same behind either server")
    # The component JID is the test's Satchel's alone.
    satchel_manager.stop_current()
    return server


def satchel_on(server, postgres, **metadata):
    config = postgres.satchel_config("a")
    config["metadata"].update(metadata)
    config["limits"] = {"max_file_size": 4 * MIB}
    return Satchel(server, config)


def satchel_with_client_cert(server, postgres):
    return satchel_on(server, postgres, client_cert_file=str(postgres.client_cert),
                      client_key_file=str(postgres.client_key))


def refusal(satchel, command=()):
    """Satchel's output when `command` (the service if empty) exits non-zero."""
    satchel.prepare()
    run = subprocess.run([str(satchel_binary()), *command, "--config", str(satchel.config_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0, run.stdout
    return run.stdout + run.stderr


def connections_of_a_working_satchel(prosody, alice, satchel, postgres, column):
    """Starts `satchel`, checks that a file goes up and comes back through
    it, and returns `column` of `pg_stat_ssl` for each of its connections."""
    satchel.start()
    wait_component(prosody, satchel=satchel)
    data = os.urandom(300_000)
    slot = alice.request_slot("over-tls.bin", len(data), "application/octet-stream")
    put = requests.put(slot.put_url, data=data, headers=slot.put_headers, timeout=30)
    assert put.status_code == 201, put.text
    got = requests.get(slot.get_url, timeout=30)
    assert got.status_code == 200 and got.content == data
    return postgres.psql(
        f"SELECT s.{column} FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
        "WHERE a.usename = 'satchel'").split()


def test_satchel_works_over_tls_and_every_connection_is_encrypted(prosody, tls_postgres,
                                                                   alice):
    satchel = satchel_on(prosody, tls_postgres)
    try:
        rows = connections_of_a_working_satchel(prosody, alice, satchel, tls_postgres, "ssl")
        assert rows and all(row == "t" for row in rows), rows
    finally:
        satchel.cleanup()


def test_without_sslmode_require_the_start_is_refused_not_sent_in_the_clear(prosody,
                                                                           tls_postgres):
    satchel = satchel_on(prosody, tls_postgres, url=tls_postgres.url)
    del satchel.config["metadata"]["ca_file"]
    try:
        output = refusal(satchel)
        assert "no encryption" in output, output
        assert len(output.strip().splitlines()) == 1, output
        assert PASSWORD not in output
    finally:
        satchel.cleanup()


def test_a_certificate_from_another_ca_is_refused(prosody, tls_postgres):
    stranger = ServerPki()
    satchel = satchel_on(prosody, tls_postgres, ca_file=str(stranger.ca))
    try:
        for command in ((), ("check-config",)):
            output = refusal(satchel, command)
            assert "invalid peer certificate" in output, output
            assert PASSWORD not in output
        checked = refusal(satchel, ("check-config",))
        assert checked.startswith("metadata.url: "), checked
    finally:
        satchel.cleanup()
        stranger.authority.remove()


def test_a_database_that_authenticates_by_certificate_gets_satchels(prosody, cert_postgres,
                                                                   alice):
    satchel = satchel_with_client_cert(prosody, cert_postgres)
    try:
        shown = connections_of_a_working_satchel(prosody, alice, satchel, cert_postgres,
                                                 "client_dn")
        assert shown and all(dn == "/CN=satchel" for dn in shown), shown
    finally:
        satchel.cleanup()


def test_without_a_client_certificate_the_start_is_refused_in_one_line(prosody,
                                                                       cert_postgres):
    satchel = satchel_on(prosody, cert_postgres)
    try:
        output = refusal(satchel)
        assert "certificate" in output, output
        assert len(output.strip().splitlines()) == 1, output
        assert PASSWORD not in output
    finally:
        satchel.cleanup()


def test_a_renewed_client_certificate_is_shown_from_the_next_connection(prosody, cert_postgres,
                                                                        alice):
    satchel = satchel_with_client_cert(prosody, cert_postgres)
    try:
        connections_of_a_working_satchel(prosody, alice, satchel, cert_postgres, "client_dn")
        serial = cert_postgres.renew_client_cert()
        cert_postgres.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE usename = 'satchel'")

        def serials():
            return cert_postgres.psql(
                "SELECT s.client_serial FROM pg_stat_ssl s JOIN pg_stat_activity a "
                "USING (pid) WHERE a.usename = 'satchel'").split()
        # The leader renews its lease every third of it (1 s): its pool
        # connects again.
        wait_until(lambda: serials() and all(s == str(serial) for s in serials()),
                   timeout=30, what=lambda: f"connections with serial {serial}: {serials()}")
        assert "client certificate reloaded" in satchel.logs(100)
        wait_component(prosody, satchel=satchel)
        data = os.urandom(50_000)
        slot = alice.request_slot("renewed.bin", len(data), "application/octet-stream")
        put = requests.put(slot.put_url, data=data, headers=slot.put_headers, timeout=30)
        assert put.status_code == 201, put.text
    finally:
        satchel.cleanup()
