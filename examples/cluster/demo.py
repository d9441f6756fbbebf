#!/usr/bin/env python3
"""Satchel cluster demo: two Satchel instances behind one Prosody, sharing a
PostgreSQL database and a 3-node Garage cluster, all on loopback.

  1. a 3-node Garage cluster (replication 3), PostgreSQL (run as the
     postgres user) and Prosody start in temp dirs;
  2. instances a and b start with the same master key; a takes the lease
     and holds the component link, b waits;
  3. alice uploads a photo through a and downloads it through b; the bucket
     holds one object per file, and not a byte of the photo in clear;
  4. a is killed (SIGKILL): b takes the lease and the link, alice's next
     slot request is answered by b, and the upload goes through b.

Run through examples/cluster/demo.sh (which installs what is missing and
builds Satchel), or directly:

  python3 examples/cluster/demo.py [--keep] [--lease SECONDS]

It reuses the test harness in tests/harness/."""

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from harness import COMPONENT_JID, make_server  # noqa: E402
from harness.client import XmppError, XmppTimeout, connect_user  # noqa: E402
from harness.cluster import Cluster, through  # noqa: E402
from harness.demo import step  # noqa: E402
from harness.garage import GarageCluster  # noqa: E402
from harness.postgres import Postgres  # noqa: E402
from harness.s3bucket import BUCKET  # noqa: E402


def upload(alice, via, name, data):
    """A slot from whichever instance leads, the PUT through `via`."""
    slot = alice.request_slot(name, len(data), "application/octet-stream")
    r = requests.put(through(via, slot.put_url), data=data,
                     headers={"Content-Type": "application/octet-stream", **slot.put_headers},
                     timeout=60)
    print(f"    PUT through {via.public_url} -> {r.status_code} {r.reason}")
    if r.status_code != 201:
        raise SystemExit(f"upload failed: {r.status_code} {r.text}")
    return slot


def download(via, slot, data):
    r = requests.get(through(via, slot.get_url), timeout=60)
    same = r.status_code == 200 and hashlib.sha256(r.content).digest() == \
        hashlib.sha256(data).digest()
    print(f"    GET through {via.public_url} -> {r.status_code}, {len(r.content)} bytes, "
          f"SHA-256 {'identical' if same else 'DIFFERENT (!)'}")
    if not same:
        raise SystemExit("download failed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true",
                    help="leave everything running afterwards")
    ap.add_argument("--lease", type=int, default=5,
                    help="cluster.lease_secs of the instances (default 5)")
    args = ap.parse_args()

    garage = postgres = server = cluster = None
    ok = False
    try:
        step("starting a 3-node Garage cluster (replication 3, one zone per node)")
        garage = GarageCluster().start()
        print(f"    S3 endpoint {garage.endpoint}, bucket {BUCKET!r}")
        step("starting PostgreSQL (initdb in a temp dir, run as the postgres user)")
        postgres = Postgres().start()
        print(f"    127.0.0.1:{postgres.port}, database satchel, role satchel")
        step("starting Prosody on loopback")
        server = make_server("prosody")
        server.start()
        print(f"    c2s 127.0.0.1:{server.c2s_port}, component port "
              f"127.0.0.1:{server.component_port}")
        step(f"starting Satchel instances a and b as {COMPONENT_JID} "
             f"(metadata.backend = postgres, storage.backend = s3, lease {args.lease}s)")
        cluster = Cluster(server, postgres, garage, lease_secs=args.lease).start()
        for name, satchel in cluster.instances.items():
            print(f"    {name}: HTTP {satchel.public_url}, config {satchel.config_path}")
        print(f"    leader (holds the XMPP link): "
              f"{'a' if cluster.leader() is cluster.a else 'b'}")

        alice = connect_user(server, "alice")
        photo = os.urandom(5 * 1024 * 1024)
        step("alice uploads a 5 MiB file through a, and downloads it through b")
        slot = upload(alice, cluster.a, "through-a.bin", photo)
        download(cluster.b, slot, photo)
        keys = garage.keys()
        stored = garage.client().get_object(
            Bucket=BUCKET, Key=f"content/{slot.get_url.split('/')[-2][:2]}/"
                              f"{slot.get_url.split('/')[-2]}")["Body"].read()
        print(f"    the bucket holds {len(keys)} object(s); this file's is {len(stored)} "
              f"bytes, sealed; its plaintext in it: {'YES (!)' if photo[:64] in stored else 'no'}")
        rows = postgres.psql("SELECT count(*) FROM satchel_files")
        print(f"    PostgreSQL: {rows} row(s) in satchel_files")

        step("killing a (SIGKILL): b takes the lease and the link")
        cluster.a.kill()
        killed = time.monotonic()
        while True:
            try:
                alice.request_slot("probe.bin", 1, "application/octet-stream", timeout=2)
                break
            except (XmppError, XmppTimeout):
                if time.monotonic() - killed > args.lease + 30:
                    raise SystemExit("no instance took over")
        print(f"    slots answered again after {time.monotonic() - killed:.1f}s "
              f"(lease {args.lease}s), by {'b' if cluster.leader() is cluster.b else '?'}")
        step("alice uploads another file through b, and downloads the first one from b")
        second = os.urandom(1024 * 1024)
        slot2 = upload(alice, cluster.b, "through-b.bin", second)
        download(cluster.b, slot2, second)
        download(cluster.b, slot, photo)
        alice.close()
        ok = True
    finally:
        if args.keep and ok:
            step("--keep: leaving them running")
            for name, satchel in cluster.instances.items():
                print(f"    {name}: {satchel.public_url}, log {satchel.log_path}")
            print(f"    Prosody c2s 127.0.0.1:{server.c2s_port}; PostgreSQL {postgres.url}")
        else:
            step("stopping everything")
            for part in (cluster, server, postgres, garage):
                if part is not None:
                    part.cleanup()
            print("    stopped; temporary directories removed")
    print("cluster demo: OK" if ok else "cluster demo: FAILED")


if __name__ == "__main__":
    main()
