#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian/Ubuntu machine:
# system packages (Janus, Chromium for the browser tests, Node.js/npm for the pages'
# socket.io client, Python venv support), the project in .venv with its locked
# dependencies (requirements/dev.txt, `make lock` refreshes it), and the
# browser pages' assets. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(janus python3-venv iproute2 chromium shellcheck)
command -v npm >/dev/null || APT_PACKAGES+=(nodejs npm)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The Debian package starts a system-wide Janus on the default ports; ours run on their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet janus 2>/dev/null; then
    as_root systemctl disable --now janus >/dev/null 2>&1 || true
fi

PYTHON=${PYTHON:-python3}
"$PYTHON" - <<'PY' || { echo "setup: Python 3.11 or newer is required" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

# pip, quiet when it succeeds; when it fails, all it said and a non-zero exit.
pip_install() {
    local log
    log=$(mktemp)
    if ! .venv/bin/python -m pip install "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "setup: pip install $* failed" >&2
        exit 1
    fi
    rm -f "$log"
}

# The locked dependencies (requirements/dev.txt, hashes checked), then the project itself,
# editable, built with the locked setuptools.
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ requirements/dev.txt -nt "$stamp" ] ||
    [ requirements/build.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    echo "setup: installing the locked dependencies and the project into .venv"
    pip_install -q --require-hashes --no-deps -r requirements/build.txt -r requirements/dev.txt
    pip_install -q --no-deps --no-build-isolation -e .
    if ! conflicts=$(.venv/bin/python -m pip check); then
        echo "$conflicts" >&2
        echo "setup: pip check failed" >&2
        exit 1
    fi
    .venv/bin/python -c "import cvh_camera.server.app, cvh_camera.appliance.cli, playwright"
    touch "$stamp"
fi

lock=server/web/package-lock.json
vendor=server/web/static/vendor/socket.io.esm.min.js
if [ ! -f "$vendor" ] || [ "$lock" -nt "$vendor" ]; then
    scripts/build-web.sh
fi
