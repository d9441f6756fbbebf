#!/usr/bin/env python3
"""Slot request rates of two Satchel binaries, A and B, through one Prosody.

    python3 examples/bench/slots_ab.py OLD_BINARY NEW_BINARY [--runs 5] [--seconds 3]

For an A/B of a change on the slot path: Prosody 0.12 (Debian) starts once on
loopback; A and B take turns holding its component (Prosody allows one
connection per component), run after run, so that load from elsewhere on the
machine hits both alike. Each turn measures slot requests per second with one
request in flight, then with 32 in flight on 32 connections, from the load
generator of examples/bench/loadgen.py. Prints the medians (min-max) of each,
B's ratio to A, and the load average."""

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402
import servers  # noqa: E402

IN_FLIGHT = 32


def loadavg():
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def cell(values):
    return (f"{statistics.median(values):,.0f} "
            f"({min(values):,.0f}-{max(values):,.0f})")


async def measure(prosody, seconds):
    sessions = await loadgen.open_sessions(prosody.c2s_port, servers.BENCH_USERS,
                                           IN_FLIGHT + 1)
    try:
        await loadgen.slot_rate(sessions[:1], servers.COMPONENT_JID, 0.2)  # warm-up
        sequential = await loadgen.slot_rate(sessions[:1], servers.COMPONENT_JID, seconds)
        parallel = await loadgen.slot_rate(sessions[1:], servers.COMPONENT_JID, seconds)
        return sequential, parallel
    finally:
        for session in sessions:
            session.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="the Satchel binary to compare against")
    ap.add_argument("b", type=Path, help="the Satchel binary with the change")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    binaries = {"A": args.a.resolve(), "B": args.b.resolve()}
    load_start = loadavg()
    turns = servers.take_turns(binaries, args.runs,
                               lambda prosody: asyncio.run(measure(prosody, args.seconds)))
    rates = {(label, mode): [run[i] for run in turns[label]]
             for label in binaries for i, mode in enumerate(("seq", "par"))}
    print(f"\n{args.runs} runs of {args.seconds} s each, A and B in turn; load average "
          f"{load_start} at start, {loadavg()} at the end")
    print(f"A = {binaries['A']}\nB = {binaries['B']}\n")
    print("| Slot requests/s through Prosody | A | B | B / A |")
    print("|---|---|---|---|")
    for mode, name in (("seq", "sequential"), ("par", f"{IN_FLIGHT} in flight")):
        a, b = rates[("A", mode)], rates[("B", mode)]
        print(f"| {name} | {cell(a)} | {cell(b)} | "
              f"{statistics.median(b) / statistics.median(a):.2f}x |")


if __name__ == "__main__":
    main()
