"""The synthetic test picture: moving stripes, a shimmering band, and the frame counter.

The counter is drawn twice: as large seven-segment digits for people, and as 32 black or white
16×16 blocks (most significant bit first, one to four rows) inside a grey frame at the
top-left, aligned to macroblocks, for machines (tests/support/counter.py reads it back from
a decoded frame). Every picture is assembled from precomputed rows of bytes, so a frame costs
a few hundred slice copies and no per-pixel Python.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import av
from av.video.plane import VideoPlane

BITS = 32
BLOCK = 16  # side of one counter block, px
MARGIN = 8  # distance of the counter panel and the digits from the picture's edge
BORDER = 8  # grey frame around the blocks
BLACK, GREY, WHITE, NEUTRAL = 16, 128, 235, 128
MIN_WIDTH, MIN_HEIGHT = 160, 120
_STRIPE_PERIOD = 128
_STRIPE_SPEED = 4  # px per frame
_TEXTURE_ROWS = 61
_SEGMENTS = (
    "abcdef",
    "bc",
    "abdeg",
    "abcdg",
    "bcfg",
    "acdfg",
    "acdefg",
    "abc",
    "abcdefg",
    "abcdfg",
)


@dataclass(frozen=True)
class CounterLayout:
    """Where the counter blocks sit in a picture of a given width."""

    columns: int

    @property
    def rows(self) -> int:
        return BITS // self.columns

    @property
    def panel_width(self) -> int:
        return self.columns * BLOCK + 2 * BORDER

    @property
    def panel_height(self) -> int:
        return self.rows * BLOCK + 2 * BORDER

    @classmethod
    def for_width(cls, width: int) -> CounterLayout | None:
        for columns in (32, 16, 8):
            if MARGIN + columns * BLOCK + 2 * BORDER <= width - MARGIN:
                return cls(columns)
        return None

    def block_origin(self, bit: int) -> tuple[int, int]:
        """Top-left corner of the block of `bit` (0 = most significant)."""
        row, column = divmod(bit, self.columns)
        return MARGIN + BORDER + column * BLOCK, MARGIN + BORDER + row * BLOCK


def _triangle(period: int, low: int, high: int, length: int) -> bytes:
    half = period // 2
    return bytes(low + (high - low) * abs(x % period - half) // half for x in range(length))


def _digit_rows(digit: int, height: int, width: int, gap: int) -> list[bytes]:
    """Rows of one seven-segment digit on black, `gap` black columns on its right."""
    segments = _SEGMENTS[digit]
    stroke = max(2, height // 8)
    middle = height // 2
    rows = []
    for y in range(height):
        row = bytearray([BLACK]) * (width + gap)
        bars = (y < stroke and "a" in segments) or (y >= height - stroke and "d" in segments)
        bars = bars or (abs(y - middle) < stroke // 2 + 1 and "g" in segments)
        if bars:
            row[0:width] = bytes([WHITE]) * width
        left, right = ("f", "b") if y < middle else ("e", "c")
        if left in segments:
            row[0:stroke] = bytes([WHITE]) * stroke
        if right in segments:
            row[width - stroke : width] = bytes([WHITE]) * stroke
        rows.append(bytes(row))
    return rows


class TestPattern:
    """Draws yuv420p frames of the test picture for a frame counter value."""

    __test__ = False  # not a pytest test class

    def __init__(self, width: int, height: int) -> None:
        layout = CounterLayout.for_width(width)
        if layout is None or height < MIN_HEIGHT or width % 2 or height % 2:
            raise ValueError(
                f"the test pattern needs an even size of at least {MIN_WIDTH}x{MIN_HEIGHT}, "
                f"got {width}x{height}"
            )
        self.width, self.height, self.layout = width, height, layout
        wave = _triangle(_STRIPE_PERIOD, 40, 200, width + _STRIPE_PERIOD)
        self._stripes = [wave[o : o + width] for o in range(_STRIPE_PERIOD)]
        rng = random.Random(20240601)  # the same picture on every run
        self._texture = [rng.randbytes(2 * width) for _ in range(_TEXTURE_ROWS)]
        self._texture = [bytes(96 + (b & 63) for b in row) for row in self._texture]
        self._band_top = height * 3 // 4 // 2 * 2
        chroma_width = width // 2
        u_wave = _triangle(64, 64, 192, chroma_width + 64)
        self._u_rows = [u_wave[o : o + chroma_width] for o in range(64)]
        self._v_rows = [bytes([v]) * chroma_width for v in _triangle(90, 80, 176, 90)]
        self._init_digits()

    def _init_digits(self) -> None:
        top = MARGIN + self.layout.panel_height + MARGIN
        height = min(max(24, self.height // 6), self.height - top - MARGIN) // 2 * 2
        self._digits_top = top
        self._digit_count = 0
        if height < 16:
            return
        width = height * 3 // 5 // 2 * 2
        gap = max(4, height // 6) // 2 * 2
        self._digit_count = min(10, (self.width - 2 * MARGIN - gap) // (width + gap))
        self._glyphs = [_digit_rows(d, height, width, gap) for d in range(10)]
        self._digit_lead = bytes([BLACK]) * gap
        self._digit_height = height

    def frame(self, counter: int) -> av.VideoFrame:
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        luma, u_plane, v_plane = frame.planes
        self._draw_background(counter, luma, u_plane, v_plane)
        self._draw_blocks(counter, luma)
        boxes = [(MARGIN, MARGIN, self.layout.panel_width, self.layout.panel_height)]
        if self._digit_count:
            boxes.append(self._draw_digits(counter, luma))
        for box in boxes:
            _neutral_chroma(u_plane, box)
            _neutral_chroma(v_plane, box)
        return frame

    def _draw_background(self, n: int, luma: VideoPlane, u: VideoPlane, v: VideoPlane) -> None:
        shift = n * _STRIPE_SPEED
        rows = [self._stripes[(y + shift) % _STRIPE_PERIOD] for y in range(self._band_top)]
        offset = n * 7 % self.width
        for y in range(self._band_top, self.height):  # fresh-looking texture: rows reshuffle
            texture = self._texture[(y * 17 + n * 5) % _TEXTURE_ROWS]
            rows.append(texture[offset : offset + self.width])
        _fill_plane(luma, rows)
        chroma_height = self.height // 2
        _fill_plane(u, [self._u_rows[(n * 2) % 64]] * chroma_height)
        v_count = len(self._v_rows)
        _fill_plane(v, [self._v_rows[(y + n) % v_count] for y in range(chroma_height)])

    def _draw_blocks(self, counter: int, luma: VideoPlane) -> None:
        layout, stride = self.layout, luma.line_size
        view = memoryview(luma)
        grey = bytes([GREY]) * layout.panel_width
        edge = bytes([GREY]) * BORDER
        black, white = bytes([BLACK]) * BLOCK, bytes([WHITE]) * BLOCK
        bits = [(counter >> (BITS - 1 - i)) & 1 for i in range(BITS)]
        lines = [grey] * BORDER
        for row in range(layout.rows):
            chunk = bits[row * layout.columns : (row + 1) * layout.columns]
            line = edge + b"".join(white if bit else black for bit in chunk) + edge
            lines += [line] * BLOCK
        lines += [grey] * BORDER
        for i, line in enumerate(lines):
            start = (MARGIN + i) * stride + MARGIN
            view[start : start + len(line)] = line

    def _draw_digits(self, counter: int, luma: VideoPlane) -> tuple[int, int, int, int]:
        text = str(counter % 10**self._digit_count).zfill(self._digit_count)
        glyphs = [self._glyphs[int(c)] for c in text]
        view, stride = memoryview(luma), luma.line_size
        width = 0
        for y in range(self._digit_height):
            line = self._digit_lead + b"".join(glyph[y] for glyph in glyphs)
            start = (self._digits_top + y) * stride + MARGIN
            view[start : start + len(line)] = line
            width = len(line)
        return MARGIN, self._digits_top, width, self._digit_height


def _fill_plane(plane: VideoPlane, rows: list[bytes]) -> None:
    view = memoryview(plane)
    stride = plane.line_size
    width = len(rows[0])
    if stride == width:
        view[:] = b"".join(rows)
        return
    for y, row in enumerate(rows):
        view[y * stride : y * stride + width] = row


def _neutral_chroma(plane: VideoPlane, box: tuple[int, int, int, int]) -> None:
    x, y, width, height = (value // 2 for value in box)
    view, stride = memoryview(plane), plane.line_size
    line = bytes([NEUTRAL]) * width
    for row in range(y, y + height):
        view[row * stride + x : row * stride + x + len(line)] = line
