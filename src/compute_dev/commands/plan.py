"""`compute-dev spec plan FILE --connstr URL`: the SQL a spec would run, without running it.

It reads the catalog of the given Postgres (on a read-only session) and prints, as an SQL script
with one comment per statement naming its phase and object, exactly what applying the spec now
would execute; passwords are replaced by `'<redacted>'`. An unchanged spec prints no statement.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from compute_ctl.catalog import plan_spec
from compute_ctl.catalog.plan import DEFAULT_PRIVILEGED_ROLE
from compute_ctl.errors import ComputeError, SpecError
from compute_ctl.spec.load import load_document
from compute_ctl.spec.models import ComputeConfig, ComputeSpec


def _load_spec(path: Path) -> ComputeSpec | None:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise SpecError(str(path), exc.strerror or str(exc)) from None
    document = load_document(text)
    if isinstance(document, ComputeConfig):
        return document.spec
    return document


def _cmd_plan(args: argparse.Namespace) -> int:
    try:
        spec = _load_spec(Path(args.file))
        if spec is None:
            print("-- the file holds no spec: nothing to plan")
            return 0
        plan = asyncio.run(
            plan_spec(
                args.connstr,
                spec,
                privileged_role_name=args.privileged_role_name,
                timeline_id=args.timeline_id,
            )
        )
    except ComputeError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 1
    for note in plan.notes:
        print(f"-- note: {note}")
    sys.stdout.write(plan.render(summary=args.summary))
    count = len(plan)
    print(f"-- {count} statement{'' if count == 1 else 's'} to run")
    return 0


def add_plan_parser(spec_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = spec_subparsers.add_parser(
        "plan",
        help="print the SQL applying a spec to a running Postgres would execute (changes nothing)",
    )
    plan.add_argument("file", metavar="FILE", help="a ComputeSpec or ComputeConfig JSON file")
    plan.add_argument("--connstr", required=True, metavar="URL", help="the Postgres to compare")
    plan.add_argument("--privileged-role-name", default=DEFAULT_PRIVILEGED_ROLE)
    plan.add_argument(
        "--timeline-id", help="timeline of the compute (when subscriptions are dropped at start)"
    )
    plan.add_argument("--summary", action="store_true", help="one comment line per statement")
    plan.set_defaults(handler=_cmd_plan)
