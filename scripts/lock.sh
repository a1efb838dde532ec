#!/usr/bin/env bash
# Refreshes the lock files (`make lock`): every Python dependency pinned, with hashes, for
# every platform and Python we run on (universal: x86_64 CI, the Pi's aarch64; 3.11 to 3.13).
#
#   requirements/dev.txt        the project with its test extra (setup.sh, CI)
#   requirements/appliance.txt  the appliance extra only (image/install.sh, the SD image)
#   requirements/build.txt      the build backend (setuptools, wheel): setup and the image
#                               build the project without build isolation, from this lock
#
# Pins move only within pyproject.toml's ranges and caps. After a refresh `make test` is the
# gate: tests/unit/test_aiortc_glue.py and tests/unit/test_engine.py check the aiortc and
# python-engineio internals we rely on. LOCK_ARGS="" keeps the pins that still fit instead
# of taking the newest.
set -euo pipefail
cd "$(dirname "$0")/.."

UV=${UV:-.venv/bin/uv}
if [ ! -x "$UV" ]; then
    echo "lock: $UV not found: run make setup first" >&2
    exit 1
fi
args=(--universal --python-version 3.11 --generate-hashes --quiet
    --custom-compile-command "make lock")
read -r -a extra <<<"${LOCK_ARGS---upgrade}"
args+=("${extra[@]}")

"$UV" pip compile "${args[@]}" pyproject.toml --extra test -o requirements/dev.txt
"$UV" pip compile "${args[@]}" pyproject.toml --extra appliance -o requirements/appliance.txt
"$UV" pip compile "${args[@]}" requirements/build.in -o requirements/build.txt
for lock in requirements/*.txt; do
    echo "lock: $lock: $(grep -c '^[a-z]' "$lock") pins"
done
