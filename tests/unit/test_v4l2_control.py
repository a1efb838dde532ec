"""The picamera2 source's V4L2 control: the ioctl a running hardware encoder gets for a new
bitrate."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from cvh_camera.appliance.sources.picamera2_source import running_device, set_bitrate_control


def _iowr(kind: str, number: int, size: int) -> int:
    """Linux's _IOWR(type, nr, size): direction read|write, size, type, number."""
    return (3 << 30) | (size << 16) | (ord(kind) << 8) | number


def test_the_bitrate_goes_out_as_vidioc_s_ctrl_with_the_codec_bitrate_control() -> None:
    calls: list[tuple[Any, int, bytes]] = []
    device = object()
    set_bitrate_control(device, 1_500_000, ioctl=lambda *call: calls.append(call))
    [(target, request, payload)] = calls
    assert target is device
    assert request == _iowr("V", 28, 8)  # VIDIOC_S_CTRL, struct v4l2_control
    control_id, value = struct.unpack("=Ii", payload)
    assert control_id == 0x009909CF  # V4L2_CID_MPEG_VIDEO_BITRATE
    assert value == 1_500_000


def test_a_refusal_is_an_oserror() -> None:
    def refuse(*call: Any) -> None:
        raise OSError(22, "Invalid argument")

    with pytest.raises(OSError):
        set_bitrate_control(object(), 1, ioctl=refuse)


class Device:
    def __init__(self, closed: bool) -> None:
        self.closed = closed


class Encoder:
    def __init__(self, vd: Any) -> None:
        self.vd = vd


def test_only_a_running_encoders_open_device_counts() -> None:
    open_device = Device(closed=False)
    assert running_device(Encoder(open_device)) is open_device
    assert running_device(Encoder(Device(closed=True))) is None  # stopped
    assert running_device(Encoder(None)) is None  # not started yet
    assert running_device(object()) is None  # the software encoder has no device
