# What the demos' scripts share (sourced by examples/demo.sh and
# examples/cluster/demo.sh, from the repository's root): installing missing
# Debian packages without starting their system-wide daemons, a Python with
# tests/requirements.txt, and a build of Satchel.

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# install_packages PKG...: apt-get installs those that are missing.
install_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    echo "==> installing ${missing[*]} (without starting system-wide daemons)"
    local policy=/usr/sbin/policy-rc.d placed=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
        placed=yes
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    if [ -n "$placed" ]; then $SUDO rm -f "$policy"; fi
}

# use_python MODULES: sets PYTHON to a Python that imports MODULES (comma
# separated), installing tests/requirements.txt (into a venv if pip refuses).
use_python() {
    PYTHON="${PYTHON:-python3}"
    "$PYTHON" -c "import $1" 2>/dev/null && return 0
    echo "==> installing Python packages (tests/requirements.txt)"
    if ! "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
            -r tests/requirements.txt; then
        local venv="${XDG_CACHE_HOME:-$HOME/.cache}/satchel-tests-venv"
        [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
        PYTHON="$venv/bin/python"
        "$PYTHON" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
    fi
}

# build_satchel: a debug build, named by SATCHEL_BIN for the harness.
build_satchel() {
    echo "==> building Satchel (cargo build)"
    cargo build --quiet --bin satchel
    export SATCHEL_BIN="$PWD/target/debug/satchel"
}
