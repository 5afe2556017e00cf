"""Lakebase mode and testing builds as whole processes, on stock PostgreSQL.

Databricks' Postgres is not there: its extension is absent (HandleDatabricksAuthExtension is
skipped with a note) and the neon extension's objects too; everything else of lakebase mode
runs for real. `databricks_settings` is not sent here: its `include_if_exists` lines in
pg_hba.conf need PostgreSQL 16 (tests/unit/test_lakebase.py checks the files).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from compute_ctl.catalog.migrations import migrations
from tests.e2e.conftest import SpecFactory
from tests.support.endpoint_storage import EndpointStorage
from tests.support.harness import (
    Compute,
    SigningKey,
    Storage,
    ctl_config,
    http,
    shared_tempdir,
    start_storage,
    stop_process,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres

LAKEBASE = ("--lakebase-mode", "true", "--privileged-role-name", "databricks_superuser")
INSTANCE = {"INSTANCE_ID": "inst-1"}
LAST_MIGRATION = len(migrations())


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _migrated(compute: Compute) -> int:
    try:
        value = compute.sql("SELECT id FROM neon_migration.migration_id")
    except psycopg.errors.UndefinedTable:  # the table appears with the first migration run
        return -1
    return int(value)


@pytest.fixture
def mounted(compute: Compute) -> Iterator[Path]:
    """A PGDATA that cannot be removed or made again, only emptied, like a mount point: the
    compute's user owns it, root owns its parent (so its own entry cannot change)."""
    if os.geteuid() != 0 or compute.run_as.is_self:
        pytest.skip("needs root to make a directory the compute's user cannot remove")
    parent = compute.workdir / "mnt"
    parent.mkdir()
    os.chown(parent, 0, 0)
    parent.chmod(0o755)
    pgdata = parent / "pgdata"
    pgdata.mkdir()
    (pgdata / "left-over").write_text("from a previous run")
    compute.run_as.chown(pgdata)
    compute.pgdata_path = pgdata
    yield pgdata
    shutil.rmtree(parent, ignore_errors=True)


def test_lakebase_compute_on_stock_postgres(
    compute: Compute, make_spec: SpecFactory, storage: Storage, mounted: Path
) -> None:
    spec = make_spec(skip_pg_catalog_updates=False)
    path = compute.write("spec.json", spec)
    compute.start("-S", str(path), "-i", "ep-1/0", *LAKEBASE, env=INSTANCE)
    assert compute.wait_status("running", "failed")["status"] == "running", compute.log()

    # PGDATA: the mount point kept, its contents replaced.
    assert not (mounted / "left-over").exists()
    assert "may be mounted" in compute.log()
    # postgresql.conf: the connstr's port, then the (empty) Databricks block, then the include.
    conf = (mounted / "postgresql.conf").read_text()
    assert conf.endswith(
        f"port = {compute.pg_port}\n"
        "# Databricks settings start\n"
        "# Databricks settings end\n"
        "include_if_exists = 'compute_ctl_temp_override.conf'\n"
    )
    # Postgres' environment.
    env = _environ(compute.postmaster_pid())
    assert (env["DATABRICKS_ENDPOINT_ID"], env["DATABRICKS_WORKSPACE_HOST"]) == ("inst-1", "")
    assert "Starting Postgres for databricks endpoint id: inst-1" in compute.log()
    # Metrics.
    labels = (
        f'pg_compute_id="ep-1/0",pg_instance_id="inst-1",'
        f'tenant_id="{storage.tenant_id}",timeline_id="{storage.timeline_id}"'
    )
    assert compute.metric(f"pg_cctl_attached{{{labels}}}") == 1
    assert compute.metric("pg_cctl_configure_statement_timeout_errors_total") == 0
    # The catalog: the Databricks roles and their settings; what stock Postgres lacks skipped.
    assert (
        compute.sql(
            "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles"
            " WHERE rolname LIKE 'databricks%'"
        )
        == "databricks_control_plane,databricks_gateway,databricks_monitor,databricks_superuser"
    )
    assert (
        compute.sql("SELECT rolreplication FROM pg_roles WHERE rolname = 'databricks_superuser'")
        is False
    )
    assert "HandleDatabricksAuthExtension skipped" in compute.log()
    assert compute.sql(
        "SELECT has_table_privilege('databricks_monitor', 'public.health_check', 'INSERT')"
    )
    # The migrations, in lakebase mode, name databricks_superuser.
    wait_until("the migrations", lambda: _migrated(compute) == LAST_MIGRATION)
    assert compute.sql("SELECT pg_has_role('databricks_superuser', 'pg_monitor', 'member')")

    # An unchanged spec re-applied: nothing to run.
    request = {"spec": spec, "compute_ctl_config": {"jwks": {"keys": []}}}
    answer = http("POST", f"{compute.url}/configure", request)
    assert answer.status == 200, compute.log()
    assert "catalog: 0 statements executed of 0 planned" in compute.log()
    assert http("POST", f"{compute.url}/terminate").status == 200
    assert compute.wait_exit() == 0


def test_terminate_an_empty_lakebase_compute(compute: Compute) -> None:
    compute.start("-i", "ep-1/0", *LAKEBASE)
    assert compute.status()["status"] == "empty"
    asked = time.monotonic()
    answer = http("POST", f"{compute.url}/terminate")
    assert (answer.status, answer.body) == (200, b"")
    assert compute.status()["status"] == "empty"  # nothing to stop: the process just ends
    assert compute.wait_exit() == 0
    assert time.monotonic() - asked >= 4.5
    assert "exiting process after terminating empty compute" in compute.log()


@pytest.fixture
def slow_storage() -> Iterator[Storage]:
    root = shared_tempdir("e2e-slow-storage-")
    running = start_storage(root, "--basebackup-delay", "120")
    try:
        yield running
    finally:
        stop_process(running.process)
        shutil.rmtree(root, ignore_errors=True)


def test_pg_init_timeout_ends_a_lakebase_start(compute: Compute, slow_storage: Storage) -> None:
    spec = {
        "format_version": 1.0,
        "suspend_timeout_seconds": -1,
        "cluster": {"roles": [], "databases": [], "settings": compute.settings()},
        "skip_pg_catalog_updates": True,
        "tenant_id": slow_storage.tenant_id,
        "timeline_id": slow_storage.timeline_id,
        "safekeeper_connstrings": slow_storage.safekeepers,
        "pageserver_connstring": slow_storage.libpq_url,
    }
    path = compute.write("spec.json", spec)
    compute.start("-S", str(path), "-i", "ep-1/0", "--pg-init-timeout", "1", *LAKEBASE)
    assert compute.wait_exit(30) == 1
    assert "compute did not enter Running state in 1 seconds, exiting" in compute.log()


def test_failpoints_in_a_testing_build(
    compute: Compute, make_spec: SpecFactory, storage: Storage
) -> None:
    """FAILPOINTS fails a migration, as upstream's test expects: counted in
    compute_ctl_db_migration_failed_total, the counter left at the one before, and the next
    start runs it."""
    path = compute.write("spec.json", make_spec(skip_pg_catalog_updates=False))
    testing = {"COMPUTE_CTL_TESTING": "1", "FAILPOINTS": "compute-migration=return(3)"}
    compute.start("-S", str(path), env=testing)
    compute.wait_status("running")
    failed = 'compute_ctl_db_migration_failed_total{migration_id="3"}'
    wait_until("the failed migration", lambda: compute.metric(failed) == 1)
    samples = [
        line
        for line in http("GET", f"{compute.url}/metrics").body.decode().splitlines()
        if line.startswith("compute_ctl_db_migration_failed_total")
    ]
    assert len(samples) == 1  # as upstream's test: one failure, counted once
    assert _migrated(compute) == 2
    # /failpoints configures them at run time in a testing build.
    url = f"{compute.internal_url}/failpoints"
    answer = http("POST", url, [{"name": "compute-prewarm", "actions": "return"}])
    assert (answer.status, answer.body) == (200, b"")
    answer = http("POST", url, [{"name": "compute-prewarm", "actions": "frobnicate"}])
    assert answer.status == 400
    assert answer.json()["error"].startswith("failed to configure failpoints: ")
    assert http("POST", f"{compute.url}/terminate").status == 200
    assert compute.wait_exit() == 0

    compute.start("-S", str(path))
    compute.wait_status("running")
    wait_until("the migrations", lambda: _migrated(compute) == LAST_MIGRATION)
    assert compute.metric(failed) is None
    assert "Running migration id=3" in compute.log()


def test_prewarm_and_promotion_failpoints(
    compute: Compute,
    make_spec: SpecFactory,
    signing_key: SigningKey,
    endpoint_storage: EndpointStorage,
    storage: Storage,
) -> None:
    """Upstream's test_replica_promote_fails and test_replica_promote_prewarm_fails: the
    prewarm fails at its failpoint, the promotion at its own, and the replica stays one."""
    lfc = {
        "endpoint_id": "ep-fp",
        "endpoint_storage_addr": endpoint_storage.addr,
        "endpoint_storage_token": endpoint_storage.token,
    }
    config = {
        "spec": make_spec(mode="Replica", **lfc),
        "compute_ctl_config": ctl_config(signing_key),
    }
    path = compute.write("config.json", config)
    compute.token = signing_key.compute_token("compute-fp")
    testing = {
        "COMPUTE_CTL_TESTING": "1",
        "FAILPOINTS": "compute-prewarm=return(0);compute-promotion=return(0)",
    }
    compute.start("-c", str(path), "-i", "compute-fp", env=testing)
    compute.wait_status("running")
    assert compute.call("POST", "/lfc/prewarm").status == 202
    state = compute.wait_lfc("/lfc/prewarm", "failed", "completed", "skipped")
    assert state == {"status": "failed", "error": "compute-prewarm failpoint"}

    replayed = compute.sql("SELECT pg_catalog.pg_last_wal_replay_lsn()::text")
    body = {"spec": make_spec(**lfc), "wal_flush_lsn": replayed}
    answer = compute.call("POST", "/promote", body)
    assert (answer.status, answer.json()) == (
        500,  # upstream's status for a failed promotion
        {"status": "failed", "error": "compute-promotion failpoint"},
    )
    assert compute.sql("SELECT pg_catalog.pg_is_in_recovery()") is True
    assert compute.call("POST", "/terminate?mode=immediate").status == 200
    assert compute.wait_exit() == 0
