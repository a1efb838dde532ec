"""The slot server in a process of its own, for benchmarks.

`python bench/serve.py --config FILE [--uvloop]` runs what `cvh-camera server --config FILE`
runs, with two things a benchmark needs: a choice of event loop, and an open-files limit
high enough for thousands of sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from aiohttp import web
from procs import raise_nofile

from server.app import create_app
from server.config import ConfigError, describe, load_server_config
from wire.logsetup import setup_logging

log = logging.getLogger("bench.serve")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="server YAML")
    parser.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args()
    try:
        config = load_server_config(args.config, {})
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    nofile = raise_nofile()
    loop: asyncio.AbstractEventLoop
    if args.uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    log.info("bench server loop=%s nofile=%d %s", type(loop).__module__, nofile, describe(config))
    web.run_app(
        create_app(config),
        host=config.host,
        port=config.port,
        print=None,
        access_log=None,
        loop=loop,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
