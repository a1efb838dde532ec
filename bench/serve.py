"""The slot server in a process of its own, for benchmarks.

`python -m bench.serve [--config FILE] [--uvloop]` runs what `cvh-camera server [--config
FILE]` runs, with what a benchmark needs: a choice of event loop and garbage-collector
thresholds, full collections in the log, and an open-files limit high enough for thousands
of sockets. Without --config it reads the configuration as `cvh-camera server` does: the
original server's JSON named by CONFIG_PATH (and CVH_CAMERA_CONFIG_* variables), with the
controller on standard input.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from bench.rig import raise_nofile
from cvh_camera.eventloop import new_event_loop
from cvh_camera.logsetup import setup_logging
from cvh_camera.server.app import SHUTDOWN_GRACE, create_app
from cvh_camera.server.cli import load, tune_garbage_collector
from cvh_camera.server.config import ConfigError, describe

log = logging.getLogger("bench.serve")


def _gc_logger() -> Callable[[str, dict[str, int]], None]:
    """A gc callback that logs each full (generation 2) collection and how long it took."""
    started = 0.0

    def on_gc(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if info["generation"] != 2:
            return
        if phase == "start":
            started = time.perf_counter()
        else:
            took = (time.perf_counter() - started) * 1000
            log.info("gc generation=2 took_ms=%.1f collected=%d", took, info["collected"])

    return on_gc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--config", type=Path, help="server YAML (default: CONFIG_PATH, the legacy JSON)"
    )
    parser.add_argument(
        "--uvloop",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="uvloop, as `cvh-camera server` uses it (--no-uvloop: asyncio's loop)",
    )
    parser.add_argument("--log-gc", action="store_true", help="log full garbage collections")
    parser.add_argument(
        "--gc-threshold",
        type=lambda text: tuple(int(part) for part in text.split(",")),
        help="gc.set_threshold(...) instead of the server's own tuning, "
        "e.g. 700,10,10 (Python's default)",
    )
    args = parser.parse_args()
    setup_logging("info")  # the legacy configuration's warnings, before its own level
    try:
        config = load(args, dict(os.environ))
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    nofile = raise_nofile()
    if args.gc_threshold:
        gc.set_threshold(*args.gc_threshold)
    else:
        tune_garbage_collector()
    if args.log_gc:
        gc.callbacks.append(_gc_logger())
    loop = new_event_loop() if args.uvloop else asyncio.new_event_loop()
    log.info(
        "bench server loop=%s nofile=%d gc_threshold=%s %s",
        type(loop).__module__,
        nofile,
        ",".join(map(str, gc.get_threshold())),
        describe(config),
    )
    web.run_app(
        create_app(config),
        host=config.host,
        port=config.port,
        print=None,
        access_log=None,
        shutdown_timeout=SHUTDOWN_GRACE,
        loop=loop,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
