"""Cluster mode: two Satchel instances sharing a real PostgreSQL (Debian's,
run by the tests as its own user) for metadata and a real object store for
the bytes (SeaweedFS, and a 3-node Garage cluster), behind one Prosody.

What an operator relies on: any instance serves any file (PUT through one,
GET and Range through the other); one instance at a time holds the
component link, and when it dies the other takes over within the lease
plus a few seconds; an upload cut off by a dead instance can be retried on
the other once its claim has run out, with identical bytes; concurrent
uploads across instances admit exactly the room a user's quota has left; a
follower is healthy without a link; and a known plaintext is found in
neither the object store nor the database.

Prosody only but for one test: the cluster's parts do not depend on the
XMPP server, but ejabberd accepts several component connections where
Prosody refuses a second, so the lease keeping the link to one is also
shown behind ejabberd."""

import concurrent.futures
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from harness import make_server, rawhttp
from harness.client import XmppError, XmppTimeout, connect_user, wait_component
from harness.cluster import Cluster, through
from harness.objectstores import STORES, start_store
from harness.postgres import Postgres, require_postgres
from harness.relay import (
    check_relay_message, expect_receipt, is_relay_of, send_relay, upload_image,
)
from harness.satchel import Satchel, log_size, satchel_binary, wait_for_log
from harness.util import free_port, wait_until

TIMEOUT = 30
MIB = 1024 * 1024
LEASE_SECS = 3


@pytest.fixture(scope="module")
def postgres():
    require_postgres()
    db = Postgres().start()
    yield db
    db.cleanup()


@pytest.fixture(scope="module", params=list(STORES))
def bucket(request):
    store = start_store(request.param)
    yield store
    store.cleanup()


@pytest.fixture
def cluster(request, server, satchel_manager, postgres, bucket):
    if server.kind != "prosody":
        pytest.skip("the cluster's parts are the same behind either server")
    # The component JID is the cluster's: no other Satchel may hold it.
    satchel_manager.stop_current()
    postgres.reset()
    marker = request.node.get_closest_marker("satchel_config")
    limits = marker.kwargs.get("limits") if marker else None
    made = Cluster(server, postgres, bucket, limits, LEASE_SECS).start()
    yield made
    made.cleanup()


@pytest.fixture(scope="module")
def forgetful_server(server):
    """A Prosody that keeps no offline messages: what reaches an offline
    recipient is what Satchel's outbox still owes."""
    if server.kind != "prosody":
        pytest.skip("the cluster's parts are the same behind either server")
    forgetful = make_server("prosody", privileged=False, offline=False)
    forgetful.start()
    yield forgetful
    forgetful.cleanup()


@pytest.fixture
def forgetful_cluster(forgetful_server, postgres, bucket):
    postgres.reset()
    made = Cluster(forgetful_server, postgres, bucket, lease_secs=LEASE_SECS).start()
    yield made
    made.cleanup()


def put(url, slot, data, content_type="application/octet-stream"):
    headers = dict(slot.put_headers, **{"Content-Type": content_type})
    return requests.put(url, data=data, headers=headers, timeout=TIMEOUT)


def test_a_file_put_through_one_instance_is_served_by_the_other(cluster, alice):
    data = os.urandom(3 * MIB + 12345)
    slot = alice.request_slot("photo.bin", len(data), "application/octet-stream")
    r = put(through(cluster.b, slot.put_url), slot, data)
    assert r.status_code == 201, (r.status_code, r.text)
    r = requests.get(through(cluster.a, slot.get_url), timeout=TIMEOUT)
    assert r.status_code == 200 and r.content == data
    r = requests.get(through(cluster.b, slot.get_url), headers={"Range": "bytes=100000-2000000"},
                     timeout=TIMEOUT)
    assert r.status_code == 206 and r.content == data[100000:2000001]
    small = os.urandom(1000)
    slot = alice.request_slot("small.bin", len(small), "application/octet-stream")
    assert put(through(cluster.a, slot.put_url), slot, small).status_code == 201
    assert requests.get(through(cluster.b, slot.get_url), timeout=TIMEOUT).content == small
    # A slot is single-use across instances.
    r = put(through(cluster.b, slot.put_url), slot, small)
    assert r.status_code == 409, (r.status_code, r.text)


def test_a_follower_is_healthy_without_the_link(cluster):
    assert cluster.leader() is cluster.a
    for satchel in (cluster.a, cluster.b):
        r = requests.get(f"{satchel.public_url}/health", timeout=TIMEOUT)
        assert r.status_code == 200, (satchel, r.text)


@pytest.mark.satchel_config(limits={"user_storage_bytes": 10 * 100_000,
                                    "daily_upload_bytes": 100 * MIB})
def test_parallel_uploads_across_instances_admit_exactly_the_room_left(cluster, alice):
    data = os.urandom(100_000)
    slots = [alice.request_slot(f"f{i}.bin", len(data), "application/octet-stream")
             for i in range(20)]
    targets = [(through(cluster.a if i % 2 else cluster.b, slot.put_url), slot)
               for i, slot in enumerate(slots)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda target: put(*target, data), targets))
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(201) == 10, statuses
    assert statuses.count(403) == 10, statuses
    assert all("Storage quota reached" in r.text for r in answers if r.status_code == 403)
    stored = [slot for slot, r in zip(slots, answers) if r.status_code == 201]
    for slot in stored:
        assert requests.get(through(cluster.b, slot.get_url), timeout=TIMEOUT).content == data


def slot_answered(client):
    try:
        client.request_slot("probe.bin", 10, "application/octet-stream", timeout=2)
        return True
    except (XmppError, XmppTimeout):
        return False


def test_the_leader_killed_the_other_answers_slots_within_the_lease(cluster, alice):
    assert slot_answered(alice)
    assert cluster.leader() is cluster.a
    since = log_size(cluster.b)
    cluster.a.kill()
    killed = time.monotonic()
    wait_until(lambda: slot_answered(alice), timeout=LEASE_SECS + 5, interval=0.1,
               what="slots answered again after the leader's death")
    took = time.monotonic() - killed
    wait_for_log(cluster.b, "now leads the cluster", since=since, timeout=1)
    assert took <= LEASE_SECS + 5, took
    # And the file path still works through the survivor.
    data = os.urandom(200_000)
    slot = alice.request_slot("after.bin", len(data), "application/octet-stream")
    assert put(through(cluster.b, slot.put_url), slot, data).status_code == 201
    assert requests.get(through(cluster.b, slot.get_url), timeout=TIMEOUT).content == data


def test_behind_ejabberd_only_the_leader_connects(server, satchel_manager, postgres, bucket,
                                                 alice):
    """ejabberd takes any number of component connections for one domain and
    hands each stanza to any of them: the lease alone keeps the link to one.
    The follower does not connect while the leader renews (three renewals
    seen in the database), and connects once the leader is gone."""
    if server.kind != "ejabberd":
        pytest.skip("Prosody refuses a second component connection itself")
    satchel_manager.stop_current()
    postgres.reset()
    cluster = Cluster(server, postgres, bucket, lease_secs=LEASE_SECS)
    try:
        cluster.start()
        renewals = set()

        def renewed_three_times():
            renewals.add(postgres.psql("SELECT lease_until FROM satchel_leader"))
            return len(renewals) >= 3

        wait_until(renewed_three_times, timeout=LEASE_SECS * 4, interval=0.2,
                   what="three renewals of a's lease")
        for _ in range(5):
            assert slot_answered(alice)
        assert "connected to the XMPP server" not in cluster.b.log_path.read_text()
        since = log_size(cluster.b)
        cluster.a.kill()
        wait_for_log(cluster.b, "connected to the XMPP server", since=since,
                     timeout=LEASE_SECS + 10)
        wait_until(lambda: slot_answered(alice), timeout=10, interval=0.1,
                   what="slots answered by b")
    finally:
        cluster.cleanup()


def test_an_upload_cut_off_by_a_killed_instance_succeeds_on_the_other(cluster, postgres,
                                                                      alice):
    data = os.urandom(12 * MIB)
    slot = alice.request_slot("retried.bin", len(data), "application/octet-stream")
    sock = rawhttp.begin_put(through(cluster.b, slot.put_url), len(data), data[:5 * MIB])
    try:
        wait_until(lambda: postgres.psql("SELECT count(*) FROM satchel_claims") == "1",
                   timeout=10, interval=0.1, what="b's upload to hold its claim")
        cluster.b.kill()
    finally:
        sock.close()
    started = time.monotonic()
    answers = []

    def retried():
        r = put(through(cluster.a, slot.put_url), slot, data)
        answers.append(r.status_code)
        return r.status_code == 201

    wait_until(retried, timeout=LEASE_SECS + 10, interval=0.3,
               what=lambda: f"the retry on a to succeed (answers {answers})")
    assert set(answers) <= {201, 409}, answers
    assert time.monotonic() - started <= LEASE_SECS + 10
    r = requests.get(through(cluster.a, slot.get_url), timeout=TIMEOUT)
    assert r.status_code == 200 and r.content == data


def test_a_database_that_stops_answering_gives_503_and_serving_resumes(cluster, postgres,
                                                                        alice):
    data = os.urandom(200_000)
    slot = alice.request_slot("kept.bin", len(data), "application/octet-stream")
    assert put(through(cluster.a, slot.put_url), slot, data).status_code == 201
    waiting = alice.request_slot("later.bin", len(data), "application/octet-stream")
    since = log_size(cluster.a)
    postgres.stop()
    try:
        r = requests.get(through(cluster.b, slot.get_url), timeout=60)
        assert r.status_code == 503, (r.status_code, r.text)
        assert "metadata database" in r.text
        r = put(through(cluster.b, waiting.put_url), waiting, data)
        assert r.status_code == 503, (r.status_code, r.text)
        # The leader cannot renew its lease: it drops the link in time.
        wait_for_log(cluster.a, "does not lead the cluster", since=since,
                     timeout=LEASE_SECS + 10)
    finally:
        postgres.start()
    wait_until(lambda: slot_answered(alice), timeout=LEASE_SECS + 30, interval=0.2,
               what="slots answered once the database is back")
    assert requests.get(through(cluster.b, slot.get_url), timeout=TIMEOUT).content == data
    r = put(through(cluster.b, waiting.put_url), waiting, data)
    assert r.status_code == 201, (r.status_code, r.text)


def test_a_known_plaintext_is_nowhere_in_the_bucket_or_the_database(cluster, bucket, postgres,
                                                                     alice):
    marker = b"SATCHEL-CLUSTER-PLAINTEXT-" + os.urandom(8).hex().encode()
    for size in (1000, 300_000):
        data = (marker * (size // len(marker) + 1))[:size]
        slot = alice.request_slot(f"known-{size}.txt", len(data), "text/plain")
        r = put(through(cluster.b, slot.put_url), slot, data, "text/plain")
        assert r.status_code == 201, (r.status_code, r.text)
        assert requests.get(through(cluster.a, slot.get_url), timeout=TIMEOUT).content == data
    postgres.psql("CHECKPOINT")
    dump = postgres.dump()
    assert marker not in dump and marker.hex().encode() not in dump
    for root in [*bucket.data_dirs, postgres.data]:
        for path in root.rglob("*"):
            if path.is_file():
                assert marker not in path.read_bytes(), f"{path} holds the plaintext"


def test_a_relay_to_an_offline_recipient_survives_the_leader_s_death(forgetful_cluster):
    server = forgetful_cluster.server
    with connect_user(server, "alice") as alice, connect_user(server, "bob") as bob:
        bob.disconnect()
        slot, expected = upload_image(alice, 300, 200, "later.png", fmt="PNG")
        request = send_relay(alice, ["bob@localhost"], slot.get_url, caption="for later")
        expect_receipt(alice, request)
        assert forgetful_cluster.leader() is forgetful_cluster.a
        forgetful_cluster.a.kill()
        survivor = forgetful_cluster.b
        wait_for_log(survivor, "now leads the cluster", timeout=LEASE_SECS + 10)
        bob.reconnect()
        message = bob.wait_for_message(is_relay_of(slot.get_url), timeout=90)
        check_relay_message(message, slot.get_url, expected, "alice@localhost",
                            privileged=False, download=False)
    r = requests.get(through(survivor, slot.get_url), timeout=TIMEOUT)
    assert r.status_code == 200 and r.content == expected.data


def test_a_single_node_store_migrates_into_the_cluster_and_resumes(server, satchel_manager,
                                                                   postgres, bucket, alice):
    """`satchel migrate` from sled and local files into PostgreSQL and the
    bucket: interrupted (SIGKILL after its first file), run again, every
    file is served by the cluster with its bytes."""
    if server.kind != "prosody":
        pytest.skip("the cluster's parts are the same behind either server")
    satchel_manager.stop_current()
    postgres.reset()
    single = Satchel(server, {"limits": {"max_file_size": 64 * MIB}})
    cluster = Cluster(server, postgres, bucket, lease_secs=LEASE_SECS)
    try:
        single.start()
        wait_component(server, satchel=single)
        files = {}
        for i, size in enumerate([1000, 300_000] + [9 * MIB] * 6):
            data = os.urandom(size)
            slot = alice.request_slot(f"old-{i}.bin", size, "application/octet-stream")
            assert put(slot.put_url, slot, data).status_code == 201
            files[slot.get_url] = data
        single.stop()
        for satchel in cluster.instances.values():
            satchel.config["storage"]["key_file"] = str(single.key_file)
        cluster.a.prepare()
        command = [str(satchel_binary()), "migrate", "--from", str(single.config_path),
                   "--config", str(cluster.a.config_path)]
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True)
        try:
            assert first.stdout.readline().startswith("copied ")
        finally:
            first.kill()
            first.wait()
        second = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert second.returncode == 0, second.stderr
        summary = second.stdout.strip().splitlines()[-1]
        counts = re.match(r"migrated: (\d+) files copied \(\d+ bytes\), (\d+) already there",
                          summary)
        assert counts, summary
        copied, already = int(counts[1]), int(counts[2])
        assert already >= 1 and copied >= 1 and copied + already == len(files), summary
        cluster.start()
        for url, data in files.items():
            r = requests.get(through(cluster.b, url), timeout=TIMEOUT)
            assert r.status_code == 200 and r.content == data, url
        # A third run finds nothing left to copy.
        third = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert f"0 files copied (0 bytes), {len(files)} already there" in third.stdout
    finally:
        single.cleanup()
        cluster.cleanup()


def test_a_follower_counts_the_files_the_leader_stored(server, satchel_manager, postgres,
                                                      bucket, alice):
    """Each instance's satchel_stored_files: the follower counts again at
    each collection interval what it does not see committed itself."""
    if server.kind != "prosody":
        pytest.skip("the cluster's parts are the same behind either server")
    satchel_manager.stop_current()
    postgres.reset()
    cluster = Cluster(server, postgres, bucket, lease_secs=LEASE_SECS)
    metrics_port = free_port()
    cluster.b.config["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    cluster.b.config["retention"] = {"gc_interval_secs": 1}
    try:
        cluster.start()
        data = os.urandom(100_000)
        slot = alice.request_slot("counted.bin", len(data), "application/octet-stream")
        assert put(through(cluster.a, slot.put_url), slot, data).status_code == 201

        def counted():
            text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            values = dict(line.split(" ", 1) for line in text.splitlines()
                          if line.startswith(("satchel_stored_files ", "satchel_stored_bytes ")))
            return (float(values.get("satchel_stored_files", 0)) == 1
                    and float(values.get("satchel_stored_bytes", 0)) == len(data))

        wait_until(counted, timeout=30, interval=0.3, what="b counting a's upload")
    finally:
        cluster.cleanup()


def test_the_cluster_demo_runs(server, satchel_manager):
    """examples/cluster/demo.py, as the README runs it (demo.sh adds only the
    installs): it starts its own Garage, PostgreSQL and Prosody."""
    if server.kind != "prosody":
        pytest.skip("the demo brings its own Prosody")
    if not Postgres.installed():
        pytest.skip("PostgreSQL not installed")
    from harness.garage import GarageCluster
    if not GarageCluster.installed():
        if os.environ.get("SATCHEL_REQUIRE_GARAGE"):
            pytest.fail("garage is required here")
        pytest.skip("garage not installed")
    satchel_manager.stop_current()
    demo = Path(__file__).resolve().parents[1] / "examples" / "cluster" / "demo.py"
    run = subprocess.run([sys.executable, str(demo), "--lease", str(LEASE_SECS)],
                         capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, SATCHEL_BIN=str(satchel_binary())))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.rstrip().endswith("cluster demo: OK"), run.stdout[-3000:]
    assert "SHA-256 identical" in run.stdout and "DIFFERENT" not in run.stdout
    assert "its plaintext in it: no" in run.stdout
