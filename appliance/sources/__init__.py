"""Camera sources behind one small interface (`base.VideoSource`) that yields H.264 access units.

- `picamera2`: the Pi camera and its hardware encoder (picamera2 is imported only there);
- `test`: a synthetic moving pattern with a frame counter, encoded by libx264 in real time;
- `file`: a recorded H.264 elementary stream replayed in real time, looping.

The sources whose units come from a thread (picamera2, test) hand them to the event loop
through `handover.ThreadHandover`; the file source paces on the event loop itself. This
package's own import is light (no PyAV): `create_source` imports the source it makes, so the
configuration can check `KINDS` without loading a codec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from cvh_camera.appliance.sources.base import AccessUnit, SourceError, SourceStats, VideoSource

__all__ = ["KINDS", "AccessUnit", "SourceError", "SourceStats", "VideoSource", "create_source"]

KINDS: Final = ("picamera2", "test", "file")  # the values of `camera.source`


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
        from cvh_camera.appliance.sources.synthetic import SyntheticSource

        return SyntheticSource(
            width=width,
            height=height,
            fps=fps,
            bitrate=bitrate,
            keyframe_interval=keyframe_interval,
        )
    if kind == "file":
        from cvh_camera.appliance.sources.filesource import FileSource

        if file is None:
            raise ValueError("the file source needs a recording: set camera.file")
        return FileSource(file, width=width, height=height, fps=fps)
    if kind == "picamera2":
        from cvh_camera.appliance.sources.picamera2_source import Picamera2Source

        return Picamera2Source(
            width=width,
            height=height,
            fps=fps,
            bitrate=bitrate,
            keyframe_interval=keyframe_interval,
        )
    raise ValueError(f"unknown camera source {kind!r}: choose one of {', '.join(KINDS)}")
