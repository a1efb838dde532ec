"""The appliance with keyframe requests kept from its camera: the baseline of first_frame.py.

Runs what `cvh-camera appliance --config FILE` runs (the same configuration, camera source,
supervisor, publisher, slot client), except that the camera source is wrapped so that
`request_keyframe()` does nothing: the PLI/FIR that Janus sends for a new subscriber still
reaches the publisher, but no longer the encoder, as in an appliance without the forwarding.
A new viewer then waits for the next periodic keyframe. The source's own recovery after a
queue overflow is inside the source and unaffected. Every ignored request is logged.

    python bench/appliance_without_pli.py --config FILE
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from appliance.config import ConfigError, load_appliance_config
from appliance.runtime import camera_source
from appliance.sources import AccessUnit, SourceStats, VideoSource
from appliance.supervisor import Status, Supervisor
from wire.logsetup import setup_logging
from wire.tasks import stop_tasks

log = logging.getLogger("bench.appliance_without_pli")

STOP_TIMEOUT = 10.0


class KeyframeRequestsIgnored:
    """A `VideoSource` that is `source` in every way but one: keyframe requests are dropped."""

    def __init__(self, source: VideoSource) -> None:
        self._source = source
        self.ignored = 0
        self._copy_geometry()

    def _copy_geometry(self) -> None:
        source = self._source
        self.name, self.width, self.height, self.fps = (
            source.name, source.width, source.height, source.fps,
        )  # fmt: skip

    async def start(self) -> None:
        await self._source.start()
        self._copy_geometry()  # the file source learns its picture size from the stream

    async def stop(self) -> None:
        await self._source.stop()

    async def next_unit(self) -> AccessUnit:
        return await self._source.next_unit()

    def request_keyframe(self) -> None:
        self.ignored += 1
        log.info("keyframe request ignored n=%d", self.ignored)

    def set_bitrate(self, bits_per_second: int) -> None:
        self._source.set_bitrate(bits_per_second)

    @property
    def stats(self) -> SourceStats:
        return self._source.stats


async def run(config_path: Path) -> int:
    try:
        config = load_appliance_config(config_path, os.environ)
    except ConfigError as error:
        for problem in error.problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    source = camera_source(config)

    def report(status: Status) -> None:
        return  # the supervisor logs every state change itself

    supervisor = Supervisor(config, KeyframeRequestsIgnored(source), status_sink=report)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    task = asyncio.create_task(supervisor.run(), name="supervisor")
    waiter = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    if not await stop_tasks([task, waiter], STOP_TIMEOUT):  # as the appliance stops
        log.error("appliance did not stop within %.0fs", STOP_TIMEOUT)
    log.info("appliance stopped")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, required=True, help="appliance YAML")
    args = parser.parse_args()
    setup_logging("info")
    return asyncio.run(run(args.config))


if __name__ == "__main__":
    sys.exit(main())
