"""Lakebase mode below the catalog: postgresql.conf's port and Databricks block as start-up
asks for them, `databricks_settings` in PGDATA, Postgres' environment, the command line and
the two `pg_cctl_*` metrics."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import pytest

from compute_ctl.catalog.phases import Phase
from compute_ctl.catalog.plan import PlanOptions, build_plan
from compute_ctl.cli import UsageError, parse_params
from compute_ctl.compute.prepare import PrepareOptions, finish_pgdata, write_postgresql_conf
from compute_ctl.metrics import PromMetrics
from compute_ctl.postgres.conf import PG_HBA_MD5_LINE
from compute_ctl.postgres.process import databricks_env
from compute_ctl.spec.models import ComputeSpec
from compute_ctl.spec.resolve import ParsedSpec, resolve
from tests.support.specs import TENANT, TIMELINE, storage_spec
from tests.unit.test_catalog_plan import empty_snapshot

CONNSTR = "postgresql://cloud_admin@localhost:55433/postgres"
BASE = ["-D", "/tmp/pgdata", "-C", CONNSTR, "-S", "spec.json"]


def databricks(tls_dir: Path) -> dict[str, Any]:
    return {
        "pg_compute_tls_settings": {
            "cert_file": str(tls_dir / "tls.crt"),
            "key_file": str(tls_dir / "tls.key"),
            "ca_file": str(tls_dir / "ca.crt"),
        },
        "databricks_pg_hba": "/databricks/pg_hba.conf",
        "databricks_pg_ident": "/databricks/pg_ident.conf",
        "databricks_workspace_host": "dbc-1.cloud.databricks.com",
    }


def pspec_of(**fields: Any) -> ParsedSpec:
    return resolve(ComputeSpec.model_validate(storage_spec(**fields)))


def options(pgdata: Path, **fields: Any) -> PrepareOptions:
    return PrepareOptions(
        pgdata=pgdata,
        postgres=Path("/usr/bin/postgres"),
        privileged_role_name="databricks_superuser",
        internal_http_port=3081,
        tls=None,
        neon_available=False,
        **fields,
    )


def test_start_writes_the_port_and_the_databricks_block(tmp_path: Path) -> None:
    pspec = pspec_of(databricks_settings=databricks(Path("/tls")))
    write_postgresql_conf(pspec, options(tmp_path, lakebase=True, lakebase_port=55433))
    text = (tmp_path / "postgresql.conf").read_text()
    tail = text[text.index("port = 55433\n") :]
    assert tail == (
        "port = 55433\n"
        "# Databricks settings start\n"
        "ssl_ca_file = '/tls/ca.crt'\n"
        "databricks.workspace_url = 'dbc-1.cloud.databricks.com'\n"
        "databricks.enable_databricks_identity_login = true\n"
        "databricks.enable_sql_restrictions = true\n"
        "\n"
        "# Databricks settings end\n"
        "include_if_exists = 'compute_ctl_temp_override.conf'\n"
    )
    # Outside lakebase mode neither is written, whatever the spec and the connstr say.
    write_postgresql_conf(pspec, options(tmp_path, lakebase_port=55433))
    text = (tmp_path / "postgresql.conf").read_text()
    assert "port = " not in text
    assert "Databricks" not in text


def test_databricks_settings_in_pgdata(tmp_path: Path) -> None:
    """The TLS files copied (the key 0600, a file already there kept), and the include lines
    before the md5 line, with upstream's extra newline."""
    tls_dir, pgdata = tmp_path / "tls", tmp_path / "pgdata"
    tls_dir.mkdir()
    pgdata.mkdir()
    (tls_dir / "tls.crt").write_text("CERT")
    (tls_dir / "tls.key").write_text("KEY")
    (tls_dir / "tls.key").chmod(0o644)
    (pgdata / "pg_hba.conf").write_text("local all all trust\n")
    (pgdata / "pg_ident.conf").write_text("")
    (pgdata / "pg_dynshmem").mkdir()
    pspec = pspec_of(databricks_settings=databricks(tls_dir))
    finish_pgdata(pspec, pgdata)
    assert (pgdata / "pg_hba.conf").read_text() == (
        "local all all trust\n\ninclude_if_exists /databricks/pg_hba.conf\n\n" + PG_HBA_MD5_LINE
    )
    assert (pgdata / "pg_ident.conf").read_text() == (
        "include_if_exists /databricks/pg_ident.conf\n"
    )
    assert (pgdata / "tls.crt").read_text() == "CERT"
    assert (pgdata / "tls.key").read_text() == "KEY"
    assert stat.S_IMODE((pgdata / "tls.key").stat().st_mode) == 0o600

    (pgdata / "pg_dynshmem").unlink()
    (pgdata / "pg_dynshmem").mkdir()
    (pgdata / "tls.crt").write_text("KEPT")
    finish_pgdata(pspec, pgdata)
    assert (pgdata / "tls.crt").read_text() == "KEPT"
    # The include line carries its own newline, so it is never found and is appended again.
    assert (pgdata / "pg_hba.conf").read_text().count("include_if_exists") == 2


def test_missing_tls_file_names_the_field(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "pg_dynshmem").mkdir()
    pspec = pspec_of(databricks_settings=databricks(tmp_path / "absent"))
    with pytest.raises(Exception, match=r"databricks_settings\.pg_compute_tls_settings: cannot"):
        finish_pgdata(pspec, pgdata)


def test_postgres_environment() -> None:
    assert databricks_env(instance_id="inst-1", compute_id="ep-1/0", workspace_host="h") == {
        "DATABRICKS_ENDPOINT_ID": "inst-1",
        "DATABRICKS_WORKSPACE_HOST": "h",
    }
    assert databricks_env(instance_id=None, compute_id="ep-1/0/x", workspace_host=None) == {
        "DATABRICKS_ENDPOINT_ID": "ep-1",
        "DATABRICKS_WORKSPACE_HOST": "",
    }
    with pytest.raises(ValueError, match="INSTANCE_ID or --compute-id"):
        databricks_env(instance_id=None, compute_id=None, workspace_host=None)


def test_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    no_port = ["-D", "/d", "-C", "postgresql://cloud_admin@localhost/postgres", "-S", "s"]
    assert parse_params(no_port).instance_id is None
    with pytest.raises(UsageError, match="--connstr: lakebase mode needs a port"):
        parse_params([*no_port, "--lakebase-mode", "true"])
    monkeypatch.setenv("INSTANCE_ID", "inst-7")
    assert parse_params(BASE).instance_id == "inst-7"
    assert not parse_params(BASE).failpoints.enabled
    monkeypatch.setenv("COMPUTE_CTL_TESTING", "1")
    monkeypatch.setenv("FAILPOINTS", "compute-migration")
    with pytest.raises(UsageError, match="missing action on the 1th failpoint"):
        parse_params(BASE)
    monkeypatch.setenv("FAILPOINTS", "compute-migration=return(2)")
    assert parse_params(BASE).failpoints.enabled


def test_metrics() -> None:
    prom = PromMetrics()
    text = prom.render().decode()
    # (how an integer-valued sample is printed, 0 or 0.0, is not what this test is about)
    assert re.search(
        "# HELP pg_cctl_configure_statement_timeout_errors_total Number of compute configuration"
        " errors due to Postgres statement timeouts.\n"
        "# TYPE pg_cctl_configure_statement_timeout_errors_total counter\n"
        r"pg_cctl_configure_statement_timeout_errors_total 0(\.0)?\n",
        text,
    )
    assert "pg_cctl_attached" not in text  # no sample until a lakebase spec is in force
    prom.configure_statement_timeout_errors.inc()
    prom.set_attached("ep-1/0", "inst-1", TENANT, "0" * 32)
    prom.set_attached("ep-1/0", "inst-1", TENANT, TIMELINE)
    text = prom.render().decode()
    assert re.search(r"pg_cctl_configure_statement_timeout_errors_total 1(\.0)?\n", text)
    assert "# HELP pg_cctl_attached Compute node attached status (1 if attached)\n" in text
    samples = [line for line in text.splitlines() if line.startswith("pg_cctl_attached{")]
    assert [line.rsplit(" ", 1)[0] for line in samples] == [
        f'pg_cctl_attached{{pg_compute_id="ep-1/0",pg_instance_id="inst-1",'
        f'tenant_id="{TENANT}",timeline_id="{TIMELINE}"}}'
    ]
    assert float(samples[0].rsplit(" ", 1)[1]) == 1


def test_plan_on_stock_postgres_skips_what_it_lacks() -> None:
    """Without databricks_auth and the neon extension's objects, their statements are left
    out with a note each; everything else of the lakebase phases is planned, and none of it
    outside lakebase mode."""
    spec = ComputeSpec.model_validate(storage_spec())
    plan = build_plan(spec, empty_snapshot(), PlanOptions(lakebase=True))
    lakebase_phases = [s.phase for s in plan.statements if "Databricks" in s.phase.value]
    assert lakebase_phases == [
        *[Phase.CREATE_DATABRICKS_ROLES] * 3,
        *[Phase.ADD_DATABRICKS_GRANTS] * 3,
        *[Phase.CREATE_DATABRICKS_MISC] * 2,
    ]
    assert [n for n in plan.notes if "databricks" in n] == [
        "the databricks_auth extension is not available: HandleDatabricksAuthExtension skipped",
        "table neon.neon_perf_counters does not exist: its grant to databricks_monitor skipped",
        "function neon.get_perf_counters() does not exist: its grant to databricks_monitor skipped",
    ]
    neon = build_plan(spec, empty_snapshot(), PlanOptions())
    assert not [s for s in neon.statements if "Databricks" in s.phase.value]
    assert not [n for n in neon.notes if "databricks" in n]
