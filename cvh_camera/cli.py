"""The `cvh-camera` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cvh-camera", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    from cvh_camera.server import cli as server_cli

    server_parser = commands.add_parser("server", help="run the slot server")
    server_cli.add_arguments(server_parser)
    server_parser.set_defaults(run=server_cli.run)

    from cvh_camera.appliance import cli as appliance_cli

    appliance_parser = commands.add_parser("appliance", help="run the camera appliance")
    appliance_cli.add_arguments(appliance_parser)
    appliance_parser.set_defaults(run=appliance_cli.run)

    from cvh_camera import demo

    demo_parser = commands.add_parser("demo", help="local Janus + slot server, to try it out")
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(run=demo.run)

    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
