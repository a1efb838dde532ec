"""The appliance with one thing changed in its camera source, for a benchmark to compare.

Runs what `cvh-camera appliance --config FILE` runs (the same configuration, event loop,
supervisor, publisher, slot client), with the camera source changed by `--variant`. Both
variants compose the product's own parts; neither subclasses one.

- `no-keyframe-requests` (the baseline of `bench.first_frame`): the configured source,
  wrapped so that `request_keyframe()` does nothing. The PLI/FIR that Janus sends for a new
  subscriber still reaches the publisher, but no longer the encoder, as in an appliance
  without the forwarding; a new viewer waits for the next periodic keyframe. Every ignored
  request is logged.
- `thread-handoff` (`bench.publisher_cpu`'s run A'): the configured recording
  (`camera.file`) is replayed by a thread of its own that hands every picture over to the
  event loop through the product's `ThreadHandover`, as picamera2's encoder thread does on
  a Pi (the file source itself paces on the event loop).

    python -m bench.appliance_variant --variant VARIANT --config FILE
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from cvh_camera.appliance.config import ApplianceConfig, ConfigError, load_appliance_config
from cvh_camera.appliance.runtime import camera_source
from cvh_camera.appliance.sources import AccessUnit, SourceStats, VideoSource, h264
from cvh_camera.appliance.sources.base import StatsCounter
from cvh_camera.appliance.sources.filesource import load_access_units
from cvh_camera.appliance.sources.handover import ThreadHandover, queue_size
from cvh_camera.appliance.sources.pacing import Pacer
from cvh_camera.appliance.supervisor import Status, Supervisor
from cvh_camera.eventloop import new_event_loop
from cvh_camera.logsetup import setup_logging
from cvh_camera.tasks import stop_tasks

log = logging.getLogger("bench.appliance_variant")
VARIANTS = ("no-keyframe-requests", "thread-handoff")
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


class ThreadedReplay:
    """A `VideoSource`: a recording replayed, one picture per real-time slot, by the thread
    of a `ThreadHandover`, which hands each to the event loop.

    Keyframe requests are not honoured (the file source does that); the hand-over still
    starts every consumer at a keyframe, and the recording has an IDR every
    `keyframe_interval` pictures."""

    def __init__(self, path: Path, *, width: int, height: int, fps: int) -> None:
        self.name, self.width, self.height, self.fps = "threaded-file", width, height, fps
        self._path = path
        self._counter = StatsCounter()
        self._handover = ThreadHandover(self.name, maxsize=queue_size(fps))

    async def start(self) -> None:
        await self._handover.start(self._replay)

    async def stop(self) -> None:
        await self._handover.stop()

    async def next_unit(self) -> AccessUnit:
        return await self._handover.get()

    def request_keyframe(self) -> None:
        return  # see the class docstring

    def set_bitrate(self, bits_per_second: int) -> None:
        return  # a recording has its own

    @property
    def stats(self) -> SourceStats:
        return self._counter.snapshot(dropped=self._handover.dropped)

    def _replay(self, stop: threading.Event, ready: Callable[[], None]) -> None:
        """On the hand-over's thread: the recording in a loop until `stop`."""
        units = load_access_units(self._path)
        ready()
        pacer = Pacer(self.fps)
        for data in itertools.cycle(units):
            if (slot := pacer.next_slot(stop)) is None:
                return
            timestamp_us, skipped = slot
            self._counter.count_skipped(skipped)
            keyframe = h264.is_keyframe(data)
            self._counter.count_unit(keyframe=keyframe)
            self._handover.push(AccessUnit(data, timestamp_us, keyframe))


def variant_source(variant: str, config: ApplianceConfig) -> VideoSource:
    if variant == "no-keyframe-requests":
        return KeyframeRequestsIgnored(camera_source(config))
    camera = config.camera
    if camera.source != "file" or not camera.file:
        raise SystemExit(f"--variant {variant} needs camera.source: file with camera.file")
    return ThreadedReplay(
        Path(camera.file), width=camera.width, height=camera.height, fps=camera.fps
    )


async def run(variant: str, config_path: Path) -> int:
    try:
        config = load_appliance_config(config_path, os.environ)
    except ConfigError as error:
        for problem in error.problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)

    def report(status: Status) -> None:
        return  # the supervisor logs every state change itself

    supervisor = Supervisor(config, variant_source(variant, config), status_sink=report)
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
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--config", type=Path, required=True, help="appliance YAML")
    args = parser.parse_args()
    setup_logging("info")
    with asyncio.Runner(loop_factory=new_event_loop) as runner:  # as the appliance runs
        return runner.run(run(args.variant, args.config))


if __name__ == "__main__":
    sys.exit(main())
