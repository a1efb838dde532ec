"""Camera sources behind one small interface (`base.VideoSource`) that yields H.264 access units.

- `picamera2`: the Pi camera and its hardware encoder (picamera2 is imported only there);
- `test`: a synthetic moving pattern with a frame counter, encoded by libx264 in real time;
- `file`: a recorded H.264 elementary stream replayed in real time, looping.
"""

from __future__ import annotations

from pathlib import Path

from cvh_camera.appliance.sources.base import AccessUnit, SourceError, SourceStats, VideoSource
from cvh_camera.appliance.sources.filesource import FileSource
from cvh_camera.appliance.sources.picamera2_source import Picamera2Source
from cvh_camera.appliance.sources.synthetic import SyntheticSource

__all__ = ["KINDS", "AccessUnit", "SourceError", "SourceStats", "VideoSource", "create_source"]

KINDS = ("picamera2", "test", "file")


def create_source(
    kind: str,
    *,
    width: int,
    height: int,
    fps: int,
    bitrate: int,
    keyframe_interval: int,
    file: Path | None = None,
) -> VideoSource:
    """The source of that kind; ValueError for an unknown kind or a missing file path."""
    if kind == "test":
        return SyntheticSource(
            width=width,
            height=height,
            fps=fps,
            bitrate=bitrate,
            keyframe_interval=keyframe_interval,
        )
    if kind == "file":
        if file is None:
            raise ValueError("the file source needs a recording: set camera.file")
        return FileSource(file, width=width, height=height, fps=fps)
    if kind == "picamera2":
        return Picamera2Source(
            width=width,
            height=height,
            fps=fps,
            bitrate=bitrate,
            keyframe_interval=keyframe_interval,
        )
    raise ValueError(f"unknown camera source {kind!r}: choose one of {', '.join(KINDS)}")
