"""Parallel cluster-wide phases: roles and databases are spread over several connections, but no
more than `cluster_phase_width()` of them, whatever the start-up concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from compute_ctl.catalog import plan_spec
from compute_ctl.catalog.connect import connect_maintenance
from compute_ctl.catalog.execute import Executor, cluster_phase_width
from tests.integration.catalog.conftest import apply, databases, role_names, spec_of
from tests.support.pgserver import PgServer

pytestmark = pytest.mark.postgres

APP = "compute_ctl:test"


def test_width_is_twice_the_cores_and_at_least_four() -> None:
    width = cluster_phase_width()
    assert width >= 4
    assert width % 2 == 0


def test_parallel_phases_open_at_most_the_width(pg: PgServer) -> None:
    roles = [{"name": f"wide role {i:02d}"} for i in range(3 * cluster_phase_width())]
    dbs = [{"name": f"wide db {i:02d}", "owner": roles[i]["name"]} for i in range(6)]
    spec = spec_of(roles, dbs)
    opened: list[str | None] = []

    async def run() -> int:
        plan = await plan_spec(pg.connstr(), spec)

        async def connector(dbname: str | None) -> psycopg.AsyncConnection[Any]:
            opened.append(dbname)
            return await connect_maintenance(pg.connstr(), application_name=APP, dbname=dbname)

        main = await connect_maintenance(pg.connstr(), application_name=APP)
        async with main:
            result = await Executor(main, connector, concurrency=100).run(plan)
        return result.executed

    try:
        assert asyncio.run(run()) > len(roles) + len(dbs)
        names = [r["name"] for r in roles]
        assert role_names(pg, names) == set(names)
        assert databases(pg, [d["name"] for d in dbs]) == {d["name"]: d["owner"] for d in dbs}
        # helpers to the system database: the width less the main connection, opened once
        assert opened.count(None) == cluster_phase_width() - 1
    finally:
        apply(
            pg,
            spec_of(
                delta_operations=[{"action": "delete_db", "name": d["name"]} for d in dbs]
                + [{"action": "delete_role", "name": r["name"]} for r in roles]
            ),
        )
