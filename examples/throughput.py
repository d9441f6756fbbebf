#!/usr/bin/env python3
"""Satchel's upload and download throughput with curl on loopback, and its memory.

Starts a local Prosody with a release build of Satchel plugged in (the same
harness the tests use), then:
  1. PUTs and GETs one 128 MiB file with curl, several times; prints MiB/s;
  2. runs 20 concurrent 128 MiB uploads with curl and prints Satchel's peak RSS
     (VmHWM) and its CPU seconds, then downloads them all concurrently.

    python3 examples/throughput.py [--runs 5] [--size-mib 128] [--concurrent 20]

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


def describe(label, rates):
    print(f"{label:<34} median {statistics.median(rates):8.1f} MiB/s"
          f"   (min {min(rates):.1f}, max {max(rates):.1f}, {len(rates)} runs)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size-mib", type=int, default=128)
    ap.add_argument("--concurrent", type=int, default=20)
    args = ap.parse_args()
    size = args.size_mib * MIB

    binary = release_binary()
    work = Path(tempfile.mkdtemp(prefix="satchel-throughput-"))
    payload = work / "payload.bin"
    with open(payload, "wb") as f:
        block = os.urandom(MIB)
        for _ in range(args.size_mib):
            f.write(block)

    server = make_server("prosody")
    satchel = None
    try:
        server.start()
        satchel = Satchel(server, binary=binary, rust_log="warn", overrides={
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
            ups, downs = [], []
            for i in range(args.runs):
                slot = alice.request_slot(f"run{i}.bin", size, "application/octet-stream")
                ups.append(args.size_mib / finish(curl_put(slot.put_url, payload), 201))
                downs.append(args.size_mib / finish(curl_get(slot.get_url), 200))
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
              f"load average {os.getloadavg()[0]:.2f}; payload sha256 {digest}...")
        describe(f"PUT {args.size_mib} MiB (curl)", ups)
        describe(f"GET {args.size_mib} MiB (curl)", downs)
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
        server.stop()
        payload.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
