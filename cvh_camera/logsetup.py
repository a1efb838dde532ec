"""Logging setup: one line per event; under systemd no timestamps (journald adds them)."""

from __future__ import annotations

import logging
import os

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def setup_logging(level: str = "info") -> None:
    under_journald = "JOURNAL_STREAM" in os.environ
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not under_journald:
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=LEVELS.get(level, logging.INFO), format=fmt, force=True)
    # aiohttp's access log would print every socket.io long-poll request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
