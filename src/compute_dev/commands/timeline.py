"""`compute-dev timeline create`: initdb a new timeline in a stand-in timeline store and print
its ids and LSN as one JSON line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from compute_ctl.spec.types import TenantId, TimelineId
from compute_dev.pgbin import PgBinNotFoundError
from compute_dev.standins.timelines import TimelineError, TimelineStore


def add_timeline_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `timeline create` to a `compute-dev` subcommand set.

    The handler is stored as the `handler` default: `args.handler(args)` returns the exit code.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "timeline", help="manage the stand-in pageserver's timelines"
    )
    actions = parser.add_subparsers(dest="timeline_command", required=True)
    create = actions.add_parser(
        "create", help="initdb a new timeline and print its ids and LSN as JSON"
    )
    create.add_argument("--dir", required=True, type=Path, help="the timeline store's root")
    create.add_argument("--tenant-id", type=_id_arg(TenantId), help="default: a random id")
    create.add_argument("--timeline-id", type=_id_arg(TimelineId), help="default: a random id")
    create.add_argument("--pg-bin", type=Path, help="PostgreSQL's bin directory")
    create.set_defaults(handler=run_timeline_create)
    return parser


def _id_arg(kind: type[TenantId] | type[TimelineId]) -> Any:
    def parse(text: str) -> TenantId | TimelineId:
        try:
            return kind(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"invalid {kind.kind} {text!r}: {exc}") from None

    return parse


def run_timeline_create(args: argparse.Namespace) -> int:
    """`compute-dev timeline create`: print `{"tenant_id", "timeline_id", "lsn"}`."""
    store = TimelineStore(args.dir)
    try:
        timeline = store.create(
            tenant_id=args.tenant_id, timeline_id=args.timeline_id, pg_bin=args.pg_bin
        )
    except (TimelineError, PgBinNotFoundError) as exc:
        print(f"compute-dev timeline create: {exc}", file=sys.stderr)
        return 1
    record = {
        "tenant_id": str(timeline.tenant_id),
        "timeline_id": str(timeline.timeline_id),
        "lsn": str(timeline.lsn),
    }
    print(json.dumps(record))
    return 0
