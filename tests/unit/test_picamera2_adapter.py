"""The picamera2 adapter, driven by a fake picamera2 whose encoder calls outputframe from its
own thread, as the real one does."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import itertools
import logging
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import pytest

from cvh_camera.appliance.sources import h264, picamera2_source
from cvh_camera.appliance.sources.base import AccessUnit, SourceError
from cvh_camera.appliance.sources.picamera2_source import (
    MISSING_MESSAGE,
    SOFTWARE_MESSAGE,
    Picamera2Api,
    Picamera2Source,
    load_picamera2,
)

SPS = bytes.fromhex("6742c028da01")
PPS = bytes.fromhex("68ce3c80")


def picture(n: int, *, key: bool, headers: bool = True) -> bytes:
    """An access unit whose slice carries the frame number as ASCII digits (never 00 00 0x)."""
    body = bytes([0x65 if key else 0x41, 0x88]) + str(n).encode()
    nals = [SPS, PPS, body] if key and headers else [body]
    return h264.join_nals(nals)


def frame_number(unit: AccessUnit) -> int:
    return int(bytes(h264.nal_units(unit.data)[-1][2:]))


class FakeOutput:
    """picamera2.outputs.Output as far as encoders use it."""

    def __init__(self, pts: Any = None) -> None:
        self.recording = False

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False


class FakeEncoder:
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.forced = 0
        self._force = threading.Event()

    def force_key_frame(self) -> None:
        self.forced += 1
        self._force.set()

    def take_force(self) -> bool:
        forced = self._force.is_set()
        self._force.clear()
        return forced


class FakeSoftwareEncoder(FakeEncoder):
    pass


class FakeCamera:
    """Each started encoder gets a thread that encodes `frames` frames, `interval` s apart."""

    def __init__(self, *, frames: int = 10_000, interval: float = 0.002) -> None:
        self.frames, self.interval = frames, interval
        self.fail_encoder: type | None = None  # start_encoder raises for exactly this class
        self.header_first = False  # emit SPS/PPS as a buffer of its own before the first IDR
        self.config: dict[str, Any] = {}
        self.encoders: list[FakeEncoder] = []
        self.started = self.closed = False
        self.call_durations: list[float] = []
        self.finished = threading.Event()
        self._threads: dict[int, tuple[threading.Thread, threading.Event]] = {}

    def create_video_configuration(self, **config: Any) -> dict[str, Any]:
        return config

    def configure(self, config: dict[str, Any]) -> None:
        self.config = config

    def start_encoder(self, encoder: FakeEncoder, output: FakeOutput) -> None:
        if type(encoder) is self.fail_encoder:
            raise OSError("/dev/video11: no such device")
        self.encoders.append(encoder)
        output.start()
        stop = threading.Event()
        thread = threading.Thread(target=self._encode, args=(encoder, output, stop))
        self._threads[id(encoder)] = (thread, stop)
        thread.start()

    def stop_encoder(self, encoder: FakeEncoder) -> None:
        thread, stop = self._threads.pop(id(encoder))
        stop.set()
        thread.join()

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True

    def _encode(self, encoder: FakeEncoder, output: Any, stop: threading.Event) -> None:
        iperiod = encoder.settings["iperiod"]
        if self.header_first:
            output.outputframe(h264.join_nals([SPS, PPS]), True, 0)
        for n in range(self.frames):
            if stop.is_set():
                return
            key = n % iperiod == 0 or encoder.take_force()
            data = picture(n, key=key, headers=not self.header_first)
            started = time.perf_counter()
            output.outputframe(data, key, n * 33_333, None, False)
            self.call_durations.append(time.perf_counter() - started)
            stop.wait(self.interval)
        self.finished.set()


def fake_api(camera: FakeCamera, *, hardware: bool = True) -> Picamera2Api:
    return Picamera2Api(
        camera_factory=lambda: camera,
        hardware_encoder=FakeEncoder if hardware else None,
        software_encoder=FakeSoftwareEncoder,
        output_base=FakeOutput,
    )


def make_source(
    api: Picamera2Api | Callable[[], Picamera2Api], **overrides: Any
) -> Picamera2Source:
    settings: dict[str, Any] = {"width": 640, "height": 480, "fps": 30, "bitrate": 2_000_000}
    settings.update(overrides)
    settings.setdefault("keyframe_interval", 5)
    loader = api if callable(api) else (lambda: api)
    return Picamera2Source(load_api=loader, **settings)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_units_arrive_in_order_with_keyframe_flags_and_timestamps() -> None:
    camera = FakeCamera()
    before = set(threading.enumerate())
    src = make_source(fake_api(camera))
    await src.start()
    try:
        units = [await src.next_unit() for _ in range(20)]
    finally:
        await src.stop()
    assert set(threading.enumerate()) == before
    assert camera.closed and not camera.started
    assert camera.config["main"] == {"size": (640, 480), "format": "YUV420"}
    assert camera.config["controls"] == {"FrameDurationLimits": (33_333, 33_333)}
    assert camera.encoders[0].settings == {
        "bitrate": 2_000_000,
        "repeat": True,
        "iperiod": 5,
        "profile": "baseline",
    }
    assert [frame_number(u) for u in units] == list(range(20))
    assert [u.keyframe for u in units] == [n % 5 == 0 for n in range(20)]
    assert all(h264.has_parameter_sets(u.data) for u in units if u.keyframe)
    gaps = {b.timestamp_us - a.timestamp_us for a, b in itertools.pairwise(units)}
    assert gaps == {33_333}  # the encoder's spacing, on the monotonic clock
    assert abs(units[0].timestamp_us - time.monotonic() * 1e6) < 5e6
    assert src.stats.produced >= 20 and src.stats.keyframes >= 4


async def test_full_queue_drops_until_a_keyframe_and_never_blocks_the_encoder() -> None:
    camera = FakeCamera(frames=400, interval=0)
    src = make_source(fake_api(camera), keyframe_interval=1000)
    await src.start()
    try:
        await wait_until(camera.finished.is_set)  # nobody reads meanwhile
        await wait_until(lambda: camera.encoders[0].forced > 0)
        stats = src.stats
        first = await src.next_unit()
    finally:
        await src.stop()
    assert max(camera.call_durations) < 0.02
    assert stats.dropped > 300
    # what is read first is a keyframe: the first one, or a requested one that replaced
    # the stale backlog (which of the two depends on thread timing)
    assert first.keyframe and h264.has_parameter_sets(first.data)


async def test_overflow_asks_the_encoder_for_a_keyframe_to_resume() -> None:
    camera = FakeCamera(frames=400, interval=0.001)
    src = make_source(fake_api(camera), keyframe_interval=1000, fps=4)  # a queue of 4
    await src.start()
    try:
        await wait_until(lambda: camera.encoders[0].forced > 0)
        units = [await src.next_unit() for _ in range(8)]
    finally:
        await src.stop()
    resumed = [u for u in units if frame_number(u) > 3]
    assert resumed[0].keyframe  # after the gap, the stream resumes at the forced keyframe
    assert src.stats.forced_keyframes >= 1


async def test_request_keyframe_reaches_the_encoder() -> None:
    camera = FakeCamera(interval=0.005)
    src = make_source(fake_api(camera), keyframe_interval=1000)
    await src.start()
    try:
        assert (await src.next_unit()).keyframe
        src.request_keyframe()
        await wait_until(lambda: camera.encoders[0].forced == 1)
        while not (await src.next_unit()).keyframe:
            pass
    finally:
        await src.stop()
    assert src.stats.forced_keyframes == 1


async def test_a_software_encoder_that_cannot_force_is_restarted_for_a_keyframe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # picamera2's LibavH264Encoder forces a keyframe with `frame.pict_type = "I"`, which
    # PyAV 14 and newer refuse, killing picamera2's request thread (seen in the emulated image)
    camera = FakeCamera(interval=0.005)
    api = dataclasses.replace(fake_api(camera, hardware=False), software_can_force=False)
    src = make_source(api, keyframe_interval=1000)
    caplog.set_level(logging.INFO, "cvh_camera.appliance.sources.picamera2_source")
    await src.start()
    try:
        assert (await src.next_unit()).keyframe
        src.request_keyframe()
        await wait_until(lambda: len(camera.encoders) == 2)
        while not (await src.next_unit()).keyframe:
            pass
    finally:
        await src.stop()
    assert [encoder.forced for encoder in camera.encoders] == [0, 0]
    assert camera.encoders[1].settings["bitrate"] == src.bitrate
    assert "restarting the software encoder for a keyframe" in caplog.text
    assert src.stats.forced_keyframes == 1


def test_the_loader_tells_whether_pyav_takes_picamera2s_keyframe_request() -> None:
    av = pytest.importorskip("av")
    frame = av.VideoFrame(16, 16, "yuv420p")
    try:
        frame.pict_type = "I"
        expected = True
    except TypeError:
        expected = False
    assert picamera2_source._pyav_takes_string_picture_types() is expected


async def test_set_bitrate_restarts_the_encoder_and_keeps_timestamps_increasing() -> None:
    camera = FakeCamera(interval=0.005)
    src = make_source(fake_api(camera), keyframe_interval=1000)
    src.restart_interval = 0
    await src.start()
    try:
        units = [await src.next_unit() for _ in range(3)]
        src.set_bitrate(800_000)
        await wait_until(lambda: len(camera.encoders) == 2)
        while frame_number(units[-1]) != 0 or len(units) <= 3:  # the new encoder's first
            units.append(await src.next_unit())
        units += [await src.next_unit() for _ in range(3)]
    finally:
        await src.stop()
    assert camera.encoders[1].settings["bitrate"] == 800_000
    assert src.bitrate == 800_000
    assert units[-4].keyframe and h264.has_parameter_sets(units[-4].data)
    stamps = [u.timestamp_us for u in units]
    assert stamps == sorted(set(stamps))


async def test_pi5_without_hardware_encoder_uses_the_software_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    camera = FakeCamera()
    src = make_source(fake_api(camera, hardware=False))
    with caplog.at_level(logging.WARNING):
        await src.start()
        try:
            assert (await src.next_unit()).keyframe
        finally:
            await src.stop()
    assert SOFTWARE_MESSAGE in caplog.text
    assert isinstance(camera.encoders[0], FakeSoftwareEncoder)
    assert camera.encoders[0].settings["framerate"] == 30
    assert src.software_encoder


async def test_hardware_encoder_that_fails_to_start_falls_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    camera = FakeCamera()
    camera.fail_encoder = FakeEncoder
    src = make_source(fake_api(camera))
    with caplog.at_level(logging.WARNING):
        await src.start()
        await src.stop()
    assert SOFTWARE_MESSAGE in caplog.text and "/dev/video11" in caplog.text
    assert src.software_encoder


async def test_header_only_buffers_go_in_front_of_the_next_picture() -> None:
    camera = FakeCamera()
    camera.header_first = True
    src = make_source(fake_api(camera))
    await src.start()
    try:
        first = await src.next_unit()
        later = [await src.next_unit() for _ in range(5)]
    finally:
        await src.stop()
    assert h264.nal_types(first.data) == [7, 8, 5]
    assert h264.nal_types(later[-1].data) == [7, 8, 5]  # cached SPS/PPS on later IDRs


async def test_a_camera_that_stops_delivering_is_reported() -> None:
    camera = FakeCamera(frames=3)
    src = make_source(fake_api(camera))
    src.stall_timeout = 0.3
    await src.start()
    try:
        for _ in range(3):
            await src.next_unit()
        with pytest.raises(SourceError, match="no frame"):
            await asyncio.wait_for(src.next_unit(), 5)
    finally:
        await src.stop()


async def test_a_camera_that_cannot_open_gives_a_source_error() -> None:
    def no_camera() -> FakeCamera:
        raise RuntimeError("no cameras available")

    api = Picamera2Api(no_camera, FakeEncoder, FakeSoftwareEncoder, FakeOutput)
    before = set(threading.enumerate())
    with pytest.raises(SourceError, match="cannot start the camera: RuntimeError: no cameras"):
        await make_source(api).start()
    assert set(threading.enumerate()) == before


@pytest.mark.skipif(importlib.util.find_spec("picamera2") is not None, reason="on a Pi")
async def test_missing_picamera2_gives_the_clear_error() -> None:
    src = Picamera2Source(width=640, height=480, fps=30, bitrate=1_000_000, keyframe_interval=30)
    with pytest.raises(SourceError) as error:
        await src.start()
    assert str(error.value) == MISSING_MESSAGE
    assert "apt install python3-picamera2" in MISSING_MESSAGE


def test_loader_detects_the_missing_hardware_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    package = types.ModuleType("picamera2")
    encoders = types.ModuleType("picamera2.encoders")
    outputs = types.ModuleType("picamera2.outputs")
    package.Picamera2 = FakeCamera  # type: ignore[attr-defined]
    encoders.LibavH264Encoder = FakeSoftwareEncoder  # type: ignore[attr-defined]
    encoders.H264Encoder = FakeSoftwareEncoder  # type: ignore[attr-defined]  # as on a Pi 5
    encoders._hw_encoder_available = False  # type: ignore[attr-defined]
    outputs.Output = FakeOutput  # type: ignore[attr-defined]
    for name, module in [("picamera2", package), (encoders.__name__, encoders)]:
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, outputs.__name__, outputs)
    api = load_picamera2()
    assert api.hardware_encoder is None and api.software_encoder is FakeSoftwareEncoder
    encoders.H264Encoder = FakeEncoder  # type: ignore[attr-defined]
    encoders._hw_encoder_available = True  # type: ignore[attr-defined]
    assert load_picamera2().hardware_encoder is FakeEncoder


class FakeDevice:
    """The encoder's open /dev/video11, as far as the adapter looks at it."""

    closed = False


class FakeV4L2Encoder(FakeEncoder):
    """picamera2's hardware H264Encoder: its `vd` is the V4L2 device it opened."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.vd = FakeDevice()


def live_api(camera: FakeCamera, controls: list[tuple[Any, int]], *, refuse: bool = False) -> Any:
    def control(device: Any, bitrate: int) -> None:
        if refuse:
            raise OSError(22, "Invalid argument")
        controls.append((device, bitrate))

    return Picamera2Api(
        camera_factory=lambda: camera,
        hardware_encoder=FakeV4L2Encoder,
        software_encoder=FakeSoftwareEncoder,
        output_base=FakeOutput,
        bitrate_control=control,
    )


async def test_hardware_encoder_takes_a_new_bitrate_without_a_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    camera = FakeCamera(interval=0.005)
    controls: list[tuple[Any, int]] = []
    src = make_source(live_api(camera, controls), keyframe_interval=1000)
    src.restart_interval = 3600  # a restart could not happen within this test
    with caplog.at_level(logging.INFO):
        await src.start()
        try:
            before = [await src.next_unit() for _ in range(3)]
            src.set_bitrate(800_000)
            await wait_until(lambda: src.bitrate == 800_000)
            src.set_bitrate(600_000)
            await wait_until(lambda: src.bitrate == 600_000)
            after = [await src.next_unit() for _ in range(3)]
        finally:
            await src.stop()
    assert controls == [(camera.encoders[0].vd, 800_000), (camera.encoders[0].vd, 600_000)]
    assert len(camera.encoders) == 1  # never restarted
    numbers = [frame_number(u) for u in before + after]
    assert numbers == sorted(numbers) and not any(u.keyframe for u in after)
    assert "set on the running hardware encoder (V4L2 control, no restart)" in caplog.text


async def restart_for_bitrate(api: Picamera2Api, camera: FakeCamera, bitrate: int) -> None:
    """Start a source, ask for `bitrate` once a unit came, and wait for the second encoder."""
    src = make_source(api, keyframe_interval=1000)
    src.restart_interval = 0
    await src.start()
    try:
        await src.next_unit()
        src.set_bitrate(bitrate)
        await wait_until(lambda: len(camera.encoders) == 2)
    finally:
        await src.stop()


async def test_a_refused_bitrate_control_falls_back_to_a_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    camera = FakeCamera(interval=0.005)
    with caplog.at_level(logging.INFO):
        await restart_for_bitrate(live_api(camera, [], refuse=True), camera, 800_000)
    assert camera.encoders[1].settings["bitrate"] == 800_000
    assert "refused the bitrate control" in caplog.text
    assert "restarting the hardware encoder" in caplog.text


async def test_the_software_encoder_is_restarted_for_a_new_bitrate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    camera = FakeCamera(interval=0.005)
    controls: list[tuple[Any, int]] = []
    api = dataclasses.replace(live_api(camera, controls), hardware_encoder=None)
    with caplog.at_level(logging.INFO):
        await restart_for_bitrate(api, camera, 800_000)
    assert controls == [] and camera.encoders[1].settings["bitrate"] == 800_000
    assert "restarting the software encoder" in caplog.text
