#!/usr/bin/env bash
# Refreshes the lock files (`make lock`): every Python dependency pinned, with hashes, for
# every platform and Python we run on (universal: x86_64 CI, the Pi's aarch64; 3.11 to 3.13).
#
#   requirements/dev.txt        the project with its test extra (setup.sh, CI)
#   requirements/appliance.txt  the appliance extra only (image/install.sh, the SD image)
#
# dev.txt also pins the build backend (setuptools, wheel): setup builds the project, and the
# wheel the image installs, without build isolation, so nothing is fetched unpinned. Pins move only within pyproject.toml's ranges
# and caps; after a refresh, `make test` is the gate (tests/unit/test_aiortc_glue.py and
# tests/unit/test_engine.py check the internals we rely on). LOCK_ARGS="" keeps the pins
# that still fit instead of taking the newest.
set -euo pipefail
cd "$(dirname "$0")/.."

UV=${UV:-.venv/bin/uv}
[ -x "$UV" ] || { echo "lock: $UV not found: run make setup first" >&2; exit 1; }
args=(--universal --python-version 3.11 --generate-hashes --quiet
    --custom-compile-command "make lock" ${LOCK_ARGS---upgrade})

"$UV" pip compile "${args[@]}" pyproject.toml requirements/build.in --extra test \
    -o requirements/dev.txt
"$UV" pip compile "${args[@]}" pyproject.toml --extra appliance \
    -o requirements/appliance.txt
echo "lock: requirements/dev.txt ($(grep -c '^[a-z]' requirements/dev.txt) packages)," \
    "requirements/appliance.txt ($(grep -c '^[a-z]' requirements/appliance.txt) packages)"
