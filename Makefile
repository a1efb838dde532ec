# Every target sets up what it needs first (scripts/setup.sh is idempotent).
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# The original Node.js server's built dist/server.js, for the benchmarks' side-by-side runs
# (fetch CampusVH/cvh-camera, then `npm ci && npx tsc` in camera-server/).
BASELINE ?=
BASELINE_ARG := $(if $(BASELINE),--baseline $(BASELINE),)

.PHONY: setup lock web demo server check test lint unit integration image-test bench soak clean

setup:
	@scripts/setup.sh

lock: setup  ## refresh requirements/*.txt (pinned, hashed) within pyproject.toml's caps; then make test
	scripts/lock.sh

web:  ## the browser pages' third-party assets (npm ci + copy into server/web/static/vendor)
	scripts/build-web.sh

demo: setup  ## Janus, the slot server and an appliance on the test camera; prints where to watch
	$(BIN)/cvh-camera demo

server: setup  ## the slot server with config/server.yaml
	$(BIN)/cvh-camera server --config config/server.yaml

check: test image-test  ## everything CI runs (.ci/run): lint, type check, all tests, the emulated SD image

test: setup lint  ## lint, type check, unit and integration tests (~4 min)
	PYTHONASYNCIODEBUG=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: setup
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: setup
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

image-test: setup  ## the SD image end to end in an emulated arm64 machine (root; cold ~25-40 min, warm ~6 min)
	image/emulate/prepare-host.sh
	image/emulate/build-rootfs.sh >/dev/null
	CVH_IMAGE_TEST=1 $(BIN)/python -m pytest tests/image $(PYTEST_ARGS)

bench: setup  ## every benchmark; each prints its figures and rewrites its section of bench/RESULTS.md
	$(BIN)/python -m bench.fanout $(BASELINE_ARG) --write-results
	$(BIN)/python -m bench.publisher_cpu --write-results
	$(BIN)/python -m bench.first_frame --write-results
	$(BIN)/python -m bench.browser_first_frame --write-results
	$(BIN)/python -m bench.edges --write-results

soak: setup  ## 3000 receivers, senders coming and going, geometry 10/s, for 10 minutes (not in CI)
	$(BIN)/python -m bench.soak $(BASELINE_ARG) --write-results

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
