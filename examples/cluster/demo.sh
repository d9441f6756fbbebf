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

source examples/demo_setup.sh
install_packages prosody prosody-modules postgresql python3-venv
if ! command -v garage >/dev/null; then
    echo "==> building Garage 2.5 (cargo install, about 8 minutes the first time)"
    cargo install garage --version 2.5.0 --locked --no-default-features \
        --features lmdb,bundled-libs --quiet
fi
use_python "slixmpp, requests, boto3"
build_satchel

exec "$PYTHON" examples/cluster/demo.py "$@"
