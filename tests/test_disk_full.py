"""Disk full: an upload that does not fit fails with 507, Satchel stays up,
nothing stored before is damaged, and it works again once space returns.

The store lives on a small tmpfs mounted for the test (needs root, as CI is)."""

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from harness.client import wait_component
from harness.satchel import Satchel

TIMEOUT = 30
MIB = 1024 * 1024


@pytest.fixture
def small_disk():
    mountpoint = Path(tempfile.mkdtemp(prefix="satchel-tmpfs-"))
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "tmpfs", str(mountpoint)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        mountpoint.rmdir()


def put(slot, data):
    return requests.put(slot.put_url, data=data, timeout=TIMEOUT,
                        headers={"Content-Type": "application/octet-stream"})


def test_a_full_disk_gives_507_and_recovers(server, satchel_manager, small_disk, connect):
    satchel_manager.invalidate()
    satchel = Satchel(server, {
        "storage": {"path": str(small_disk / "store")},
        "limits": {"max_file_size": 64 * MIB, "min_free_disk_percent": 0,
                   "daily_upload_bytes": 1024 * MIB, "user_storage_bytes": 1024 * MIB},
    })
    try:
        satchel.start()
        wait_component(server, satchel=satchel)
        alice = connect("alice")
        kept = os.urandom(8 * MIB)
        first = alice.request_slot("kept.bin", len(kept))
        assert put(first, kept).status_code == 201

        big = os.urandom(16 * MIB)
        slot = alice.request_slot("too-big-now.bin", len(big))
        # Someone else fills the disk after the slot was granted.
        filler = small_disk / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=64"],
                       capture_output=True, check=False)
        r = put(slot, big)
        assert r.status_code == 507, (r.status_code, r.text)
        assert "storage" in r.text
        assert "the disk holding the store is full" in satchel.logs(200)
        assert satchel.running(), "Satchel died on a full disk"
        assert alice.ping()
        got = requests.get(first.get_url, timeout=TIMEOUT)
        assert got.status_code == 200
        assert hashlib.sha256(got.content).digest() == hashlib.sha256(kept).digest()
        assert requests.get(slot.get_url, timeout=TIMEOUT).status_code == 404

        filler.unlink()
        assert put(slot, big).status_code == 201, "the same slot works once space is back"
        assert requests.get(slot.get_url, timeout=TIMEOUT).content == big
    finally:
        satchel.cleanup()
