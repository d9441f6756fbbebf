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

source examples/demo_setup.sh
install_packages prosody prosody-modules python3-venv
modules="slixmpp, requests"
if [ "$DEMO" = examples/offline_demo.py ]; then modules="$modules, PIL"; fi
use_python "$modules"
build_satchel

exec "$PYTHON" "$DEMO" ${args[@]+"${args[@]}"}
