"""`compute-dev spec check FILE` and `compute-dev spec schema`.

`check` answers the operator's question "would compute_ctl accept this spec, and what would it
do with it?" without starting anything: it loads the file exactly as compute_ctl does, resolves
the storage addresses, and prints the facts as one JSON object. A secret is never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from compute_ctl.errors import ComputeError, SpecError
from compute_ctl.spec.load import load_document
from compute_ctl.spec.models import ComputeConfig, ComputeSpec, GenericOptions
from compute_ctl.spec.resolve import ParsedSpec, resolve
from compute_dev.commands.plan import add_plan_parser

REDACTED = "<redacted>"


def _last_setting(options: GenericOptions, name: str) -> str | None:
    """Postgres keeps the last occurrence of a setting in postgresql.conf."""
    value = None
    for option in options or ():
        if option.name == name and option.value is not None:
            value = option.value
    return value


def describe(parsed: ParsedSpec) -> dict[str, Any]:
    """The resolved facts of a spec, as printed by `spec check`."""
    spec = parsed.spec
    protocol, url = parsed.basebackup_url()
    conninfo_json = parsed.pageserver_conninfo.model_dump(mode="json")
    from_block = parsed.postgres_pageservers.connstring
    from_settings = _last_setting(spec.cluster.settings, "neon.pageserver_connstring")
    return {
        "tenant_id": str(parsed.tenant_id),
        "timeline_id": str(parsed.timeline_id),
        "mode": spec.mode.to_json(),
        "pageserver_connection_info": conninfo_json,
        "basebackup": {"protocol": protocol.value, "url": url},
        "postgres_pageserver_connstring": from_settings
        if from_settings is not None
        else from_block,
        "stripe_size": parsed.pageserver_conninfo.stripe_size,
        "safekeeper_connstrings": list(parsed.safekeeper_connstrings),
        "storage_auth_token": REDACTED if parsed.storage_auth_token is not None else None,
    }


def check_file(path: Path) -> dict[str, Any]:
    """Load, resolve and describe a spec file; raises ComputeError on any problem."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise SpecError(str(path), exc.strerror or str(exc)) from None
    document = load_document(text)
    prefix = ""
    if isinstance(document, ComputeConfig):
        if document.spec is None:
            return {"spec": None}
        spec: ComputeSpec = document.spec
        prefix = "spec."
    else:
        spec = document
    try:
        return describe(resolve(spec))
    except SpecError as exc:
        raise SpecError(prefix + exc.field, exc.problem) from exc.__cause__


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        result = check_file(Path(args.file))
    except ComputeError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def spec_schema() -> dict[str, Any]:
    """The JSON Schema `spec schema` prints, as a value: the tests that hold `spec check`,
    `-S` and `/configure` to one verdict generate their specs from exactly this document."""
    return TypeAdapter(ComputeSpec).json_schema(mode="validation")


def _cmd_schema(args: argparse.Namespace) -> int:
    del args
    print(json.dumps(spec_schema(), indent=2))
    return 0


def add_spec_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    spec = subparsers.add_parser("spec", help="check compute specs and print their schema")
    spec_sub = spec.add_subparsers(dest="spec_command", required=True, metavar="COMMAND")
    check = spec_sub.add_parser(
        "check", help="load and resolve a ComputeSpec or ComputeConfig file; print its facts"
    )
    check.add_argument("file", metavar="FILE")
    check.set_defaults(handler=_cmd_check)
    schema = spec_sub.add_parser("schema", help="print the JSON Schema of ComputeSpec")
    schema.set_defaults(handler=_cmd_schema)
    add_plan_parser(spec_sub)
