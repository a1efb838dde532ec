"""Drives the appliance's picamera2 source against the real picamera2 and libcamera's virtual
camera, and reports what it saw as JSON; the assertions are the host's
(tests/image/test_picamera2_adapter.py). It runs inside the emulated image's arm64 tree
under qemu-user, with the appliance's venv:

    /opt/cvh-camera/venv/bin/python picamera2_probe.py --out report.json

Only the standard library and the installed appliance: the tree has no test tools. One
source goes through every phase in order: the first units, a forced keyframe, a bitrate
change, stop and start, and the camera going away (libcamera stops delivering frames).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import logging
import threading
import time
from typing import Any

from cvh_camera.appliance.sources import h264
from cvh_camera.appliance.sources.base import AccessUnit, SourceError
from cvh_camera.appliance.sources.picamera2_source import (
    Picamera2Api,
    Picamera2Source,
    load_picamera2,
)

UNIT_TIMEOUT = 30.0  # s for one unit, under emulation


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()}")


class Tap:
    """Wraps the real picamera2 objects just enough to see what they do: every encoder
    started (class, bitrate), every outputframe call (picamera2's timestamp, its thread,
    whether it came with an av.Packet), and the cameras made."""

    def __init__(self, api: Picamera2Api) -> None:
        self.api = api
        self.cameras: list[Any] = []
        self.encoders: list[dict[str, Any]] = []
        self.frames: list[dict[str, Any]] = []

    def wrapped(self) -> Picamera2Api:
        return dataclasses.replace(self.api, camera_factory=self._camera)

    def _camera(self) -> Any:
        camera = self.api.camera_factory()
        self.cameras.append(camera)
        start_encoder = camera.start_encoder

        def tapped_start(encoder: Any, output: Any, *args: Any, **kwargs: Any) -> Any:
            self.encoders.append({"class": type(encoder).__name__,
                                  "bitrate": getattr(encoder, "bitrate", None)})  # fmt: skip
            if not hasattr(output, "delivered_by_tap"):  # the same output for every encoder
                output.delivered_by_tap = output.outputframe
                output.outputframe = functools.partial(self._outputframe, output)
            return start_encoder(encoder, output, *args, **kwargs)

        camera.start_encoder = tapped_start
        return camera

    def _outputframe(
        self,
        output: Any,
        frame: Any,
        keyframe: bool = True,
        timestamp: Any = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        self.frames.append({
            "epoch": len(self.encoders) - 1, "timestamp": timestamp, "keyframe": bool(keyframe),
            "main_thread": threading.current_thread() is threading.main_thread(),
            "packet": packet is not None,
        })  # fmt: skip
        output.delivered_by_tap(frame, keyframe, timestamp, packet, audio)


def describe(unit: AccessUnit) -> dict[str, Any]:
    return {
        "nal_types": [nal[0] & 0x1F for nal in h264.nal_units(unit.data) if nal],
        "keyframe": unit.keyframe,
        "timestamp_us": unit.timestamp_us,
    }


async def take(source: Picamera2Source, count: int) -> list[dict[str, Any]]:
    return [describe(await asyncio.wait_for(source.next_unit(), UNIT_TIMEOUT))
            for _ in range(count)]  # fmt: skip


async def take_until(
    source: Picamera2Source, recorder: Recorder, logged: str
) -> list[dict[str, Any]]:
    """Units until the log says `logged` (the virtual camera is not paced: units come as
    fast as it draws them, so a count of units says nothing about time)."""
    units: list[dict[str, Any]] = []
    async with asyncio.timeout(UNIT_TIMEOUT):
        while not any(logged in line for line in recorder.lines):
            units += await take(source, 1)
    return units


async def probe(args: argparse.Namespace, recorder: Recorder) -> dict[str, Any]:
    tap = Tap(load_picamera2())
    source = Picamera2Source(width=args.width, height=args.height, fps=args.fps,
                             bitrate=args.bitrate, keyframe_interval=args.keyframe_interval,
                             load_api=tap.wrapped)  # fmt: skip
    report: dict[str, Any] = {"settings": vars(args) | {"out": None}}
    interval = args.keyframe_interval
    started = time.monotonic()
    await source.start()
    report["start_s"] = round(time.monotonic() - started, 1)
    try:
        report["first"] = await take(source, 2 * interval + 2)
        # A keyframe asked for right after a periodic one, when the next is far off.
        before = await take(source, interval)
        while not before[-1]["keyframe"]:
            before += await take(source, 1)
        report["before_force"] = before
        source.request_keyframe()
        report["after_force"] = await take(source, interval - 2)
        source.set_bitrate(args.bitrate // 2)
        report["after_bitrate"] = await take_until(
            source, recorder, f"bitrate={args.bitrate // 2}: restarting"
        )
        report["after_bitrate"] += await take(source, interval)
        await source.stop()
        await source.start()
        report["after_restart"] = await take(source, interval + 2)
        report["gone"] = await camera_goes_away(source, tap)
    finally:
        await source.stop()
    report["encoders"] = tap.encoders
    report["frames"] = tap.frames
    report["stats"] = dataclasses.asdict(source.stats)
    report["software_encoder"] = source.software_encoder
    report["log"] = recorder.lines
    return report


async def camera_goes_away(source: Picamera2Source, tap: Tap) -> dict[str, Any]:
    """libcamera stops delivering (what an unplugged camera does to picamera2): the next
    units never come, and the source must end with a SourceError that says so."""
    tap.cameras[-1].camera.stop()  # the libcamera camera under picamera2's feet
    gone_at = time.monotonic()
    result: dict[str, Any] = {"units_after": 0}
    try:
        async with asyncio.timeout(source.stall_timeout * 4 + UNIT_TIMEOUT):
            while True:
                await source.next_unit()
                result["units_after"] += 1
    except SourceError as error:
        result["error"] = str(error)
    except TimeoutError:
        result["error"] = None
    result["seconds"] = round(time.monotonic() - gone_at, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--bitrate", type=int, default=400_000)
    parser.add_argument("--keyframe-interval", type=int, default=10)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    recorder = Recorder()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger().addHandler(recorder)
    try:
        report = asyncio.run(probe(args, recorder))
    except Exception as error:  # the host shows what failed
        logging.exception("probe failed")
        report = {"error": f"{type(error).__name__}: {error}", "log": recorder.lines}
    with open(args.out, "w") as out:
        json.dump(report, out, indent=1)


if __name__ == "__main__":
    main()
