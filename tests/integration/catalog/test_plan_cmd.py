"""`compute-dev spec plan` prints what would run, redacts passwords and changes nothing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from compute_dev.commands.plan import add_plan_parser
from tests.integration.catalog.conftest import apply, role_names, spec_of
from tests.integration.catalog.verifiers import md5_digest
from tests.support.pgserver import PgServer

pytestmark = pytest.mark.postgres


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="compute-dev spec")
    add_plan_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def test_plan_prints_redacted_sql_and_changes_nothing(
    pg: PgServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = md5_digest("pw", "plan_role")
    spec = spec_of(
        [{"name": "plan_role", "encrypted_password": digest}],
        [{"name": "plan db", "owner": "plan_role"}],
    )
    path = tmp_path / "spec.json"
    path.write_text(spec.model_dump_json())
    assert run(["plan", str(path), "--connstr", pg.connstr()]) == 0
    out = capsys.readouterr().out
    assert '-- CreateAndAlterRoles: role "plan_role"\n' in out
    assert 'CREATE ROLE "plan_role" INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION' in out
    assert "PASSWORD '<redacted>';" in out
    assert digest not in out
    assert 'CREATE DATABASE "plan db" OWNER "plan_role";' in out
    assert '-- ChangeSchemaPerms: database "plan db" (in database "plan db")' in out
    assert "--   with compute_ctl.db_owner = 'plan_role'" in out
    assert role_names(pg, ["plan_role"]) == set()

    apply(pg, spec)
    assert run(["plan", str(path), "--connstr", pg.connstr(), "--summary"]) == 0
    assert capsys.readouterr().out.endswith("-- 0 statements to run\n")
    apply(
        pg,
        spec_of(
            delta_operations=[
                {"action": "delete_db", "name": "plan db"},
                {"action": "delete_role", "name": "plan_role"},
            ]
        ),
    )


def test_plan_reports_a_bad_spec(
    pg: PgServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spec.json"
    document = json.loads(spec_of().model_dump_json())
    document["cluster"]["roles"] = [{"name": "r", "encrypted_password": "not a hash"}]
    path.write_text(json.dumps(document))
    assert run(["plan", str(path), "--connstr", pg.connstr()]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cluster.roles[0].encrypted_password: role 'r'")
    assert "not a hash" not in err
