"""`compute-dev`: development tools for compute_ctl (never needed in production).

The entry point only: it gathers the subcommands of `compute_dev.commands`, which start the
servers of `compute_dev.standins`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from compute_dev.commands.http_standins import (
    add_control_plane_parser,
    add_endpoint_storage_parser,
    add_extension_gateway_parser,
)
from compute_dev.commands.spec import add_spec_parser
from compute_dev.commands.storage import add_storage_parser
from compute_dev.commands.timeline import add_timeline_parser
from compute_dev.commands.up import add_up_parser

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compute-dev", description="Development tools for compute_ctl."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_spec_parser(sub)
    add_timeline_parser(sub)
    add_storage_parser(sub)
    add_up_parser(sub)
    add_control_plane_parser(sub)
    add_endpoint_storage_parser(sub)
    add_extension_gateway_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
