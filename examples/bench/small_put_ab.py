#!/usr/bin/env python3
"""1 KiB PUT latency of two Satchel binaries, A and B, through one Prosody.

    python3 examples/bench/small_put_ab.py OLD_BINARY NEW_BINARY [--runs 5] [--puts 40]

For an A/B of a change on the small-upload path: Prosody 0.12 (Debian) starts
once on loopback; A and B take turns holding its component, run after run, so
that load from elsewhere on the machine hits both alike. Each turn grants the
slots first, then times each PUT alone (one kept-alive connection, after
five unmeasured ones). Prints the median (min-max) of each turn's median, B's
ratio to A, and the load average."""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import servers  # noqa: E402
from harness.client import connect_user  # noqa: E402

WARM_UP = 5


def loadavg():
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def put_latencies(prosody, puts):
    data = os.urandom(1024)
    with connect_user(prosody, "alice") as alice:
        slots = [alice.request_slot(f"small{i}.bin", len(data), "application/octet-stream")
                 for i in range(WARM_UP + puts)]
    session = requests.Session()
    latencies = []
    for slot in slots:
        headers = dict(slot.put_headers, **{"Content-Type": "application/octet-stream"})
        start = time.perf_counter()
        r = session.put(slot.put_url, data=data, headers=headers, timeout=15)
        latencies.append(1000 * (time.perf_counter() - start))
        assert r.status_code == 201, (r.status_code, r.text)
    return statistics.median(latencies[WARM_UP:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="the Satchel binary to compare against")
    ap.add_argument("b", type=Path, help="the Satchel binary with the change")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--puts", type=int, default=40)
    args = ap.parse_args()
    binaries = {"A": args.a.resolve(), "B": args.b.resolve()}
    load_start = loadavg()
    medians = servers.take_turns(binaries, args.runs,
                                 lambda prosody: put_latencies(prosody, args.puts))
    a, b = medians["A"], medians["B"]
    print(f"\n{args.runs} runs of {args.puts} PUTs each, A and B in turn; load average "
          f"{load_start} at start, {loadavg()} at the end")
    print(f"A = {binaries['A']}\nB = {binaries['B']}\n")
    print("| 1 KiB PUT, ms (median of each run's median) | A | B | B / A |")
    print("|---|---|---|---|")
    print(f"| Python requests, kept-alive | {statistics.median(a):.3f} ({min(a):.3f}-{max(a):.3f}) "
          f"| {statistics.median(b):.3f} ({min(b):.3f}-{max(b):.3f}) "
          f"| {statistics.median(b) / statistics.median(a):.2f}x |")


if __name__ == "__main__":
    main()
