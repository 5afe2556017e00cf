"""The lakebase phases against a real PostgreSQL: each statement as planned, its effect, and
nothing at all on an unchanged re-apply.

Stock PostgreSQL stands in for Databricks' build: `databricks_auth` is a small stand-in
extension in a private installation (a view `databricks_auth_metrics`), the neon extension's
`neon.neon_perf_counters` and `neon.get_perf_counters()` are created by hand, and
`databricks.reader_statement_timeout` is a placeholder setting of the server.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from compute_ctl.catalog import apply_spec, plan_spec
from compute_ctl.catalog.migrations import check_migration_effects, migrations, run_migrations
from compute_ctl.catalog.phases import Phase
from compute_ctl.errors import CatalogError
from compute_dev.pgbin import PgBinNotFoundError, find_pg_bin, server_user
from tests.integration.catalog.conftest import LogWindow, execute, rows, spec_of
from tests.support.pgserver import PgServer, start_server
from tests.support.remote_ext import private_install

pytestmark = pytest.mark.postgres

PRIVILEGED = "databricks_superuser"
LAKEBASE_PHASES = {
    Phase.CREATE_DATABRICKS_ROLES,
    Phase.ALTER_DATABRICKS_ROLES,
    Phase.HANDLE_DATABRICKS_AUTH_EXTENSION,
    Phase.ADD_DATABRICKS_GRANTS,
    Phase.CREATE_DATABRICKS_MISC,
}
CONTROL = (
    "comment = 'databricks_auth stand-in'\ndefault_version = '{version}'\nrelocatable = true\n"
)
SCRIPT = "CREATE VIEW databricks_auth_metrics AS SELECT {version}::float8 AS version;\n"
DDL = re.compile(r"\b(CREATE|ALTER|DROP|GRANT|REVOKE) [A-Z]|\bDO \$")


def _install_extension(extension_dir: Path, version: str) -> None:
    (extension_dir / "databricks_auth.control").write_text(CONTROL.format(version=version))
    (extension_dir / f"databricks_auth--{version}.sql").write_text(SCRIPT.format(version=version))


@pytest.fixture(scope="module")
def lakebase_pg() -> Iterator[tuple[PgServer, Path]]:
    try:
        find_pg_bin()
    except PgBinNotFoundError as exc:
        pytest.skip(str(exc))
    root = Path(tempfile.mkdtemp(prefix="compute-ctl-lakebase-"))
    root.chmod(0o755)  # the server user reads the installation
    install = private_install(root / "tree")
    # pg_ctl starts the `postgres` next to its resolved self: a copy, so it is the private one
    pg_ctl = install.bindir / "pg_ctl"
    real = pg_ctl.resolve()
    pg_ctl.unlink()
    shutil.copy2(real, pg_ctl)
    _install_extension(install.extension_dir, "1.0")
    server = start_server(
        pg_bin=str(install.bindir),
        settings={"log_statement": "all", "databricks.reader_statement_timeout": "45s"},
    )
    server_user().chown(root)
    try:
        yield server, install.extension_dir
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _plan_texts(pg: PgServer, spec: Any, phases: set[Phase]) -> list[tuple[str, str]]:
    plan = asyncio.run(
        plan_spec(pg.connstr(), spec, privileged_role_name=PRIVILEGED, lakebase=True)
    )
    return [(s.phase.value, s.text()) for s in plan.statements if s.phase in phases]


def _apply(pg: PgServer, spec: Any, **options: Any) -> Any:
    return asyncio.run(
        apply_spec(pg.connstr(), spec, privileged_role_name=PRIVILEGED, lakebase=True, **options)
    )


def _timeouts(pg: PgServer) -> dict[str, str]:
    found = rows(
        pg,
        "SELECT r.rolname, c FROM pg_roles r JOIN pg_db_role_setting s ON s.setrole = r.oid"
        " AND s.setdatabase = 0, unnest(s.setconfig) c WHERE c LIKE 'statement_timeout=%'",
    )
    return {name: value.split("=", 1)[1] for name, value in found}


def test_lakebase_phases_statement_by_statement(lakebase_pg: tuple[PgServer, Path]) -> None:
    pg, extension_dir = lakebase_pg
    execute(pg, "CREATE ROLE databricks_reader_1; CREATE ROLE databricks_reader_22")
    execute(pg, "ALTER ROLE databricks_reader_22 SET statement_timeout = '45s'")
    execute(pg, "CREATE ROLE databricks_reader_x")  # not a reader role: the name must end in digits
    execute(
        pg,
        "CREATE SCHEMA neon; CREATE VIEW neon.neon_perf_counters AS SELECT 1 AS x;"
        " CREATE FUNCTION neon.get_perf_counters() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    )
    spec = spec_of([{"name": "lb_user"}], [{"name": "lb_db", "owner": "lb_user"}])

    assert _plan_texts(pg, spec, LAKEBASE_PHASES | {Phase.CREATE_PRIVILEGED_ROLE}) == [
        (
            "CreatePrivilegedRole",
            'CREATE ROLE "databricks_superuser" CREATEDB CREATEROLE NOLOGIN BYPASSRLS'
            " IN ROLE pg_read_all_data, pg_write_all_data",
        ),
        (
            "CreateDatabricksRoles",
            'CREATE ROLE "databricks_monitor" IN ROLE pg_monitor LOGIN PASSWORD NULL',
        ),
        (
            "CreateDatabricksRoles",
            'CREATE ROLE "databricks_control_plane" SUPERUSER LOGIN PASSWORD NULL',
        ),
        ("CreateDatabricksRoles", 'CREATE ROLE "databricks_gateway" LOGIN PASSWORD NULL'),
        (
            "AlterDatabricksRoles",
            (Path(__file__).parents[3] / "src/compute_ctl/catalog/sql")
            .joinpath("alter_databricks_reader_roles_timeout.sql")
            .read_text()
            .strip(),
        ),
        (
            "HandleDatabricksAuthExtension",
            "SET LOCAL search_path TO public; CREATE EXTENSION databricks_auth",
        ),
        (
            "HandleDatabricksAuthExtension",
            "SET LOCAL search_path TO public;"
            " GRANT SELECT ON databricks_auth_metrics TO pg_monitor",
        ),
        ("AddDatabricksGrants", 'GRANT USAGE ON SCHEMA neon TO "databricks_monitor"'),
        (
            "AddDatabricksGrants",
            'GRANT SELECT, INSERT, UPDATE ON public.health_check TO "databricks_monitor"',
        ),
        (
            "AddDatabricksGrants",
            'GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text) TO "databricks_monitor"',
        ),
        ("AddDatabricksGrants", 'GRANT SELECT ON neon.neon_perf_counters TO "databricks_monitor"'),
        (
            "AddDatabricksGrants",
            'GRANT EXECUTE ON FUNCTION neon.get_perf_counters() TO "databricks_monitor"',
        ),
        (
            "CreateDatabricksMisc",
            """ALTER ROLE "databricks_monitor" SET statement_timeout = '60s'""",
        ),
        (
            "CreateDatabricksMisc",
            (Path(__file__).parents[3] / "src/compute_ctl/catalog/sql")
            .joinpath("create_databricks_misc.sql")
            .read_text()
            .strip(),
        ),
    ]

    report = _apply(pg, spec)
    assert report.executed == report.planned > 0
    # Upstream's phase order: the Databricks roles right after the privileged role, the
    # extension after neon's, the grants and misc objects after DropRoles.
    order = list(report.by_phase)
    assert order.index("CreateDatabricksRoles") == order.index("CreatePrivilegedRole") + 1
    assert order[-2:] == ["AddDatabricksGrants", "CreateDatabricksMisc"]

    assert rows(
        pg,
        "SELECT rolname, rolsuper, rolcanlogin, rolpassword IS NULL FROM pg_authid"
        " WHERE rolname LIKE 'databricks\\_%' AND rolname NOT LIKE 'databricks\\_reader%'"
        " ORDER BY 1",
    ) == [
        ("databricks_control_plane", True, True, True),
        ("databricks_gateway", False, True, True),
        ("databricks_monitor", False, True, True),
        ("databricks_superuser", False, False, True),
    ]
    assert rows(pg, "SELECT pg_has_role('databricks_monitor', 'pg_monitor', 'member')") == [(True,)]
    assert _timeouts(pg) == {
        "databricks_reader_1": "45s",
        "databricks_reader_22": "45s",
        "databricks_monitor": "60s",
    }
    assert rows(
        pg,
        "SELECT e.extversion, n.nspname FROM pg_extension e JOIN pg_namespace n"
        " ON n.oid = e.extnamespace WHERE extname = 'databricks_auth'",
    ) == [("1.0", "public")]
    checks = [
        "has_table_privilege('pg_monitor', 'public.databricks_auth_metrics', 'SELECT')",
        "has_schema_privilege('databricks_monitor', 'neon', 'USAGE')",
        "has_table_privilege('databricks_monitor', 'public.health_check', 'SELECT,INSERT,UPDATE')",
        "has_function_privilege('databricks_monitor', 'pg_ls_dir(text)', 'EXECUTE')",
        "has_table_privilege('databricks_monitor', 'neon.neon_perf_counters', 'SELECT')",
        "has_function_privilege('databricks_monitor', 'neon.get_perf_counters()', 'EXECUTE')",
    ]
    assert rows(pg, f"SELECT {', '.join(checks)}") == [(True,) * len(checks)]
    # The write probe works for databricks_monitor and names itself when it fails.
    monitor = pg.connstr(user="databricks_monitor")
    with psycopg.connect(monitor, autocommit=True) as conn:
        assert conn.execute("SELECT public.health_check_write_succeeds()").fetchone() == (1,)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1min",)
    execute(pg, "REVOKE INSERT ON public.health_check FROM databricks_monitor")
    with (
        psycopg.connect(monitor, autocommit=True) as conn,
        pytest.raises(psycopg.Error, match=r"\[DATABRICKS_SMGR\] health_check failed: \[42501\]"),
    ):
        conn.execute("SELECT public.health_check_write_succeeds()")
    execute(pg, "GRANT INSERT ON public.health_check TO databricks_monitor")

    # Unchanged: nothing planned, nothing sent.
    with LogWindow(pg) as window:
        again = _apply(pg, spec)
    assert (again.planned, again.executed) == (0, 0)
    assert [s for s in window.statements() if DDL.search(s)] == []

    # A new reader role and a new extension version: only what changed is planned.
    execute(pg, "CREATE ROLE databricks_reader_3")
    _install_extension(extension_dir, "1.1")
    try:
        assert _plan_texts(pg, spec, LAKEBASE_PHASES)[1:] == [
            ("HandleDatabricksAuthExtension", "DROP EXTENSION IF EXISTS databricks_auth"),
            (
                "HandleDatabricksAuthExtension",
                "SET LOCAL search_path TO public; CREATE EXTENSION databricks_auth",
            ),
            (
                "HandleDatabricksAuthExtension",
                "SET LOCAL search_path TO public;"
                " GRANT SELECT ON databricks_auth_metrics TO pg_monitor",
            ),
        ]
        _apply(pg, spec)
        assert _timeouts(pg)["databricks_reader_3"] == "45s"
        assert rows(pg, "SELECT version FROM public.databricks_auth_metrics") == [(1.1,)]
        assert _apply(pg, spec).planned == 0
    finally:
        (extension_dir / "databricks_auth.control").write_text(CONTROL.format(version="1.0"))


def test_lakebase_migrations_name_databricks_superuser(
    lakebase_pg: tuple[PgServer, Path],
) -> None:
    """Upstream rewrites neon_superuser into databricks_superuser in lakebase mode: with the
    default privileged role name, the migrations grant to databricks_superuser."""
    pg, _ = lakebase_pg
    _apply(pg, spec_of([]))
    report = asyncio.run(run_migrations(pg.connstr(), lakebase=True, statement_timeout="2min"))
    assert report.current_id == len(migrations())
    effects = asyncio.run(check_migration_effects(pg.connstr(), privileged_role_name=PRIVILEGED))
    assert set(effects.values()) == {None}
    assert rows(pg, "SELECT pg_has_role('databricks_superuser', 'pg_monitor', 'member')") == [
        (True,)
    ]


def test_statement_timeouts_are_reported(lakebase_pg: tuple[PgServer, Path]) -> None:
    """A statement cancelled by the apply session's statement_timeout (SQLSTATE 57014) is
    reported once, and the apply fails naming the phase."""
    pg, _ = lakebase_pg
    spec = spec_of([])
    _apply(pg, spec)
    execute(pg, "REVOKE USAGE ON SCHEMA neon FROM databricks_monitor")
    timeouts: list[None] = []
    execute(pg, "REVOKE SELECT ON neon.neon_perf_counters FROM databricks_monitor")
    with psycopg.connect(pg.connstr()) as blocker:
        # An uncommitted change of the view's ACL: our GRANT waits for it (the row is locked)
        blocker.execute("GRANT SELECT ON neon.neon_perf_counters TO pg_monitor")
        with pytest.raises(CatalogError) as failed:
            _apply(
                pg,
                spec,
                statement_timeout="200ms",
                on_statement_timeout=lambda: timeouts.append(None),
            )
    assert failed.value.phase == "AddDatabricksGrants"
    assert "canceling statement due to statement timeout" in str(failed.value)
    assert len(timeouts) == 1
    assert _apply(pg, spec).executed == 1  # the blocked grant, now that nothing blocks it
