"""The Debian package `cargo deb` builds holds what an operator installs.

`.ci/run` builds it (`cargo deb`, crates.io cargo-deb) and sets
SATCHEL_REQUIRE_DEB=1, so in CI a missing package fails here; run by hand
without a package, the tests are skipped. They read the package with
`dpkg-deb` and unpack it with `dpkg -x` into a temp dir: nothing is installed,
no user is made, the system is not touched.

What is checked is what `apt install ./target/debian/satchel_*.deb` then
`systemctl enable --now satchel` relies on: the binary in /usr/bin, the unit
where systemd looks (neither enabled nor started at install: the component
secret must be set first), /etc/satchel/satchel.toml as a conffile (an upgrade
keeps the operator's edits) and a postinst that makes the satchel user the
unit runs as, and hands it the configuration.
"""

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "systemd"
UNIT_PATH = "usr/lib/systemd/system/satchel.service"
CONF_PATH = "etc/satchel/satchel.toml"


def package_path():
    """target/debian/satchel_<Cargo.toml version>-1_<arch>.deb, if built."""
    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    found = sorted((ROOT / "target" / "debian").glob(f"satchel_{version}-1_*.deb"))
    return found[-1] if found else None


DEB = package_path()

pytestmark = [
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is missing"),
    pytest.mark.skipif(DEB is None and not os.environ.get("SATCHEL_REQUIRE_DEB"),
                       reason="no target/debian/satchel_*.deb: run `cargo deb` first"),
]


@pytest.fixture(scope="module")
def deb():
    assert DEB is not None, "SATCHEL_REQUIRE_DEB is set but `cargo deb` built no package"
    return DEB


def dpkg_deb(*args):
    result = subprocess.run(["dpkg-deb", *args], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def contents(deb):
    """{path without './': (mode string, uid/gid)} of the package's files."""
    files = {}
    for line in dpkg_deb("--contents", str(deb)).splitlines():
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        files[path.removeprefix("./").split(" -> ")[0]] = (mode, owner)
    return files


def test_package_holds_the_binary_the_unit_and_the_configuration(deb):
    files = contents(deb)
    assert files["usr/bin/satchel"] == ("-rwxr-xr-x", "0/0")
    assert files[UNIT_PATH] == ("-rw-r--r--", "0/0")
    # Not readable by others even before the postinst hands it to group satchel.
    assert files[CONF_PATH] == ("-rw-r-----", "0/0")


def test_configuration_is_a_conffile_and_the_control_names_the_package(deb):
    control = dpkg_deb("--field", str(deb))
    fields = dict(re.findall(r"^([\w-]+): (.*)$", control, re.M))
    assert fields["Package"] == "satchel"
    assert "passwd" in fields["Depends"], control  # useradd, groupadd
    assert dpkg_deb("--info", str(deb), "conffiles").split() == ["/" + CONF_PATH]


def test_postinst_makes_the_user_and_leaves_the_service_off(deb):
    postinst = dpkg_deb("--info", str(deb), "postinst")
    # Continued lines joined: the user, in group satchel, with no login.
    joined = re.sub(r"\\\n\s*", "", postinst)
    assert re.search(r"^\s*useradd --system --gid satchel .*--shell /usr/sbin/nologin .*satchel$",
                     joined, re.M), postinst
    assert re.search(r"^\s*groupadd --system satchel$", postinst, re.M), postinst
    assert "install -d -o satchel -g satchel -m 0700 /var/lib/satchel" in postinst
    assert "chown root:satchel /etc/satchel/satchel.toml" in postinst
    # cargo-deb's systemd fragment replaced the #DEBHELPER# token: systemd
    # rereads its units, an upgrade restarts a Satchel that runs, and nothing
    # enables or starts it at install.
    assert "#DEBHELPER#" not in postinst
    assert "systemctl --system daemon-reload" in postinst
    assert "deb-systemd-invoke try-restart satchel.service" in postinst
    assert "enable" not in postinst.replace("--system", ""), postinst
    assert not re.search(r"deb-systemd-invoke (start|restart) ", postinst), postinst
    # Removing the package stops the service.
    assert "deb-systemd-invoke stop satchel.service" in dpkg_deb("--info", str(deb), "prerm")
    result = subprocess.run(["sh", "-n"], input=postinst, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_unpacked_files_are_the_examples_and_the_binary_runs(deb, tmp_path):
    subprocess.run(["dpkg", "-x", str(deb), str(tmp_path)], check=True, timeout=120)
    stale = f"{deb.name} differs from examples/systemd/: rebuild it with `cargo deb`"
    assert (tmp_path / UNIT_PATH).read_text() == (EXAMPLES / "satchel.service").read_text(), stale
    assert (tmp_path / CONF_PATH).read_text() == (EXAMPLES / "satchel.toml").read_text(), stale
    binary = tmp_path / "usr" / "bin" / "satchel"
    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"satchel {version}"
