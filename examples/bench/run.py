#!/usr/bin/env python3
"""Side-by-side benchmark: Satchel vs Prosody's and ejabberd's own upload modules.

    python3 examples/bench/run.py            # full run (about 5-10 minutes on 2 cores)
    python3 examples/bench/run.py --quick    # smoke run: small sizes, 2 runs (< 1 minute)

Builds Satchel in release mode (or uses $SATCHEL_BIN), then starts on loopback,
with the test harness (tests/harness):
  - Prosody 0.12 (Debian) hosting both Satchel's component and Prosody's own
    mod_http_file_share (share.localhost);
  - Satchel, plugged into that Prosody;
  - ejabberd 23.01 (Debian) with its own mod_http_upload (share.localhost).
All three get the same largest file size, and their quotas are out of the way;
the module configs are the snippets in examples/bench/servers/.

The same workload runs against all three, interleaved run by run so that load
from elsewhere on the machine hits them alike, and one table is printed: the
median (min-max) of each figure for each system and Satchel's ratio to each of
the others. Figures depend on the machine's load, which is printed with them."""

import argparse
import asyncio
import hashlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402
import procstat  # noqa: E402
import servers  # noqa: E402
from harness.client import connect_user, wait_component  # noqa: E402

REPO = servers.REPO
KIB, MIB = 1024, 1024 * 1024
CONTENT_TYPE = "application/octet-stream"


# -- systems -------------------------------------------------------------------------
@dataclass
class System:
    key: str
    label: str
    server: object             # the harness server that answers its slot requests
    service: str               # JID of its upload service
    watched: procstat.Watched  # the process that stores the files
    client: object = None      # harness Client (alice) for slot requests
    sessions: list = field(default_factory=list)  # loadgen sessions
    written: int = 0           # write_bytes during its uploads
    uploaded: int = 0          # bytes it was sent in those uploads


# -- curl ----------------------------------------------------------------------------
def curl_put(slot, path):
    headers = []
    for k, v in slot.put_headers.items():
        headers += ["-H", f"{k}: {v}"]
    return subprocess.Popen(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
         "-T", str(path), "-H", f"Content-Type: {CONTENT_TYPE}", "-H", "Expect:",
         *headers, slot.put_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def curl_get(url, out="/dev/null"):
    return subprocess.Popen(
        ["curl", "-sS", "-o", out, "-w", "%{http_code} %{time_total} %{size_download}", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process, expected, what, size=None):
    out, err = process.communicate()
    parts = out.split()
    if process.returncode != 0 or not parts or int(parts[0]) != expected:
        raise RuntimeError(f"{what}: curl exited {process.returncode}, HTTP {parts[:1]}, "
                           f"expected {expected}: {err.strip()}")
    if size is not None and int(parts[2]) != size:
        raise RuntimeError(f"{what}: got {parts[2]} bytes, expected {size}")
    return float(parts[1])


# -- the Rust client (examples/bench/http_client.rs): same output shape as curl's -w -----
def rust_put(client, slot, path):
    headers = []
    for k, v in slot.put_headers.items():
        headers += ["-H", f"{k}: {v}"]
    return subprocess.Popen(
        [str(client), "put", slot.put_url, str(path), "-H", f"Content-Type: {CONTENT_TYPE}",
         *headers], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rust_get(client, url):
    return subprocess.Popen([str(client), "get", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def put(system, path, size, name, start_put=curl_put):
    slot = system.client.request_slot(name, size, CONTENT_TYPE, jid=system.service)
    before = system.watched.written()
    seconds = finish(start_put(slot, path), 201, f"{system.key} PUT {name}")
    system.written += system.watched.written() - before
    system.uploaded += size
    return slot, seconds


# -- helpers -------------------------------------------------------------------------
def release_client():
    """The Rust HTTP client, built in release mode beside Satchel."""
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "http_client"],
                   cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return (target if target.is_absolute() else REPO / target) / "release" / "examples" / \
        "http_client"


def release_binary():
    if os.environ.get("SATCHEL_BIN"):
        p = Path(os.environ["SATCHEL_BIN"]).resolve()
        if not p.exists():
            sys.exit(f"SATCHEL_BIN={p} does not exist")
        return p
    print("building Satchel (cargo build --release) ...", flush=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "satchel"],
                   cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return (target if target.is_absolute() else REPO / target) / "release" / "satchel"


def size_name(size):
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def make_payload(directory, size):
    path = directory / f"payload-{size}.bin"
    with open(path, "wb") as f:
        block = os.urandom(min(size, MIB))
        for _ in range(max(1, size // MIB)):
            f.write(block)
    return path


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def loadavg():
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def progress(msg):
    print(f"[{time.strftime('%H:%M:%S')} load {loadavg()}] {msg}", flush=True)


# -- the table -------------------------------------------------------------------------
class Table:
    def __init__(self, systems):
        self.systems = systems
        self.rows = []  # (label, better, {key: [values]}, digits)

    def add(self, label, better, values, digits=1):
        self.rows.append((label, better, values, digits))

    @staticmethod
    def cell(values, digits):
        if not values:
            return "-"
        med = statistics.median(values)
        if len(values) == 1:
            return f"{med:,.{digits}f}"
        return f"{med:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"

    def render(self):
        first, others = self.systems[0], self.systems[1:]
        head = (["Measure", "better"] + [s.label for s in self.systems]
                + [f"{first.key} / {o.key}" for o in others])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label, better, values, digits in self.rows:
            cells = [label, better] + [self.cell(values.get(s.key, []), digits)
                                       for s in self.systems]
            mine = values.get(first.key, [])
            for o in others:
                theirs = values.get(o.key, [])
                if better != "info" and mine and theirs and statistics.median(theirs) > 0:
                    cells.append(f"{statistics.median(mine) / statistics.median(theirs):.2f}x")
                else:
                    cells.append("-")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


# -- phases ----------------------------------------------------------------------------
def http_phase(systems, table, payloads, runs_for, verify_dir, client=None):
    """PUT then GET of each payload, with curl or (`client`) the Rust client."""
    tool = "Rust client" if client else "curl"
    start_put = (lambda slot, path: rust_put(client, slot, path)) if client else curl_put
    start_get = (lambda url: rust_get(client, url)) if client else curl_get
    for size, path in payloads.items():
        n = runs_for(size)
        progress(f"PUT/GET {size_name(size)} x {n} runs per system ({tool})")
        puts = {s.key: [] for s in systems}
        gets = {s.key: [] for s in systems}
        for r in range(n):
            for s in systems:
                slot, up = put(s, path, size, f"{tool[0]}{r}-{size}.bin", start_put)
                down = finish(start_get(slot.get_url), 200, f"{s.key} GET", size)
                if size < MIB:   # latency in ms
                    puts[s.key].append(up * 1000)
                    gets[s.key].append(down * 1000)
                else:            # throughput in MiB/s
                    puts[s.key].append(size / MIB / up)
                    gets[s.key].append(size / MIB / down)
        # Untimed check that each system gives back the bytes it was sent.
        want = sha256(path)
        for s in systems if client is None else []:
            slot, _ = put(s, path, size, f"verify-{size}.bin")
            out = verify_dir / f"{s.key}-{size}.bin"
            finish(curl_get(slot.get_url, out), 200, f"{s.key} GET (verify)", size)
            if sha256(out) != want:
                raise RuntimeError(f"{s.key}: downloaded {size_name(size)} differs from the upload")
            out.unlink()
        if size < MIB:
            table.add(f"PUT {size_name(size)} latency, ms ({tool}, {n} runs)", "lower", puts, 2)
            table.add(f"GET {size_name(size)} latency, ms ({tool}, {n} runs)", "lower", gets, 2)
        else:
            table.add(f"PUT {size_name(size)}, MiB/s ({tool}, {n} runs)", "higher", puts)
            table.add(f"GET {size_name(size)}, MiB/s ({tool}, {n} runs)", "higher", gets)


def slot_phase(systems, satchel_via_ejabberd, table, runs, seconds, in_flight):
    """Slot rates, each compared through the same XMPP server: Satchel plugged
    into Prosody against Prosody's module, and a second Satchel plugged into
    ejabberd against ejabberd's."""
    progress(f"slot requests: sequential and {in_flight} in flight, {runs} x {seconds} s "
             "per system and mode")
    systems = systems + [satchel_via_ejabberd]

    async def run_all():
        by_server = {}
        for s in systems:
            if id(s.server) not in by_server:
                by_server[id(s.server)] = await loadgen.open_sessions(
                    s.server.c2s_port, servers.BENCH_USERS, in_flight + 1)
            s.sessions = by_server[id(s.server)]
        seq = {s.key: [] for s in systems}
        par = {s.key: [] for s in systems}
        client_cpu = {s.key: [] for s in systems}
        for s in systems:  # warm up (first slots, JIT-free but caches and routes)
            await loadgen.slot_rate(s.sessions[:1], s.service, 0.2)
        for _ in range(runs):
            for s in systems:
                seq[s.key].append(await loadgen.slot_rate(s.sessions[:1], s.service, seconds, s.key))
                cpu, wall = time.process_time(), time.monotonic()
                par[s.key].append(await loadgen.slot_rate(s.sessions[1:], s.service, seconds,
                                                          s.key))
                client_cpu[s.key].append(
                    100 * (time.process_time() - cpu) / (time.monotonic() - wall))
        for sessions in by_server.values():
            for x in sessions:
                x.close()
        return seq, par, client_cpu

    seq, par, client_cpu = asyncio.run(run_all())
    via_ej = satchel_via_ejabberd.key
    for mode, rates in (("sequential", seq),
                        (f"{in_flight} in flight on {in_flight} connections", par)):
        table.add(f"Slot requests/s through Prosody, {mode} ({runs} x {seconds} s)",
                  "higher", {"satchel": rates["satchel"], "prosody": rates["prosody"]}, 0)
        table.add(f"Slot requests/s through ejabberd, {mode}; Satchel plugged into ejabberd",
                  "higher", {"satchel": rates[via_ej], "ejabberd": rates["ejabberd"]}, 0)
    client_cpu["satchel"] = client_cpu.pop("satchel") + client_cpu.pop(via_ej)
    table.add(f"  load generator's CPU during the {in_flight}-in-flight runs, % of a core",
              "info", client_cpu, 0)


def concurrent_phase(systems, table, count, path, size, runs):
    progress(f"{count} concurrent {size_name(size)} uploads, then downloads, "
             f"{runs} run(s) per system")
    keys = [s.key for s in systems]
    up_rate, down_rate, peak, cpu_up, cpu_down = ({k: [] for k in keys} for _ in range(5))
    for r in range(runs):
        for s in systems:
            slots = [s.client.request_slot(f"c{r}-{i}.bin", size, CONTENT_TYPE, jid=s.service)
                     for i in range(count)]
            w = s.watched
            w.start_phase()
            cpu0, wb0 = w.cpu(), w.written()
            start = time.monotonic()
            procs = [curl_put(slot, path) for slot in slots]
            for p in procs:
                finish(p, 201, f"{s.key} concurrent PUT")
            up_wall = time.monotonic() - start
            cpu1 = w.cpu()
            s.written += w.written() - wb0
            s.uploaded += count * size
            start = time.monotonic()
            procs = [curl_get(slot.get_url) for slot in slots]
            for p in procs:
                finish(p, 200, f"{s.key} concurrent GET", size)
            down_wall = time.monotonic() - start
            cpu2 = w.cpu()
            up_rate[s.key].append(count * size / MIB / up_wall)
            down_rate[s.key].append(count * size / MIB / down_wall)
            peak[s.key].append(w.phase_peak() / MIB)
            cpu_up[s.key].append(cpu1 - cpu0)
            cpu_down[s.key].append(cpu2 - cpu1)
    what = f"{count} x {size_name(size)}"
    n = f"{runs} run{'s' if runs > 1 else ''}"
    table.add(f"{what} concurrent PUT, aggregate MiB/s ({n})", "higher", up_rate)
    table.add(f"{what} concurrent GET, aggregate MiB/s ({n})", "higher", down_rate)
    table.add(f"Peak RSS during the {what} phase, MiB ({n})", "lower", peak)
    table.add(f"CPU seconds of the {what} PUTs ({n})", "lower", cpu_up, 2)
    table.add(f"CPU seconds of the {what} GETs ({n})", "lower", cpu_down, 2)


def disk_usage(directory):
    """Bytes the files under `directory` occupy on disk (allocated blocks)."""
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass  # deleted by garbage collection meanwhile
    return total


def storage_phase(prosody, binary, max_file_size, payload, size, live_files, churn_factor):
    """Satchel only, on a store of its own: disk use after uploading and expiring
    `churn_factor` times the live data. Live files are uploaded with the
    `permanent` purpose; the churn with `message`, kept 2 s here, while garbage
    collection runs every second."""
    progress(f"storage: {live_files} x {size_name(size)} live, then {churn_factor} x that "
             "uploaded and expired")
    satchel = servers.make_satchel(prosody, binary, max_file_size, 20,
                                   retention={"message_secs": 2, "permanent_secs": 365 * 86400,
                                              "gc_interval_secs": 1})
    client = None
    try:
        satchel.start()
        wait_component(prosody, satchel=satchel)
        watched = procstat.Watched("satchel-storage", satchel.process.pid)
        client = connect_user(prosody, "alice")
        live = live_files * size

        def upload(name, purpose):
            slot = client.request_slot(name, size, CONTENT_TYPE, purpose=purpose)
            finish(curl_put(slot, payload), 201, f"storage phase PUT {name}")
            return slot

        written0 = watched.written()
        live_slots = [upload(f"live-{i}.bin", "permanent") for i in range(live_files)]
        with_live = disk_usage(satchel.store_path)
        for round_ in range(churn_factor):
            for i in range(live_files):
                upload(f"churn-{round_}-{i}.bin", "message")
        peak = disk_usage(satchel.store_path)
        # Expiry (2 s) plus two collections.
        deadline = time.monotonic() + 20
        after = disk_usage(satchel.store_path)
        while time.monotonic() < deadline:
            time.sleep(1)
            after = disk_usage(satchel.store_path)
            if after < with_live + 16 * MIB:
                break
        written = watched.written() - written0
        uploaded = live * (1 + churn_factor)
        # The figures are only worth something if the live data is still there.
        for slot in live_slots:
            finish(curl_get(slot.get_url), 200, "storage phase GET of a live file", size)
        return {"live": live, "with_live": with_live, "peak": peak, "after": after,
                "written_per_byte": written / uploaded, "uploaded": uploaded}
    finally:
        if client is not None:
            client.close()
        satchel.cleanup()


def hardware_has_aes():
    """What `storage.cipher = "auto"` looks for on x86-64: AES and carry-less multiply."""
    flags = next((l.split(":", 1)[1].split() for l in
                  Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")), [])
    return "aes" in flags and "pclmulqdq" in flags


def cipher_phase(prosody, binary, max_file_size, table, payload, size, runs):
    """Satchel alone, one fresh instance per cipher pinned in `storage.cipher`:
    curl PUT and GET of `payload`, to show what the choice of AEAD is worth."""
    ciphers = ["chacha20-poly1305"] + (["aes-256-gcm"] if hardware_has_aes() else [])
    for cipher in ciphers:
        progress(f"cipher {cipher}: PUT/GET {size_name(size)} x {runs} runs (Satchel alone)")
        satchel = servers.make_satchel(prosody, binary, max_file_size, 20, cipher=cipher)
        client = None
        try:
            satchel.start()
            wait_component(prosody, satchel=satchel)
            client = connect_user(prosody, "alice")
            puts, gets = [], []
            for r in range(runs):
                slot = client.request_slot(f"cipher-{r}.bin", size, CONTENT_TYPE)
                puts.append(size / MIB / finish(curl_put(slot, payload), 201,
                                                f"{cipher} PUT"))
                gets.append(size / MIB / finish(curl_get(slot.get_url), 200,
                                                f"{cipher} GET", size))
        finally:
            if client is not None:
                client.close()
            satchel.cleanup()
        table.add(f"  PUT {size_name(size)}, MiB/s, {cipher} pinned (curl, Satchel alone)",
                  "higher", {"satchel": puts})
        table.add(f"  GET {size_name(size)}, MiB/s, {cipher} pinned (curl, Satchel alone)",
                  "higher", {"satchel": gets})
    return ciphers


def write_chart(table, path, title):
    """One bar per compared figure and peer: how many times better Satchel does
    (its ratio, turned so that right of 1 always means Satchel leads)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("no chart: matplotlib is missing (pip install matplotlib)", flush=True)
        return
    first, others = table.systems[0], table.systems[1:]
    labels, bars = [], {o.key: [] for o in others}
    for label, better, values, _ in table.rows:
        mine = values.get(first.key, [])
        theirs = {o.key: values.get(o.key, []) for o in others}
        if better == "info" or not mine or not any(theirs.values()):
            continue
        # The run counts belong to the table; the tool (curl or Rust client) stays.
        short = re.sub(r" \((\d+ x [\d.]+ s|\d+ runs?)\)|, \d+ runs?(?=\))", "", label)
        labels.append(short.replace("; Satchel plugged into ejabberd", ""))
        for o in others:
            if theirs[o.key] and statistics.median(theirs[o.key]) > 0 and \
                    statistics.median(mine) > 0:
                ratio = statistics.median(mine) / statistics.median(theirs[o.key])
                bars[o.key].append(ratio if better == "higher" else 1 / ratio)
            else:
                bars[o.key].append(float("nan"))
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(labels) + 1.5))
    height = 0.8 / len(others)
    for i, o in enumerate(others):
        ys = [y + i * height for y in range(len(labels))]
        ax.barh(ys, bars[o.key], height=height, label=f"vs {o.label}")
    ax.set_yticks([y + height * (len(others) - 1) / 2 for y in range(len(labels))])
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%gx"))
    ax.set_xlabel("times better than the peer, log scale (right of 1x: Satchel leads)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"chart written to {path}", flush=True)


# -- main --------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 KiB and 1 MiB, 2 runs, short slot runs, "
                         "20 x 1 MiB concurrent")
    ap.add_argument("--runs", type=int, default=None,
                    help="runs per figure (default 5; 25 for 1 KiB latency, 9 for 1 MiB, "
                         "7 for 16 MiB; --quick: 2)")
    ap.add_argument("--concurrent", type=int, default=20, help="concurrent uploads (20)")
    ap.add_argument("--concurrent-runs", type=int, default=1,
                    help="runs of the concurrent phase (1: each run of 20 x 128 MiB takes "
                         "about 40 s and 7.5 GiB of disk for the three systems)")
    ap.add_argument("--markdown", type=Path, default=None,
                    help="also write the report (table and notes) to this file")
    ap.add_argument("--in-flight", type=int, default=32, help="slot requests in flight (32)")
    ap.add_argument("--slot-seconds", type=float, default=None,
                    help="length of one slot-rate run (3; --quick: 0.5)")
    ap.add_argument("--prosody-read-size", type=int, default=1 << 20,
                    help="Prosody's network_default_read_size (1 MiB; Prosody's own "
                         "default, 4096, holds uploads to ~3 MiB/s)")
    ap.add_argument("--chart", type=Path, default=None,
                    help="also draw the ratios as a PNG chart at this path (needs matplotlib)")
    ap.add_argument("--keep", action="store_true", help="leave the temp dirs behind")
    args = ap.parse_args()

    t0 = time.monotonic()
    load_start = loadavg()
    if args.quick:
        sizes = [KIB, MIB]
        runs_for = (lambda size: args.runs or 2)
        slot_runs, slot_seconds = args.runs or 2, args.slot_seconds or 0.5
        concurrent_size = MIB
    else:
        sizes = [KIB, MIB, 16 * MIB, 128 * MIB]
        default = {KIB: 25, MIB: 9, 16 * MIB: 7, 128 * MIB: 5}
        runs_for = (lambda size: args.runs or default[size])
        slot_runs, slot_seconds = args.runs or 5, args.slot_seconds or 3.0
        concurrent_size = 128 * MIB
    max_file_size = 128 * MIB  # every system, quick or not

    binary = release_binary()
    client = release_client()
    work = Path(tempfile.mkdtemp(prefix="satchel-bench-"))
    payloads = {size: make_payload(work, size) for size in sizes}
    concurrent_path = payloads.get(concurrent_size) or make_payload(work, concurrent_size)

    prosody = servers.make_prosody(max_file_size, args.prosody_read_size)
    ejabberd = servers.make_ejabberd(max_file_size)
    satchel = satchel_ej = None
    clients = []
    try:
        progress("starting Prosody, ejabberd and Satchel")
        prosody.start()
        ejabberd.start()
        satchel = servers.make_satchel(prosody, binary, max_file_size, args.concurrent)
        satchel.start()
        wait_component(prosody, satchel=satchel)
        # A second Satchel, plugged into ejabberd, for the slot rates through ejabberd.
        satchel_ej = servers.make_satchel(ejabberd, binary, max_file_size, args.concurrent)
        satchel_ej.start()
        wait_component(ejabberd, satchel=satchel_ej)
        time.sleep(1.0)
        prosody_pid = procstat.main_pid(prosody.process.pid)
        ejabberd_pid = procstat.main_pid(ejabberd.process.pid, prefer="beam.smp")
        systems = [
            System("satchel", "Satchel (via Prosody)", prosody, servers.COMPONENT_JID,
                   procstat.Watched("satchel", satchel.process.pid)),
            System("prosody", "Prosody mod_http_file_share", prosody, servers.SHARE_JID,
                   procstat.Watched("prosody", prosody_pid)),
            System("ejabberd", "ejabberd mod_http_upload", ejabberd, servers.SHARE_JID,
                   procstat.Watched("ejabberd", ejabberd_pid)),
        ]
        table = Table(systems)
        idle = {s.key: [s.watched.rss() / MIB] for s in systems}
        satchel_cpu0 = systems[0].watched.cpu()
        for s in systems:
            c = connect_user(s.server, "alice")
            clients.append(c)
            s.client = c
            # Warm-up: one small upload and download each, untimed.
            slot, _ = put(s, payloads[KIB], KIB, "warmup.bin")
            finish(curl_get(slot.get_url), 200, f"{s.key} warm-up GET", KIB)
            s.written = s.uploaded = 0

        http_cpu = {s.key: -s.watched.cpu() for s in systems}
        http_phase(systems, table, payloads, runs_for, work)
        http_phase(systems, table, payloads, runs_for, work, client=client)
        for s in systems:
            http_cpu[s.key] += s.watched.cpu()
        slot_phase(systems,
                   System("satchel-ej", "Satchel (via ejabberd)", ejabberd,
                          servers.COMPONENT_JID,
                          procstat.Watched("satchel-ej", satchel_ej.process.pid)),
                   table, slot_runs, slot_seconds, args.in_flight)
        satchel_ej.cleanup()
        satchel_ej = None
        for s in systems:
            http_cpu[s.key] -= s.watched.cpu()
        concurrent_phase(systems, table, args.concurrent, concurrent_path, concurrent_size,
                         args.concurrent_runs)
        for s in systems:
            http_cpu[s.key] += s.watched.cpu()
        table.add("CPU seconds of every PUT and GET above (sequential and concurrent)",
                  "lower", {key: [cpu] for key, cpu in http_cpu.items()}, 2)

        table.add("Idle RSS after start, MiB", "lower", idle)
        table.add("Peak RSS over the whole run, MiB", "lower",
                  {s.key: [s.watched.final_peak() / MIB] for s in systems})
        table.add("Disk bytes written per byte uploaded (/proc/PID/io write_bytes, all PUTs)",
                  "lower", {s.key: [s.written / s.uploaded] for s in systems}, 2)
        satchel_cpu = systems[0].watched.cpu() - satchel_cpu0

        # Satchel alone from here: a fresh instance takes over the component.
        satchel.stop()
        storage_size = MIB if args.quick else 8 * MIB
        storage = storage_phase(prosody, binary, max_file_size,
                                payloads.get(storage_size) or make_payload(work, storage_size),
                                storage_size, live_files=8, churn_factor=10)
        live = storage["live"]
        table.add(f"Disk use with {live // MIB} MiB live, / live bytes (Satchel alone)",
                  "lower", {"satchel": [storage["with_live"] / live]}, 2)
        table.add("  after uploading and expiring 10 x that, / live bytes", "lower",
                  {"satchel": [storage["after"] / live]}, 2)
        table.add("  after uploading and expiring 10 x that, MiB above the live bytes", "lower",
                  {"satchel": [(storage["after"] - live) / MIB]}, 1)
        table.add("  disk bytes written per byte uploaded in this phase", "lower",
                  {"satchel": [storage["written_per_byte"]]}, 2)
        cipher_size = max(sizes)
        ciphers = cipher_phase(prosody, binary, max_file_size, table, payloads[cipher_size],
                               cipher_size, runs_for(cipher_size))
        load_end = loadavg()
        elapsed = time.monotonic() - t0

        cpu = next((l.split(":", 1)[1].strip() for l in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if l.startswith("model name")), platform.processor())
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                             capture_output=True, text=True).stdout.strip()
        report = []

        def out(line=""):
            report.append(line)

        out()
        out(f"## Satchel vs Prosody vs ejabberd{' (--quick smoke run)' if args.quick else ''}")
        out()
        out(f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {os.cpu_count()} cores ({cpu}); "
            f"Linux {platform.release()}; load average (1/5/15 min) {load_start} at start, "
            f"{load_end} at the end; {elapsed:.0f} s in all.")
        out(f"Satchel {binary} (git {rev}), Prosody 0.12 mod_http_file_share "
            f"(network_default_read_size {args.prosody_read_size}), ejabberd 23.01 "
            f"mod_http_upload; largest file {size_name(max_file_size)} for all, no quotas; "
            "curl on 127.0.0.1, runs interleaved across the systems. Cells: median "
            "(min-max); ratio = Satchel's median / the other's (lower is better where "
            "'better' says so).")
        out()
        out(table.render())
        out()
        out("Notes:")
        out("- Satchel's memory, CPU and disk figures are Satchel's process alone; the "
            "Prosody that routes its slot requests also hosts mod_http_file_share, so its "
            "figures are in the Prosody column. ejabberd's are beam.smp's.")
        out(f"- Satchel used {satchel_cpu:.1f} CPU seconds over the whole run.")
        out(f"- Server settings (examples/bench/servers/): Prosody's network_default_read_size "
            f"is {args.prosody_read_size} instead of 4096, with which its uploads run at "
            "about 3 MiB/s; its archive item limit (10 000 slots) is lifted. ejabberd has no "
            "shaper. Prosody and ejabberd log at info level, Satchel at warn.")
        out("- Slot requests go client -> server -> module for Prosody and ejabberd, and "
            "client -> server -> Satchel -> server -> client for Satchel, which is plugged "
            "into Prosody for every other figure and, for the slot rates through ejabberd, "
            "a second Satchel is plugged into ejabberd. The load "
            "generator (Python, raw XMPP over asyncio) shares the 2 cores with the "
            "servers: at ~100% of a core it is the limit, not the server.")
        out(f"- Fewer runs for the big figures: {runs_for(max(sizes))} for "
            f"{size_name(max(sizes))}, {args.concurrent_runs} for the {args.concurrent}-"
            f"concurrent phase (--concurrent-runs), whose {args.concurrent} curl processes "
            "share the cores with the server. Peak RSS is VmHWM, reset before each "
            "concurrent phase (/proc/PID/clear_refs).")
        out("- Rust client: examples/bench/http_client.rs (hyper, one connection, the "
            "file in memory before the clock starts, 1 MiB frames); it takes curl's own "
            "costs (file reads, its copies) out of the figures.")
        out(f"- Storage phase: a fresh Satchel store; {storage['uploaded'] // MIB} MiB "
            "uploaded in all; disk use is the allocated blocks of every file in the store "
            "(sled's files included), measured once garbage collection had run.")
        out(f"- Cipher rows: a fresh Satchel per cipher pinned in `storage.cipher`; the "
            f"main columns use `auto`, which picks "
            f"{'aes-256-gcm' if hardware_has_aes() else 'chacha20-poly1305'} on this CPU.")
        skipped = ["microbenchmarks (slot handler, chunk crypto, Range, thumbnails): "
                   "`cargo bench --bench hot_paths`, not part of this command"]
        if len(ciphers) == 1:
            skipped.append("aes-256-gcm row (this CPU lacks AES or carry-less multiply)")
        if args.quick:
            skipped.insert(0, "16 MiB and 128 MiB sizes, and 20 x 128 MiB (20 x 1 MiB instead)"
                              " (--quick)")
        out("- Skipped: " + "; ".join(skipped) + ".")
        print("\n".join(report))
        if args.markdown:
            args.markdown.write_text("\n".join(report).lstrip("\n") + "\n")
        if args.chart:
            write_chart(table, args.chart, f"Satchel vs its peers, {time.strftime('%Y-%m-%d')}, "
                        f"{os.cpu_count()} cores\nload average {load_start} at start, "
                        f"{load_end} at the end")
    finally:
        for c in clients:
            c.close()
        for instance in (satchel, satchel_ej):
            if instance is not None:
                instance.stop() if args.keep else instance.cleanup()
        for server in (prosody, ejabberd):
            server.stop() if args.keep else server.cleanup()
        if args.keep:
            print(f"kept: {work}, {prosody.dir}, {ejabberd.dir}"
                  + (f", {satchel.dir}" if satchel else ""))
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
