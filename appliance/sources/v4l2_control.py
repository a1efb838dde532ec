"""The bitrate of a running V4L2 H.264 encoder (the Pi's hardware codec, /dev/video11).

picamera2's `H264Encoder` opens the encoder device when it starts (its `vd` attribute, a
file object) and sets `V4L2_CID_MPEG_VIDEO_BITRATE` on it with `VIDIOC_S_CTRL`. The same
control can be set again while the encoder runs: the rate changes from the next frames on,
without stopping the encoder, without an IDR and without losing frames. What the Pi's
firmware makes of it is verified only on a Pi (docs/camera.md).

The numbers are the Linux UAPI's (`linux/videodev2.h`, `linux/v4l2-controls.h`):
`V4L2_CID_MPEG_VIDEO_BITRATE` is `V4L2_CID_CODEC_BASE` (0x00990900) + 207, and
`VIDIOC_S_CTRL` is `_IOWR('V', 28, struct v4l2_control)` for the 8-byte
`struct v4l2_control { __u32 id; __s32 value; }`.
"""

from __future__ import annotations

import fcntl
import struct
from collections.abc import Callable
from typing import Any, Final

V4L2_CID_MPEG_VIDEO_BITRATE: Final = 0x00990900 + 207
VIDIOC_S_CTRL: Final = 0xC008561C
_V4L2_CONTROL: Final = struct.Struct("=Ii")  # struct v4l2_control

Ioctl = Callable[[Any, int, bytes], Any]


def set_bitrate_control(device: Any, bitrate: int, ioctl: Ioctl = fcntl.ioctl) -> None:
    """Set the bitrate (bit/s) of the encoder open as `device`; OSError if it refuses."""
    ioctl(device, VIDIOC_S_CTRL, _V4L2_CONTROL.pack(V4L2_CID_MPEG_VIDEO_BITRATE, bitrate))


def running_device(encoder: Any) -> Any | None:
    """The V4L2 device a running picamera2 encoder has open, or None (software encoder,
    not started, or stopped)."""
    device = getattr(encoder, "vd", None)
    if device is None or getattr(device, "closed", True):
        return None
    return device
