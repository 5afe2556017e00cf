"""Applying a spec to a Postgres that runs: the catalog at start-up and at every re-configure,
the migrations after the first apply, and the configuration rewrite of a re-configure.

Start-up (`compute/startup.py`), the configurator and promotion all apply specs; this is the one
place that knows how, so none of them needs the whole compute.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from compute_ctl import tls, tracing
from compute_ctl.compute.prepare import PrepareOptions, write_postgresql_conf
from compute_ctl.compute.tasks import BackgroundTasks
from compute_ctl.errors import chain_text
from compute_ctl.logs_export import rsyslog
from compute_ctl.postgres.conf import (
    SUBSCRIBERS_ENABLED_LINE,
    TEMP_OVERRIDE_FILE,
    TEMP_OVERRIDE_SETTINGS,
    line_in_file_path,
)
from compute_ctl.postgres.process import signal_reload

if TYPE_CHECKING:
    from compute_ctl.compute.extensions_stats import ExtensionStats
    from compute_ctl.metrics import PromMetrics
    from compute_ctl.params import Params
    from compute_ctl.sidecars import Sidecars
    from compute_ctl.spec.models import ComputeSpec, TlsConfig
    from compute_ctl.spec.resolve import ParsedSpec

log = logging.getLogger(__name__)

# Lakebase bounds every statement of the first apply (and of the migrations after it): one
# stuck that long usually means Postgres cannot reach its pageserver.
LAKEBASE_START_STATEMENT_TIMEOUT = "2min"


@dataclass
class SpecApplier:
    """What applying a spec needs: the command line, the metrics, the installed-extensions
    scanner, the sidecars, the operator's TLS files and where background work goes."""

    params: Params
    prom: PromMetrics
    ext_stats: ExtensionStats
    sidecars: Sidecars
    tls_files: TlsConfig | None
    tasks: BackgroundTasks
    neon_available: bool

    @property
    def pgdata(self) -> Path:
        return self.params.pgdata

    @property
    def prepare_options(self) -> PrepareOptions:
        return PrepareOptions(
            pgdata=self.pgdata,
            postgres=Path(self.params.pgbin),
            privileged_role_name=self.params.privileged_role_name,
            internal_http_port=self.params.internal_http_port,
            tls=self.tls_files,
            neon_available=self.neon_available,
            cgroup_prefix=self.params.cgroup_prefix,
            lakebase=self.params.lakebase_mode,
            lakebase_port=urlsplit(self.params.connstr).port,
        )

    def active_tls(self, spec: ComputeSpec) -> TlsConfig | None:
        """The TLS files Postgres, pgbouncer and local_proxy use (with `tls_experimental`)."""
        return tls.tls_active(spec, self.tls_files)

    async def reload(self) -> None:
        """Postgres re-reads its configuration files (asynchronously, as with pg_ctl reload)."""
        signal_reload(self.pgdata)

    async def configure_as_primary(self, pspec: ParsedSpec) -> None:
        """The first apply of a primary: catalog (with the temporary override settings),
        local_proxy, subscribers enabled, then migrations and the neon extension update in the
        background."""
        if pspec.spec.skip_pg_catalog_updates:
            log.info("skipping catalog updates (skip_pg_catalog_updates)")
        else:
            override = self.pgdata / TEMP_OVERRIDE_FILE
            override.write_text(TEMP_OVERRIDE_SETTINGS)
            await self.reload()
            try:
                await self.apply_catalog(pspec, starting=True)
                await self.sidecars.configure_local_proxy(pspec.spec, self.active_tls(pspec.spec))
            finally:
                override.write_text("")
            line_in_file_path(self.pgdata / "postgresql.conf", SUBSCRIBERS_ENABLED_LINE)
            await self.reload()
            self.tasks.spawn(self.run_migrations(pspec), "migrations", traced=True)
        if self.neon_available:
            self.tasks.spawn(self._update_neon_extension(), "neon-extension-update", traced=True)
        else:
            log.info("ALTER EXTENSION neon UPDATE skipped: the neon extension is not installed")

    async def apply_catalog(self, pspec: ParsedSpec, *, starting: bool) -> None:
        """Reconcile roles, databases and extensions with the spec."""
        self.ext_stats.update_interval(pspec.spec.suspend_timeout_seconds)
        from compute_ctl.catalog import apply_spec, max_service_connections  # noqa: PLC0415

        lakebase = self.params.lakebase_mode
        with tracing.span("apply_config") as current:
            report = await apply_spec(
                self.params.connstr,
                pspec.spec,
                privileged_role_name=self.params.privileged_role_name,
                concurrency=max_service_connections(pspec.spec, starting=starting),
                timeline_id=str(pspec.timeline_id),
                lakebase=lakebase,
                statement_timeout=LAKEBASE_START_STATEMENT_TIMEOUT
                if lakebase and starting
                else "0",
                # upstream counts these in lakebase mode only
                on_statement_timeout=self.prom.configure_statement_timeout_errors.inc
                if lakebase
                else None,
                checked=pspec.catalog,
            )
            current.set_attribute("statements", report.executed)
            current.set_attribute("statements_planned", report.planned)
        log.info(
            "catalog: %d statements executed of %d planned",
            report.executed,
            report.planned,
        )

    async def run_migrations(self, pspec: ParsedSpec) -> None:
        """Numbered migrations, in the background after the first apply (primary only);
        a failure is logged and counted, the compute keeps running."""
        from compute_ctl.catalog import run_migrations, should_run_migrations  # noqa: PLC0415

        if not should_run_migrations(pspec.spec, starting=True):
            return
        try:
            lakebase = self.params.lakebase_mode
            with tracing.span("handle_migrations"):
                await run_migrations(
                    self.params.connstr,
                    privileged_role_name=self.params.privileged_role_name,
                    on_failure=lambda k: self.prom.db_migration_failed.labels(str(k)).inc(),
                    failpoints=self.params.failpoints,
                    lakebase=lakebase,
                    statement_timeout=LAKEBASE_START_STATEMENT_TIMEOUT if lakebase else "0",
                )
        except Exception as exc:
            log.error("migrations failed: %s", chain_text(exc))

    async def _update_neon_extension(self) -> None:
        from compute_ctl.catalog import update_neon_extension  # noqa: PLC0415

        try:
            await update_neon_extension(self.params.connstr)
        except Exception as exc:
            log.error("ALTER EXTENSION neon UPDATE failed: %s", exc)

    async def reconfigure(self, pspec: ParsedSpec) -> None:
        """Apply a new spec to a running Postgres: config rewrite, reload, catalog."""
        tls_config = self.active_tls(pspec.spec)
        self.sidecars.configure_in_background(pspec.spec, tls_config, self.tasks.spawn)
        if tls_config is not None:  # a renewed key/certificate, picked up by the reload
            await tls.install_tls_files(self.pgdata, tls_config)
        await rsyslog.reconfigure(pspec.spec)
        write_postgresql_conf(pspec, self.prepare_options)
        await self.reload()
        if pspec.spec.skip_pg_catalog_updates:
            return
        override = self.pgdata / TEMP_OVERRIDE_FILE
        override.write_text(TEMP_OVERRIDE_SETTINGS)
        await self.reload()
        try:
            if pspec.spec.mode.is_primary:
                await self.apply_catalog(pspec, starting=False)
        finally:
            override.write_text("")
            await self.reload()
