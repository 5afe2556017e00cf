"""Migrations run once, in order, each with its counter update; a failure stops them and the
next run resumes there; every applied migration's test SQL passes."""

from __future__ import annotations

import asyncio
import logging

import pytest

from compute_ctl.catalog import check_migration_effects, run_migrations, should_run_migrations
from compute_ctl.catalog.migrations import migrations
from compute_ctl.errors import CatalogError
from compute_ctl.failpoints import Failpoints
from tests.integration.catalog.conftest import apply, execute, rows, spec_of
from tests.support.pgserver import PgServer

pytestmark = pytest.mark.postgres

LAST = len(migrations())


def _counter(pg: PgServer) -> int:
    value: int = rows(pg, "SELECT id FROM neon_migration.migration_id")[0][0]
    return value


def test_migrations_run_once_and_their_effects_hold(
    pg: PgServer, caplog: pytest.LogCaptureFixture
) -> None:
    apply(pg, spec_of([{"name": "mig_member"}]))  # the privileged role and a member of it
    caplog.set_level(logging.INFO, logger="compute_ctl.catalog.migrations")
    asyncio.run(run_migrations(pg.connstr()))
    assert _counter(pg) == LAST
    for migration in migrations():
        verb = "Skipping" if migration.skipped else "Running"
        assert f"{verb} migration id={migration.id}" in caplog.text
    assert asyncio.run(check_migration_effects(pg.connstr())) == {
        m.id: None for m in migrations() if not m.untested
    }

    caplog.clear()
    report = asyncio.run(run_migrations(pg.connstr()))
    assert (report.previous_id, report.current_id, report.ran, report.skipped) == (
        LAST,
        LAST,
        [],
        [],
    )
    assert "migration id=" not in caplog.text
    assert rows(
        pg,
        "SELECT nspowner::regrole::text, nspacl IS NOT NULL FROM pg_namespace"
        " WHERE nspname = 'neon_migration'",
    ) == [("cloud_admin", True)]


def test_a_failed_migration_stops_and_resumes(pg: PgServer) -> None:
    asyncio.run(run_migrations(pg.connstr()))
    execute(pg, "UPDATE neon_migration.migration_id SET id = 3")
    failed: list[int] = []
    with pytest.raises(CatalogError) as caught:
        asyncio.run(run_migrations(pg.connstr(), fail_at=5, on_failure=failed.append))
    assert caught.value.obj == "migration id=5"
    assert "failpoint" in caught.value.message
    assert failed == [5]
    assert _counter(pg) == 4  # 4 ran and was recorded; 5 was rolled back
    report = asyncio.run(run_migrations(pg.connstr()))
    assert report.previous_id == 4
    assert report.skipped == [5, 6, 7, 8, 9]
    assert _counter(pg) == LAST


def test_the_compute_migration_failpoint(pg: PgServer) -> None:
    """Upstream's test_compute_migrations_retry: each start with `compute-migration=return(i)`
    applies the migrations before i, fails i (counted once) and leaves the counter at i - 1;
    a start without the failpoint applies the rest. Without the testing switch FAILPOINTS
    does nothing."""
    execute(pg, "DROP SCHEMA IF EXISTS neon_migration CASCADE")
    for i in range(1, LAST + 1):
        points = Failpoints.from_environ(
            {"COMPUTE_CTL_TESTING": "1", "FAILPOINTS": f"compute-migration=return({i})"}
        )
        failed: list[int] = []
        with pytest.raises(CatalogError, match=f"migration {i} was configured to fail"):
            asyncio.run(run_migrations(pg.connstr(), failpoints=points, on_failure=failed.append))
        assert failed == [i]
        assert _counter(pg) == i - 1
    off = Failpoints.from_environ({"FAILPOINTS": "compute-migration=return(1)"})
    report = asyncio.run(run_migrations(pg.connstr(), failpoints=off))
    assert (report.previous_id, report.current_id) == (LAST - 1, LAST)
    assert _counter(pg) == LAST


def test_migrations_run_only_at_start_of_a_primary_with_catalog_updates() -> None:
    assert should_run_migrations(spec_of(), starting=True)
    assert not should_run_migrations(spec_of(), starting=False)
    assert not should_run_migrations(spec_of(skip_pg_catalog_updates=True), starting=True)
    assert not should_run_migrations(spec_of(mode="Replica"), starting=True)
