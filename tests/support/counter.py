"""Reads the frame counter back from a decoded test-pattern picture (tests and benches only).

The pattern (cvh_camera.appliance.sources.pattern) draws the counter as 32 black or white
blocks inside a grey frame; this is its reader, kept out of the product.
"""

from __future__ import annotations

import av

from cvh_camera.appliance.sources.pattern import (
    BITS,
    GREY,
    MARGIN,
    MIN_HEIGHT,
    CounterLayout,
)


def read_counter(frame: av.VideoFrame) -> int | None:
    """The counter of a decoded test-pattern frame, or None if the blocks are not there.

    Each block is judged by the mean luma of its central 8×8 pixels; a mean between the black
    and white levels' safe bands, or a border that is not grey, means "no counter here".
    """
    layout = CounterLayout.for_width(frame.width)
    if layout is None or frame.height < MIN_HEIGHT:
        return None
    if frame.format.name not in ("yuv420p", "yuvj420p", "nv12", "gray"):
        frame = frame.reformat(format="gray")
    plane = frame.planes[0]
    data, stride = bytes(plane), plane.line_size

    def mean(x: int, y: int, size: int) -> float:
        rows = (data[(y + i) * stride + x : (y + i) * stride + x + size] for i in range(size))
        return sum(sum(row) for row in rows) / (size * size)

    border = [mean(MARGIN + 2, MARGIN + 2, 4), mean(MARGIN + layout.panel_width - 6, MARGIN + 2, 4)]
    if any(abs(level - GREY) > 40 for level in border):
        return None
    value = 0
    for bit in range(BITS):
        x, y = layout.block_origin(bit)
        level = mean(x + 4, y + 4, 8)
        if 80 < level < 170:
            return None
        value = value << 1 | (level >= 128)
    return value
