"""`compute-dev`: development tools for compute_ctl (never needed in production)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from compute_dev.control_plane import add_control_plane_parser
from compute_dev.endpoint_storage import add_endpoint_storage_parser
from compute_dev.extension_gateway import add_extension_gateway_parser
from compute_dev.spec_cmd import add_spec_parser
from compute_dev.storage_cmd import add_storage_parser
from compute_dev.timelines import add_timeline_parser
from compute_dev.up import add_up_parser

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
