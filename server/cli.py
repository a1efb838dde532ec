"""`cvh-camera server`: run the slot server from our YAML, or from the legacy JSON + environment."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import threading
from pathlib import Path

from aiohttp import web

from cvh_camera.eventloop import new_event_loop
from cvh_camera.logsetup import setup_logging
from cvh_camera.server.app import SHUTDOWN_GRACE, create_app
from cvh_camera.server.config import ConfigError, ServerConfig, describe, load_server_config
from cvh_camera.server.legacy_config import load_legacy_config

log = logging.getLogger(__name__)

EXIT_CONFIG = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML configuration (config/server.yaml documents every key). Without it, "
        "CONFIG_PATH names the original server's JSON configuration.",
    )
    parser.add_argument("--port", type=int, help="override listen.port")


def load(args: argparse.Namespace, environ: dict[str, str]) -> ServerConfig:
    if args.config is not None:
        return load_server_config(args.config, environ)
    legacy_path = environ.get("CONFIG_PATH", "")
    if legacy_path or any(k.startswith("CVH_CAMERA_CONFIG_") for k in environ):
        config, warnings = load_legacy_config(legacy_path, environ)
        for warning in warnings:
            log.warning("legacy config: %s", warning)
        return config
    log.info("no --config and no CONFIG_PATH: using defaults")
    return ServerConfig()


def tune_garbage_collector() -> None:
    """Fewer full collections: with thousands of receivers one takes 100-250 ms, and a
    broadcast caught behind it misses its latency target (bench/RESULTS.md, fan-out)."""
    gc.set_threshold(50_000, 20, 100)


def arm_exit_deadline(seconds: float) -> threading.Timer:
    """Leave the process after `seconds`, whatever still waits: a last resort that a
    controller or systemd restarting the server can count on (the shutdown's own waits
    are bounded; this covers anything that is not)."""

    def leave() -> None:
        log.error("shutdown took longer than %.1f s: exiting now", seconds)
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(seconds, leave)
    timer.daemon = True
    timer.start()
    return timer


async def _deadline_on_shutdown(app: web.Application) -> None:
    arm_exit_deadline(SHUTDOWN_GRACE + 1.0)


def run(args: argparse.Namespace) -> int:
    setup_logging("info")
    environ = dict(os.environ)
    try:
        config = load(args, environ)
    except ConfigError as error:
        for problem in error.problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if args.port is not None:
        from dataclasses import replace

        config = replace(config, port=args.port)
    setup_logging(config.log_level)
    log.info("starting slot server: %s", describe(config))
    tune_garbage_collector()
    app = create_app(config)
    app.on_shutdown.insert(0, _deadline_on_shutdown)
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        print=None,
        access_log=None,
        shutdown_timeout=SHUTDOWN_GRACE,
        loop=new_event_loop(),
    )
    return 0
