"""The Pi camera source (`camera.source: picamera2`): the camera module and its H.264 encoder.

picamera2 is imported only here, lazily, by `load_picamera2()` when the source starts; on a
machine without it, `start()` raises a SourceError that says what to install or choose. The
picamera2 pieces come in as a `Picamera2Api`, so tests drive the adapter with fakes.

Threads. picamera2's encoder calls our `Output.outputframe` on its own thread; that call only
parses NAL headers and pushes into the bounded unit queue of the source's `ThreadHandover`:
it never blocks. Every picamera2 call we make (open, configure, start, force a keyframe,
restart the encoder, close) runs on the handover's one thread, the control thread, so the
event loop never waits for the camera and those calls never race. The control thread also
watches for a camera that stopped delivering.

Encoder. `H264Encoder(bitrate, repeat=True, iperiod=keyframe_interval, profile="baseline")`:
the Pi's hardware encoder. Where picamera2 reports no hardware encoder (the Pi 5), or the
hardware encoder fails to start, picamera2's `LibavH264Encoder` (software x264) with the same
settings takes its place, and the log says so. Where the installed PyAV refuses what
picamera2's software encoder does to force a keyframe (PyAV 14 and newer), a keyframe
request restarts that encoder instead (it begins with an IDR).

Bitrate. On the hardware encoder, `set_bitrate` sets the V4L2 bitrate control on the device
the running encoder has open (`set_bitrate_control`): at once, no frame lost. Where that is not
possible (the software encoder, or the device refuses the control) the encoder restarts
(stop_encoder/start_encoder; the camera keeps running) with the new bitrate, at most once
per `restart_interval` (the latest request wins): the restarted encoder begins with an IDR
and the stream loses the few frames in between; timestamps stay monotonic. The log says
which of the two was used.
"""

from __future__ import annotations

import fcntl
import importlib
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cvh_camera.appliance.bitrate import clamp_bitrate
from cvh_camera.appliance.sources.base import (
    AccessUnit,
    KeyframeRequest,
    SourceError,
    SourceStats,
    StatsCounter,
    check_geometry,
)
from cvh_camera.appliance.sources.camera_output import FrameSink, make_output
from cvh_camera.appliance.sources.handover import ThreadHandover, queue_size
from cvh_camera.h264_profile import ENCODER_PROFILE

log = logging.getLogger(__name__)

MISSING_MESSAGE = (
    "the picamera2 source needs Raspberry Pi OS with python3-picamera2 "
    "(apt install python3-picamera2); on other machines use camera.source: test or file"
)
SOFTWARE_MESSAGE = "no hardware H.264 encoder (Pi 5?): using picamera2's software encoder"

# A running hardware encoder's bitrate: picamera2's `H264Encoder` keeps the V4L2 device it
# opened (/dev/video11) as `vd` and sets V4L2_CID_MPEG_VIDEO_BITRATE on it with VIDIOC_S_CTRL;
# set again while it runs, the rate changes from the next frames on, without an IDR or a lost
# frame (what the Pi's firmware makes of it: docs/camera.md). The numbers are the Linux UAPI's:
# V4L2_CID_CODEC_BASE (0x00990900) + 207, and _IOWR('V', 28, struct v4l2_control {u32 id;
# s32 value;}).
V4L2_CID_MPEG_VIDEO_BITRATE: Final = 0x00990900 + 207
VIDIOC_S_CTRL: Final = 0xC008561C
_V4L2_CONTROL: Final = struct.Struct("=Ii")  # struct v4l2_control

Ioctl = Callable[[Any, int, bytes], Any]


def set_bitrate_control(device: Any, bitrate: int, ioctl: Ioctl = fcntl.ioctl) -> None:
    """Set the bitrate (bit/s) of the V4L2 encoder open as `device`; OSError if it refuses."""
    ioctl(device, VIDIOC_S_CTRL, _V4L2_CONTROL.pack(V4L2_CID_MPEG_VIDEO_BITRATE, bitrate))


def running_device(encoder: Any) -> Any | None:
    """The V4L2 device a running picamera2 encoder has open, or None (software encoder,
    not started, or stopped)."""
    device = getattr(encoder, "vd", None)
    if device is None or getattr(device, "closed", True):
        return None
    return device


@dataclass(frozen=True)
class Picamera2Api:
    """The parts of picamera2 the adapter uses."""

    camera_factory: Callable[[], Any]  # picamera2.Picamera2
    hardware_encoder: Callable[..., Any] | None  # encoders.H264Encoder, if the V4L2 one exists
    software_encoder: Callable[..., Any] | None  # encoders.LibavH264Encoder
    output_base: Any  # outputs.Output, the class our output subclasses
    # Sets the bitrate on a running hardware encoder's open V4L2 device; OSError if refused.
    bitrate_control: Callable[[Any, int], None] = set_bitrate_control
    # Whether the software encoder's force_key_frame works with the PyAV installed: picamera2
    # sets `frame.pict_type = "I"`, which PyAV 14 and newer refuse (TypeError), and the error
    # kills picamera2's request thread. Where it does not, a keyframe is had by a restart.
    software_can_force: bool = True


def load_picamera2() -> Picamera2Api:
    """Import picamera2 (only now); SourceError with what to do if it is not there."""
    try:
        picamera2 = importlib.import_module("picamera2")
        encoders = importlib.import_module("picamera2.encoders")
        outputs = importlib.import_module("picamera2.outputs")
    except (ImportError, OSError) as exc:
        log.debug("picamera2 import failed: %r", exc)
        raise SourceError(MISSING_MESSAGE) from exc
    software = getattr(encoders, "LibavH264Encoder", None)
    hardware = getattr(encoders, "H264Encoder", None)
    # picamera2 probes /dev/video11 for the bcm2835 encoder at import; without it (Pi 5) it
    # binds H264Encoder to LibavH264Encoder.
    if getattr(encoders, "_hw_encoder_available", True) is False or hardware is software:
        hardware = None
    return Picamera2Api(
        picamera2.Picamera2, hardware, software, outputs.Output,
        software_can_force=_pyav_takes_string_picture_types(),
    )  # fmt: skip


def _pyav_takes_string_picture_types() -> bool:
    """What picamera2's LibavH264Encoder does to force a keyframe, tried on a spare frame."""
    try:
        av = importlib.import_module("av")
        av.VideoFrame(16, 16, "yuv420p").pict_type = "I"
    except (ImportError, TypeError, ValueError, AttributeError) as exc:
        log.info("picamera2's software encoder cannot force keyframes here (PyAV: %s): "
                 "a keyframe is had by restarting it", exc)  # fmt: skip
        return False
    return True


class Picamera2Source:
    start_timeout = 20.0
    control_tick = 0.25  # s between the control thread's checks when nothing wakes it
    stall_timeout = 5.0  # no frame for this long: the camera is gone
    restart_interval = 2.0  # at most one bitrate restart per this many seconds

    def __init__(
        self,
        *,
        width: int,
        height: int,
        fps: int,
        bitrate: int,
        keyframe_interval: int,
        load_api: Callable[[], Picamera2Api] = load_picamera2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_geometry(width, height, fps)
        self.name, self.width, self.height, self.fps = "picamera2", width, height, fps
        if keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be at least 1, got {keyframe_interval}")
        self.keyframe_interval = keyframe_interval
        self.bitrate = clamp_bitrate(bitrate)
        self.software_encoder = False  # True once the software fallback is in use
        self._load_api = load_api
        self._clock = clock
        self._wake = threading.Event()
        self._bitrate_lock = threading.Lock()
        self._pending_bitrate: int | None = None
        self._counter = StatsCounter()
        self._keyframe = KeyframeRequest()
        self._handover = ThreadHandover(
            self.name,
            maxsize=queue_size(fps),
            on_overflow=self.request_keyframe,
            start_timeout=self.start_timeout,
        )

    async def start(self) -> None:
        await self._handover.start(self._run)
        log.info("source=picamera2 started %dx%d@%d", self.width, self.height, self.fps)

    async def stop(self) -> None:
        self._handover.request_stop()
        self._wake.set()  # the control thread sees the stop at once
        await self._handover.stop()

    async def next_unit(self) -> AccessUnit:
        return await self._handover.get()

    def request_keyframe(self) -> None:
        self._keyframe.set()
        self._wake.set()

    def set_bitrate(self, bits_per_second: int) -> None:
        with self._bitrate_lock:
            self._pending_bitrate = clamp_bitrate(bits_per_second)
        self._wake.set()

    @property
    def stats(self) -> SourceStats:
        return self._counter.snapshot(dropped=self._handover.dropped)

    def _take_pending_bitrate(self) -> int | None:
        with self._bitrate_lock:
            bitrate, self._pending_bitrate = self._pending_bitrate, None
        return bitrate

    def _run(self, stop: threading.Event, ready: Callable[[], None]) -> None:
        """The handover's thread: open the camera, then control it until `stop`."""
        sink = FrameSink(
            self._handover.push, self._counter, clock=self._clock, on_error=self._handover.fail
        )
        self.bitrate = self._take_pending_bitrate() or self.bitrate
        session = self._open(sink)
        ready()
        try:
            self._control(stop, session, sink)
        except Exception as exc:  # the one place this thread's failures end up
            log.exception("source=picamera2 control failed")
            self._handover.fail(SourceError(f"the camera failed: {exc}"))
        finally:
            session.close()

    def _open(self, sink: FrameSink) -> _CameraSession:
        """The camera, configured and encoding; SourceError (the start's) if it cannot."""
        session: _CameraSession | None = None
        try:
            session = _CameraSession(self._load_api(), self, sink)
            session.open(self.bitrate)
        except Exception as exc:
            if session is not None:
                session.close()
            if isinstance(exc, SourceError):
                raise
            log.exception("source=picamera2 cannot start")
            raise SourceError(f"cannot start the camera: {type(exc).__name__}: {exc}") from exc
        return session

    def _control(self, stop: threading.Event, session: _CameraSession, sink: FrameSink) -> None:
        last_restart = self._clock()
        while not stop.is_set():
            self._wake.wait(self.control_tick)
            self._wake.clear()
            if stop.is_set():
                return
            if self._keyframe.take():
                sink.forced.set()
                session.force_keyframe()
            if session.live_bitrate or self._clock() - last_restart >= self.restart_interval:
                bitrate = self._take_pending_bitrate()
                if bitrate is not None and bitrate != self.bitrate:
                    if session.change_bitrate(bitrate):  # True: by a restart
                        last_restart = self._clock()
                    self.bitrate = bitrate
            silent = self._clock() - max(sink.last_unit_at or last_restart, last_restart)
            if silent > self.stall_timeout:
                self._handover.fail(
                    SourceError(f"the camera delivered no frame for {silent:.0f} s")
                )
                return


class _CameraSession:
    """The picamera2 objects of one run, used only by the control thread."""

    def __init__(self, api: Picamera2Api, source: Picamera2Source, sink: FrameSink) -> None:
        self._api = api
        self._source = source
        self._sink = sink
        self._output = make_output(api.output_base, sink)
        self._camera: Any = None
        self._encoder: Any = None
        self._software = api.hardware_encoder is None
        self._camera_started = False
        self._warned_no_force = False
        self._control_refused = False  # the hardware encoder refused the bitrate control

    def open(self, bitrate: int) -> None:
        if self._software and self._api.software_encoder is None:
            raise SourceError("picamera2 offers neither a hardware nor a software H.264 encoder")
        source = self._source
        self._camera = self._api.camera_factory()
        frame_us = round(1_000_000 / source.fps)
        config = self._camera.create_video_configuration(
            main={"size": (source.width, source.height), "format": "YUV420"},
            controls={"FrameDurationLimits": (frame_us, frame_us)},
        )
        self._camera.configure(config)
        if self._software:
            log.warning(SOFTWARE_MESSAGE)
        self._start_encoder(bitrate)
        self._camera.start()
        self._camera_started = True

    def _start_encoder(self, bitrate: int) -> None:
        try:
            self._encoder = self._new_encoder(bitrate)
            self._camera.start_encoder(self._encoder, self._output)
        except Exception as exc:
            if self._software or self._api.software_encoder is None:
                raise
            log.warning("the hardware H.264 encoder failed to start: %s", exc)
            log.warning(SOFTWARE_MESSAGE)
            self._software = True
            self._start_encoder(bitrate)
        self._source.software_encoder = self._software

    def _new_encoder(self, bitrate: int) -> Any:
        source = self._source
        settings: dict[str, Any] = {
            "bitrate": bitrate,
            "repeat": True,
            "iperiod": source.keyframe_interval,
            "profile": ENCODER_PROFILE,
        }
        if self._software:
            factory = self._api.software_encoder
            settings["framerate"] = source.fps
        else:
            factory = self._api.hardware_encoder
        if factory is None:
            raise SourceError("no H.264 encoder available in picamera2")
        return factory(**settings)

    def force_keyframe(self) -> None:
        if self._software and not self._api.software_can_force:
            self.restart_encoder(self._source.bitrate, why="for a keyframe")
            return
        force = getattr(self._encoder, "force_key_frame", None)
        if force is not None:
            force()
        elif not self._warned_no_force:
            self._warned_no_force = True
            log.warning(
                "this picamera2 encoder cannot force keyframes: new viewers wait for the "
                "next periodic one (every %d frames)", self._source.keyframe_interval,
            )  # fmt: skip

    @property
    def live_bitrate(self) -> bool:
        """Whether the running encoder takes a new bitrate without a restart."""
        if self._software or self._control_refused:
            return False
        return running_device(self._encoder) is not None

    def change_bitrate(self, bitrate: int) -> bool:
        """Apply `bitrate`: on the running hardware encoder, else by a restart (True)."""
        if self.live_bitrate:
            try:
                self._api.bitrate_control(running_device(self._encoder), bitrate)
            except OSError as exc:
                self._control_refused = True
                log.warning("the hardware encoder refused the bitrate control: %s", exc)
            else:
                log.info(
                    "source=picamera2 bitrate=%d: set on the running hardware encoder "
                    "(V4L2 control, no restart)", bitrate,
                )  # fmt: skip
                return False
        self.restart_encoder(bitrate)
        return True

    def restart_encoder(self, bitrate: int, why: str = "") -> None:
        kind = "software" if self._software else "hardware"
        log.info("source=picamera2 bitrate=%d: restarting the %s encoder%s", bitrate, kind,
                 f" {why}" if why else "")  # fmt: skip
        encoder, self._encoder = self._encoder, None
        self._camera.stop_encoder(encoder)
        self._sink.new_epoch()
        self._start_encoder(bitrate)

    def close(self) -> None:
        """Stop and release everything, whatever state it is in; never raises."""
        steps: list[tuple[str, Callable[[], object]]] = []
        if self._camera is not None:
            if self._camera_started:
                steps.append(("stop the camera", self._camera.stop))
            if self._encoder is not None:
                steps.append(("stop the encoder", lambda: self._camera.stop_encoder(self._encoder)))
            steps.append(("close the camera", self._camera.close))
        for what, step in steps:
            try:
                step()
            except Exception:
                log.exception("source=picamera2 could not %s", what)
        self._camera = self._encoder = None
        self._camera_started = False
