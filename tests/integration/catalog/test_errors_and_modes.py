"""Failures name the phase, the object and Postgres' message; the rest of the phase still runs;
skip_pg_catalog_updates changes nothing; a legacy zenith_admin cluster is repaired."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from compute_ctl.catalog import apply_spec, max_service_connections, update_neon_extension
from compute_ctl.errors import CatalogError, SpecError
from tests.integration.catalog.conftest import apply, databases, execute, role_names, spec_of
from tests.support.pgserver import PgServer, running_server

pytestmark = pytest.mark.postgres


def test_a_failed_statement_names_phase_object_and_message(pg: PgServer) -> None:
    dbs = [
        {"name": "err_orphan", "owner": "err_nobody"},
        {"name": "err_fine", "owner": "cloud_admin"},
    ]
    with pytest.raises(CatalogError) as caught:
        apply(pg, spec_of([], dbs), concurrency=2)
    error = caught.value
    assert error.phase == "CreateAndAlterDatabases"
    assert error.obj == 'database "err_orphan"'
    assert 'role "err_nobody" does not exist' in error.message
    assert str(error).startswith('CreateAndAlterDatabases: database "err_orphan": ')
    # the other database of the phase was still created; later phases did not run
    assert databases(pg, ["err_orphan", "err_fine"]) == {"err_fine": "cloud_admin"}
    apply(pg, spec_of(delta_operations=[{"action": "delete_db", "name": "err_fine"}]))


def test_errors_of_a_per_database_phase_name_the_database(pg: PgServer) -> None:
    apply(pg, spec_of([{"name": "perdb_owner"}], [{"name": "perdb", "owner": "perdb_owner"}]))
    # a role that owns objects in a database the phase cannot enter
    execute(pg, "CREATE ROLE perdb_victim")
    execute(pg, "CREATE TABLE public.t (id int)", dbname="perdb")
    execute(pg, "ALTER TABLE public.t OWNER TO perdb_victim", dbname="perdb")
    execute(pg, "ALTER DATABASE perdb ALLOW_CONNECTIONS false")
    deltas = [{"action": "delete_role", "name": "perdb_victim"}]
    with pytest.raises(CatalogError) as caught:
        apply(pg, spec_of([{"name": "perdb_owner"}], [], delta_operations=deltas))
    assert caught.value.phase == "DropRoles"
    assert caught.value.obj == 'role "perdb_victim"'
    assert "cannot be dropped because some objects depend on it" in caught.value.message
    assert "perdb" in caught.value.message  # Postgres' detail says where
    execute(pg, "ALTER DATABASE perdb ALLOW_CONNECTIONS true")
    cleanup = [
        {"action": "delete_role", "name": "perdb_victim"},
        {"action": "delete_db", "name": "perdb"},
        {"action": "delete_role", "name": "perdb_owner"},
    ]
    apply(pg, spec_of(delta_operations=cleanup))
    assert role_names(pg, ["perdb_victim", "perdb_owner"]) == set()


def test_invalid_options_are_refused_before_anything_runs(pg: PgServer) -> None:
    roles: list[dict[str, Any]] = [
        {"name": "opt_ok"},
        {"name": "opt_bad", "options": [{"name": "SUPERUSER; DROP", "vartype": "string"}]},
    ]
    with pytest.raises(SpecError) as caught:
        apply(pg, spec_of(roles))
    assert caught.value.field == "cluster.roles[1].options[0]"
    assert "opt_bad" in str(caught.value)
    with pytest.raises(SpecError, match="at most 63"):
        apply(pg, spec_of([{"name": "y" * 64}]))
    assert role_names(pg, ["opt_ok", "opt_bad"]) == set()


def test_skip_pg_catalog_updates_changes_nothing(pg: PgServer) -> None:
    spec = spec_of([{"name": "skipped_role"}], skip_pg_catalog_updates=True)
    report = apply(pg, spec)
    assert report.skipped
    assert report.executed == 0
    assert role_names(pg, ["skipped_role"]) == set()


def test_neon_extension_is_skipped_where_unavailable(pg: PgServer) -> None:
    report = apply(pg, spec_of())
    assert "the neon extension is not available: HandleNeonExtension skipped" in report.notes
    assert asyncio.run(update_neon_extension(pg.connstr())) is False


def test_concurrency_follows_upstream() -> None:
    def conc(settings: str | None = None, conf: str | None = None, starting: bool = True) -> int:
        spec = spec_of(
            settings=[{"name": "max_connections", "value": settings, "vartype": "integer"}]
            if settings
            else None,
            reconfigure_concurrency=7,
        )
        if conf is not None:
            spec.cluster.postgresql_conf = conf
        return max_service_connections(spec, starting=starting)

    assert [conc(n) for n in ("5", "10", "29", "30", "299", "300", "1000")] == [
        5,
        10,
        10,
        10,
        99,
        100,
        100,
    ]
    assert conc() == 10
    assert conc(conf="shared_buffers = 1MB\nmax_connections = 90\n") == 30
    assert conc("nonsense") == 10
    assert conc("100", starting=False) == 7


def test_a_zenith_admin_cluster_gets_cloud_admin() -> None:
    with running_server(superuser="zenith_admin") as legacy:
        connstr = legacy.connstr(user="cloud_admin")
        report = asyncio.run(apply_spec(connstr, spec_of([{"name": "legacy_role"}])))
        assert report.executed > 0
        assert role_names(legacy, ["cloud_admin", "legacy_role"]) == {"cloud_admin", "legacy_role"}
