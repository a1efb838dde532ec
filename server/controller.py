"""The controller interface (docs/protocol.md): one command per line on standard input.

`execute_line` parses a line and applies it to the slot service; a bad line raises
`BadLine` (or the service's `CommandRejected`) and changes nothing. `ControllerInput`
turns the bytes of a pipe, terminal or file into lines without ever blocking the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
from collections.abc import Callable
from typing import IO

from cvh_camera.secrets import mask
from cvh_camera.server.service import CommandRejected, SlotService
from cvh_camera.server.slots import CORNERS, GEOMETRY_COMMANDS, VISIBILITY_COMMANDS, SlotCommand

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
_INTEGER = re.compile(r"[+-]?\d{1,15}")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_SECRET_ARGUMENT = {"activate_slot": 2, "refresh_token": 2, "edit_pin": 1}


class BadLine(Exception):
    """A line that is not a valid controller command."""


def redact(line: str) -> str:
    """The line as it may appear in a log: tokens and pins masked."""
    words = line.split(" ")
    position = _SECRET_ARGUMENT.get(words[0])
    if position is not None and len(words) > position:
        words[position] = mask(words[position])
    return " ".join(words)


def _parse_int(word: str, what: str) -> int:
    if not _INTEGER.fullmatch(word):
        raise BadLine(f"{what} {word!r} is not an integer")
    return int(word)


def _geometry(command: str, params: list[str]) -> SlotCommand:
    if len(params) not in (5, 6):
        raise BadLine(f"{command} takes <lt|lb|rt|rb> <x> <y> <w> <h> [z], got {len(params)} words")
    if params[0] not in CORNERS:
        raise BadLine(f"corner {params[0]!r} is not one of {', '.join(CORNERS)}")
    for word in params[1:]:
        if not _NUMBER.fullmatch(word):
            raise BadLine(f"geometry value {word!r} is not a number")
    return SlotCommand(command, tuple(params))


def _needs(params: list[str], what: str) -> str:
    if not params or not params[0]:
        raise BadLine(f"missing {what}")
    return params[0]


def execute_line(service: SlotService, line: str) -> None:
    """Apply one controller line. Raises BadLine or CommandRejected for a bad one."""
    words = line.split(" ")
    command, rest = words[0], words[1:]
    if command == "edit_pin":
        service.edit_pin(_needs(rest, "pin"))
        return
    known = (*VISIBILITY_COMMANDS, *GEOMETRY_COMMANDS, *_SLOT_COMMANDS)
    if command not in known:
        raise BadLine(f"unknown command {command!r}")
    index = _parse_int(_needs(rest, "slot"), "slot")
    if not service.table.exists(index):
        raise BadLine(f"slot {index} does not exist (there are {service.table.count} slots)")
    params = rest[1:]
    if command in VISIBILITY_COMMANDS:
        service.set_slot_command(index, SlotCommand(command, tuple(params)), geometry=False)
    elif command in GEOMETRY_COMMANDS:
        service.set_slot_command(index, _geometry(command, params), geometry=True)
    else:
        _SLOT_COMMANDS[command](service, index, params)


def _activate(service: SlotService, index: int, params: list[str]) -> None:
    token = _needs(params, "token")
    service.activate_slot(index, token, " ".join(params[1:]) or None)


def _bitrate(service: SlotService, index: int, params: list[str]) -> None:
    limit = _parse_int(_needs(params, "bitrate"), "bitrate")
    service.set_controller_bitrate_limit(index, limit)


_SLOT_COMMANDS: dict[str, Callable[[SlotService, int, list[str]], None]] = {
    "activate_slot": _activate,
    "refresh_token": lambda s, i, p: s.refresh_token(i, _needs(p, "token")),
    "deactivate_slot": lambda s, i, p: s.deactivate_slot(i),
    "set_annotation": lambda s, i, p: s.set_annotation(i, _needs([" ".join(p)], "annotation")),
    "remove_annotation": lambda s, i, p: s.remove_annotation(i),
    "set_bitrate_limit": _bitrate,
}


def handle_line(service: SlotService, raw: str) -> bool:
    """Execute a line, logging it; a bad line is logged and ignored. True if it was applied."""
    line = raw.strip("\r\n").strip()
    if not line:
        return False
    try:
        execute_line(service, line)
    except (BadLine, CommandRejected) as problem:
        log.warning("controller line ignored: %s (line: %s)", problem, redact(line)[:200])
        return False
    log.info("controller: %s", redact(line)[:200])
    return True


class LineSplitter:
    """Bytes in, lines out; a line longer than MAX_LINE is dropped whole, with a warning."""

    def __init__(self, on_line: Callable[[str], object]) -> None:
        self._on_line = on_line
        self._pending = b""
        self._discarding = False

    def feed(self, chunk: bytes) -> None:
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        for line in lines:
            if self._discarding:
                self._discarding = False
            else:
                self._on_line(line.decode("utf-8", errors="replace"))
        if len(self._pending) > MAX_LINE:
            log.warning("controller line longer than %d bytes ignored", MAX_LINE)
            self._pending, self._discarding = b"", True

    def close(self) -> None:
        if self._pending and not self._discarding:
            self._on_line(self._pending.decode("utf-8", errors="replace"))
        self._pending, self._discarding = b"", False


class ControllerInput:
    """Reads controller lines from a stream (normally stdin) and hands them to `on_line`."""

    def __init__(self, stream: IO[bytes] | IO[str], on_line: Callable[[str], object]) -> None:
        self._stream = stream
        self._lines = LineSplitter(on_line)

    async def run(self) -> None:
        """Read until end of input. Returns at EOF; cancel to stop earlier."""
        try:
            fd = self._stream.fileno()
            mode = os.fstat(fd).st_mode
        except (OSError, ValueError):
            log.info("no controller input (stdin closed)")
            return
        if stat.S_ISREG(mode):
            self._lines.feed(await asyncio.to_thread(self._read_all, fd))
            self._lines.close()
        elif stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd):
            await self._read_pipe()
        else:
            log.info("controller input is not a pipe, terminal or file; not reading it")
            return
        log.info("controller input ended")

    @staticmethod
    def _read_all(fd: int) -> bytes:
        chunks = []
        while chunk := os.read(fd, MAX_LINE):
            chunks.append(chunk)
        return b"".join(chunks)

    async def _read_pipe(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), self._stream
        )
        try:
            while chunk := await reader.read(MAX_LINE):
                self._lines.feed(chunk)
            self._lines.close()
        finally:
            transport.close()
