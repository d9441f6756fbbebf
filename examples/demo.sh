#!/usr/bin/env bash
# Satchel in one command, on a fresh Debian 12 machine (as root, or with sudo):
#
#   bash examples/demo.sh                # upload and relay, then stop everything
#   bash examples/demo.sh --keep         # leave Prosody and Satchel running
#   bash examples/demo.sh --upload-only  # just a XEP-0363 upload and download
#
# Installs what is missing (Prosody, Python packages), builds Satchel, starts a
# local Prosody on loopback with Satchel as its component, and runs
# examples/offline_demo.py: alice uploads a photo through a XEP-0363 slot and
# has Satchel relay it to bob while bob is offline; bob logs in later, gets the
# message with its thumbnail, downloads the photo and checks its SHA-256. Its
# own options pass through: --keep, --no-offline, --privileged, --server.
# With --upload-only it runs examples/demo_client.py instead: alice uploads a
# generated PNG, downloads it back and compares the bytes.
# Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO=examples/offline_demo.py
args=()
for a in "$@"; do
    if [ "$a" = "--upload-only" ]; then DEMO=examples/demo_client.py; else args+=("$a"); fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in prosody prosody-modules python3-venv; do
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

PYTHON="${PYTHON:-python3}"
modules="slixmpp, requests"
if [ "$DEMO" = examples/offline_demo.py ]; then modules="$modules, PIL"; fi
if ! "$PYTHON" -c "import $modules" 2>/dev/null; then
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

exec "$PYTHON" "$DEMO" ${args[@]+"${args[@]}"}
