"""Per-process figures from /proc: RSS (current and peak), CPU seconds, bytes
written to disk. Linux only; resetting the peak RSS needs root (or the owner)."""

import os
from pathlib import Path

MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


def status_bytes(pid, field):
    """A kB field of /proc/PID/status (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def rss(pid):
    return status_bytes(pid, "VmRSS")


def peak_rss(pid):
    return status_bytes(pid, "VmHWM")


def reset_peak_rss(pid):
    """Make VmHWM start again from the current RSS (clear_refs 5, Linux >= 4.0).
    Returns False when the kernel or permissions do not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid):
    """User + system CPU seconds of the process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def write_bytes(pid):
    """Bytes the process caused to be written to storage (/proc/PID/io)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise KeyError("write_bytes")


def comm(pid):
    return Path(f"/proc/{pid}/comm").read_text().strip()


def group_pids(pgid):
    """Every live process whose process group is `pgid`."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            pids.append(int(d.name))
    return pids


def main_pid(leader, prefer=None):
    """The process doing the work in `leader`'s process group: the one named
    `prefer` (e.g. "beam.smp"), else the one with the largest RSS."""
    pids = group_pids(leader) or [leader]
    if prefer:
        named = [p for p in pids if comm(p) == prefer]
        if named:
            return named[0]
    return max(pids, key=lambda p: rss(p))


class Watched:
    """One server process: its figures, with the peak RSS tracked across resets."""

    def __init__(self, name, pid):
        self.name = name
        self.pid = pid
        self.overall_peak = peak_rss(pid)

    def rss(self):
        return rss(self.pid)

    def start_phase(self):
        """Reset the peak RSS for a phase; the overall peak is kept."""
        self.overall_peak = max(self.overall_peak, peak_rss(self.pid))
        self.can_reset = reset_peak_rss(self.pid)

    def phase_peak(self):
        peak = peak_rss(self.pid)
        self.overall_peak = max(self.overall_peak, peak)
        return peak

    def cpu(self):
        return cpu_seconds(self.pid)

    def written(self):
        return write_bytes(self.pid)

    def final_peak(self):
        return max(self.overall_peak, peak_rss(self.pid))
