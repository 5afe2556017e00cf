"""One throwaway PostgreSQL cluster for the catalog tests, and helpers to use it.

The cluster logs every statement (so tests can prove what was, and was not, sent and that no
password reaches the log), preloads pg_stat_statements (to prove passwords stay out of it too),
and checks the passwords of PASSWORD_ROLES over TCP (to prove stored verifiers work for logging in).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from compute_ctl.catalog import ApplyReport, apply_spec
from compute_ctl.spec.models import ComputeSpec
from compute_dev.pgbin import PgBinNotFoundError, find_pg_bin
from tests.support.pgserver import PgServer, start_server
from tests.support.specs import minimal_spec

# Roles whose passwords the server checks (over TCP), so tests can log in with them.
PASSWORD_ROLES = ("pw_md5", "pw_scram")


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    try:
        find_pg_bin()
    except PgBinNotFoundError as exc:
        pytest.skip(str(exc))
    server = start_server(
        settings={
            "log_statement": "all",
            "shared_preload_libraries": "pg_stat_statements",
            "pg_stat_statements.track_utility": "on",
        },
        hba=[f"host all {','.join(PASSWORD_ROLES)} 127.0.0.1/32 md5"],
    )
    try:
        yield server
    finally:
        server.stop()


PRELOAD_PG_STAT_STATEMENTS = [
    {"name": "shared_preload_libraries", "value": "pg_stat_statements", "vartype": "string"}
]


def spec_of(
    roles: list[dict[str, Any]] | None = None,
    databases: list[dict[str, Any]] | None = None,
    *,
    settings: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> ComputeSpec:
    cluster = {"roles": roles or [], "databases": databases or [], "settings": settings}
    return ComputeSpec.model_validate(minimal_spec(cluster=cluster, **fields))


def apply(pg: PgServer, spec: ComputeSpec, **options: Any) -> ApplyReport:
    return asyncio.run(apply_spec(pg.connstr(), spec, **options))


def rows(pg: PgServer, query: str, params: Any = None, dbname: str = "postgres") -> list[Any]:
    with psycopg.connect(pg.connstr(), dbname=dbname, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def execute(pg: PgServer, query: str, params: Any = None, dbname: str = "postgres") -> None:
    with psycopg.connect(pg.connstr(), dbname=dbname, autocommit=True) as conn:
        conn.execute(query, params)


def role_names(pg: PgServer, names: list[str] | tuple[str, ...]) -> set[str]:
    found = rows(pg, "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(names),))
    return {r[0] for r in found}


def passwords(pg: PgServer, names: list[str] | tuple[str, ...]) -> dict[str, str | None]:
    found = rows(
        pg, "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s)", (list(names),)
    )
    return {r[0]: r[1] for r in found}


def databases(pg: PgServer, names: list[str] | tuple[str, ...]) -> dict[str, str]:
    found = rows(
        pg,
        "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY(%s)",
        (list(names),),
    )
    return {r[0]: r[1] for r in found}


class LogWindow:
    """The server log lines written between two marker statements."""

    def __init__(self, pg: PgServer) -> None:
        self.pg = pg
        self.token = uuid.uuid4().hex
        self.lines: list[str] = []

    def __enter__(self) -> LogWindow:
        execute(self.pg, f"SELECT 'begin-{self.token}'")
        return self

    def __exit__(self, *exc: object) -> None:
        # The marker is logged before it runs, and it has run when execute() returns, so every
        # line logged before it is in the file by now.
        execute(self.pg, f"SELECT 'end-{self.token}'")
        text = self.pg.log_text()
        start = text.index(f"begin-{self.token}")
        end = text.index(f"end-{self.token}")
        self.lines = text[start:end].splitlines()[1:]

    def statements(self) -> list[str]:
        return [line.split("statement: ", 1)[1] for line in self.lines if "statement: " in line]
