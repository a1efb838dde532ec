"""The event loop both commands run on: uvloop where installed, else asyncio's own.

uvloop cut the slot server's fan-out latency by 10-20 % and the appliance's CPU per
packet (bench/RESULTS.md)."""

from __future__ import annotations

import asyncio


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
