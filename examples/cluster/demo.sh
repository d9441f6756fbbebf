#!/usr/bin/env bash
# Satchel's cluster mode in one command, on a fresh Debian 12 machine (as root):
#
#   bash examples/cluster/demo.sh          # run it, then stop everything
#   bash examples/cluster/demo.sh --keep   # leave everything running
#
# Installs what is missing (Prosody, PostgreSQL, Python packages, and Garage
# with cargo install: about 8 minutes the first time), builds Satchel, and
# runs examples/cluster/demo.py: a 3-node Garage cluster, PostgreSQL, Prosody
# and two Satchel instances on 127.0.0.1; an upload through one instance, the
# download through the other, then the leader killed and the other taking over.
set -euo pipefail
cd "$(dirname "$0")/../.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in prosody prosody-modules postgresql python3-venv; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing ${missing[*]} (without starting system-wide daemons)"
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        trap '$SUDO rm -f "$policy"' EXIT
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v garage >/dev/null; then
    echo "==> building Garage 2.5 (cargo install, about 8 minutes the first time)"
    cargo install garage --version 2.5.0 --locked --no-default-features \
        --features lmdb,bundled-libs --quiet
fi

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c "import slixmpp, requests, boto3" 2>/dev/null; then
    echo "==> installing Python packages (tests/requirements.txt)"
    if ! "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
            -r tests/requirements.txt; then
        venv="${XDG_CACHE_HOME:-$HOME/.cache}/satchel-tests-venv"
        [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
        PYTHON="$venv/bin/python"
        "$PYTHON" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
    fi
fi

echo "==> building Satchel (cargo build)"
cargo build --quiet --bin satchel
export SATCHEL_BIN="$PWD/target/debug/satchel"

exec "$PYTHON" examples/cluster/demo.py "$@"
