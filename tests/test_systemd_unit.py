"""The example systemd unit (examples/systemd/satchel.service) is valid and hardened.

`systemd-analyze verify` and `systemd-analyze security --offline=true` read a unit
file without a running systemd (Debian package `systemd`, installed by .ci/run), so
no XMPP server is needed here.

`verify` checks that ExecStart's binary exists, and the unit names the installed
/usr/bin/satchel: the test verifies a copy of the unit, in a temp dir, whose
ExecStart names the freshly built binary instead; every other line is the example's.
`verify` exits 0 even on unknown keys (it only warns), so its output must be empty.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "examples" / "systemd" / "satchel.service"
INSTALLED_EXEC = "ExecStart=/usr/bin/satchel --config /etc/satchel/satchel.toml"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is missing (Debian package systemd; .ci/run installs it)")


def analyze(*args):
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def settings(text):
    """The unit's `Key=value` lines, as (key, value) pairs in order."""
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            pairs.append((key, value))
    return pairs


def test_unit_runs_satchel_as_a_notify_service_of_its_own_user():
    unit = dict(settings(UNIT.read_text()))
    assert INSTALLED_EXEC in UNIT.read_text()
    assert unit["Type"] == "notify"
    assert unit["Restart"] == "on-failure"
    assert unit["User"] == "satchel"
    assert unit["StateDirectory"] == "satchel"
    assert unit["ProtectSystem"] == "strict"
    assert unit["ReadWritePaths"] == "/var/lib/satchel"
    assert unit["CapabilityBoundingSet"] == ""
    assert unit["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"
    # Room for the largest default connection cap: 16384 connections x 2 + 256 files.
    assert int(unit["LimitNOFILE"]) >= 16384 * 2 + 256


def test_systemd_analyze_verify_accepts_the_unit(tmp_path, satchel_bin):
    text = UNIT.read_text()
    copy = tmp_path / "satchel.service"
    copy.write_text(text.replace(
        INSTALLED_EXEC, f"ExecStart={Path(satchel_bin).resolve()} --config /etc/satchel/satchel.toml"))
    result = analyze("verify", str(copy))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == "", "verify warned:\n" + result.stderr


def test_systemd_analyze_security_rates_the_unit_ok():
    result = analyze("security", "--offline=true", str(UNIT))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for satchel\.service: (\d+\.\d) (\S+)",
                      result.stdout)
    assert match, result.stdout
    exposure, verdict = float(match.group(1)), match.group(2)
    assert exposure <= 2.0, result.stdout
    assert verdict == "OK", result.stdout
    # The exit status agrees: over a threshold of 2.0 (20 in tenths) it would fail.
    assert analyze("security", "--offline=true", "--threshold=20", str(UNIT)).returncode == 0
