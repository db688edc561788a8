#!/usr/bin/env bash
# Set up a fresh machine for this project: the system libsodium and a virtualenv in .venv
# with the project and its test extra installed. Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
EXTRAS="${KMS_EXTRAS:-test}"

have_sodium() {
    "$PYTHON" - <<'PY'
import ctypes, ctypes.util, sys
for name in (ctypes.util.find_library("sodium"), "libsodium.so.23"):
    if name:
        try:
            ctypes.CDLL(name)
            sys.exit(0)
        except OSError:
            pass
sys.exit(1)
PY
}

if ! have_sodium; then
    echo "setup: installing libsodium (Debian package libsodium23)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq libsodium23 >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
echo "setup: installing the project with extras [$EXTRAS]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"
echo "setup: done"
