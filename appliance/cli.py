"""`cvh-camera appliance --config PATH`: the camera appliance, as systemd runs it on the Pi."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

from cvh_camera.appliance.config import (
    ApplianceConfig,
    ConfigError,
    describe,
    load_appliance_config,
)
from cvh_camera.appliance.runtime import running_appliance
from cvh_camera.appliance.status import StatusReporter
from cvh_camera.eventloop import new_event_loop
from cvh_camera.logsetup import setup_logging

log = logging.getLogger(__name__)

EXIT_CONFIG = 2
DEFAULT_CONFIG = Path("/boot/firmware/cvh-camera.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"YAML configuration, every key in config/appliance.yaml (default {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--status-file",
        type=Path,
        help="write state and last error here (overrides status.file; also written when "
        "the configuration is bad)",
    )


def run(args: argparse.Namespace) -> int:
    setup_logging("info")
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1` dumps every thread's stack to the log
    try:
        config = load_appliance_config(args.config, os.environ)
    except ConfigError as error:
        problems = [str(problem) for problem in error.problems]
        for problem in problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        StatusReporter(args.status_file).bad_configuration(problems)
        return EXIT_CONFIG
    if args.status_file is not None:
        config = replace(config, status=replace(config.status, file=str(args.status_file)))
    setup_logging(config.log_level)
    log.info("starting appliance: %s", describe(config))
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(run_appliance(config))
    return 0


def _dump_tasks() -> None:
    """`kill -USR2`: log where every asyncio task waits (a hang's diagnosis)."""
    for task in asyncio.all_tasks():
        frames = "".join(
            f"\n    {f.f_code.co_filename}:{f.f_lineno} {f.f_code.co_name}"
            for f in task.get_stack()
        )
        log.warning("task %s:%s", task.get_name(), frames)


async def run_appliance(config: ApplianceConfig) -> None:
    """Run until SIGTERM/SIGINT, then leave Janus and stop the camera."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    loop.add_signal_handler(signal.SIGUSR2, _dump_tasks)
    async with running_appliance(config) as supervisor:
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([waiter, supervisor], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
        if supervisor.done():
            supervisor.result()  # the supervisor only ends by failing: raise its error
