#!/usr/bin/env python3
"""What HTTPS costs Satchel: 128 MiB PUT and GET with curl, plain HTTP against TLS.

Starts a local Prosody, makes a throwaway CA and certificate with `openssl`,
and runs a release build of Satchel alternately without and with
`http.tls_cert`/`http.tls_key` (one Satchel at a time: they share the
component JID), a PUT and a GET of the same file per run. Prints the median
MiB/s of each, and Satchel's CPU seconds per PUT and GET (from /proc), with
the load average.

    python3 examples/tls_cost.py [--runs 3] [--size-mib 128]

Satchel is built with `cargo build --release` unless SATCHEL_BIN names a binary.
Figures vary with the machine's load: compare runs made side by side."""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "examples"))

from harness import make_server  # noqa: E402
from harness.client import connect_user, wait_component  # noqa: E402
from harness.satchel import Satchel  # noqa: E402
from throughput import MIB, cpu_seconds, release_binary  # noqa: E402


def make_certificate(work):
    """A CA, and a certificate for 127.0.0.1 it signs: (ca, cert, key)."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=work)
    for name in ("ca.key", "key.pem"):
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name)
    openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=bench CA", "-days", "2",
            "-addext", "basicConstraints=critical,CA:TRUE", "-out", "ca.pem")
    openssl("req", "-new", "-key", "key.pem", "-subj", "/CN=127.0.0.1", "-out", "cert.csr")
    (work / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", "1", "-days", "2", "-extfile", "ext.cnf", "-out", "cert.pem")
    return work / "ca.pem", work / "cert.pem", work / "key.pem"


def curl(ca, *args):
    """Runs curl; returns its time_total in seconds."""
    r = subprocess.run(["curl", "-sS", "--cacert", str(ca), "-o", "/dev/null",
                        "-w", "%{http_code} %{time_total}", *args],
                       check=True, capture_output=True, text=True)
    code, seconds = r.stdout.split()
    if code not in ("200", "201"):
        raise RuntimeError(f"curl got HTTP {code}")
    return float(seconds)


def one_run(server, binary, overrides, payload, size_mib, ca):
    """A fresh Satchel: PUT then GET of `payload`. Returns (put MiB/s, get MiB/s,
    put CPU s, get CPU s)."""
    size = size_mib * MIB
    satchel = Satchel(server, binary=binary, rust_log="warn", overrides={
        "limits": {"max_file_size": size, "daily_upload_bytes": size * 100,
                   "user_storage_bytes": size * 100, "min_free_disk_percent": 1},
        **overrides,
    })
    try:
        satchel.start()
        wait_component(server, satchel=satchel)
        pid = satchel.process.pid
        with connect_user(server, "alice") as alice:
            slot = alice.request_slot("bench.bin", size, "application/octet-stream")
        before = cpu_seconds(pid)
        put = curl(ca, "-T", str(payload), "-H", "Content-Type: application/octet-stream",
                   "-H", "Expect:", slot.put_url)
        middle = cpu_seconds(pid)
        get = curl(ca, slot.get_url)
        after = cpu_seconds(pid)
        return size_mib / put, size_mib / get, middle - before, after - middle
    finally:
        satchel.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=128)
    args = ap.parse_args()

    binary = release_binary()
    work = Path(tempfile.mkdtemp(prefix="satchel-tls-cost-"))
    ca, cert, key = make_certificate(work)
    payload = work / "payload.bin"
    with open(payload, "wb") as f:
        block = os.urandom(MIB)
        for _ in range(args.size_mib):
            f.write(block)

    modes = {"plain": {}, "tls": {"http": {"tls_cert": str(cert), "tls_key": str(key)}}}
    results = {mode: [] for mode in modes}
    server = make_server("prosody")
    load_before = os.getloadavg()
    try:
        server.start()
        for _ in range(args.runs):
            for mode, overrides in modes.items():
                results[mode].append(
                    one_run(server, binary, overrides, payload, args.size_mib, ca))
    finally:
        server.stop()
        payload.unlink(missing_ok=True)
    load_after = os.getloadavg()

    print(f"\nSatchel {binary}; {os.cpu_count()} cores; load average (1/5/15 min) "
          f"{'/'.join(f'{x:.2f}' for x in load_before)} at start, "
          f"{'/'.join(f'{x:.2f}' for x in load_after)} at the end; "
          f"{args.runs} runs each, alternated; medians (min-max)")
    labels = [f"PUT {args.size_mib} MiB, MiB/s", f"GET {args.size_mib} MiB, MiB/s",
              "Satchel CPU s per PUT", "Satchel CPU s per GET"]
    print("| Measure | plain HTTP | HTTPS | HTTPS / plain |\n|---|---|---|---|")
    for i, label in enumerate(labels):
        cells = []
        for mode in modes:
            values = [run[i] for run in results[mode]]
            cells.append((statistics.median(values), min(values), max(values)))
        plain, tls = cells
        print(f"| {label} | {plain[0]:.2f} ({plain[1]:.2f}-{plain[2]:.2f}) | "
              f"{tls[0]:.2f} ({tls[1]:.2f}-{tls[2]:.2f}) | {tls[0] / plain[0]:.2f}x |")


if __name__ == "__main__":
    main()
