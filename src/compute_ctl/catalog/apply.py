"""Entry points: apply a spec to a running Postgres, or just say what applying it would do.

`apply_spec` is upstream's `apply_spec_sql`: read the catalog once, plan, execute. The spec is
validated before the first connection (by resolution, `ParsedSpec.catalog`, or here for a bare
spec), so a bad password or option changes nothing. `plan_spec` stops after planning, on a
read-only session. Neither runs migrations (see `migrations`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import psycopg

from compute_ctl.catalog.connect import connect_maintenance
from compute_ctl.catalog.execute import Executor
from compute_ctl.catalog.inspect import Snapshot, inspect
from compute_ctl.catalog.phases import ALL_PHASES, Phase, Plan
from compute_ctl.catalog.plan import DEFAULT_PRIVILEGED_ROLE, PlanOptions, build_plan
from compute_ctl.errors import SpecError
from compute_ctl.postgres.connect import ADMIN_ROLE
from compute_ctl.spec.catalog_checks import CheckedCatalog, check_catalog, check_name
from compute_ctl.spec.models import ComputeSpec, find_option

log = logging.getLogger(__name__)

APPLY_APPLICATION_NAME = "compute_ctl:apply_config"


@dataclass
class ApplyReport:
    """What an apply did: `executed` counts statements run; an unchanged spec gives 0."""

    planned: int = 0
    executed: int = 0
    by_phase: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    skipped: bool = False


def max_service_connections(spec: ComputeSpec, *, starting: bool) -> int:
    """How many connections the per-database phase may use.

    At start-up no user is connected yet, so up to a third of `max_connections` (from
    `cluster.settings`, else a `max_connections = N` line of `cluster.postgresql_conf`); on a
    re-configure, `reconfigure_concurrency`."""
    if not starting:
        return max(1, spec.reconfigure_concurrency)
    value = find_option(spec.cluster.settings, "max_connections")
    if value is None and spec.cluster.postgresql_conf is not None:
        for line in spec.cluster.postgresql_conf.split("\n"):
            key, sep, rest = line.partition("=")
            if sep and key.strip() == "max_connections":
                value = rest.strip()
                break
    if value is None or not re.fullmatch(r"[0-9]+", value):
        return 10
    limit = int(value)
    if limit < 10:
        return max(1, limit)
    if limit < 30:
        return 10
    if limit < 300:
        return limit // 3
    return 100


def _deleting_roles(checked: CheckedCatalog) -> list[str]:
    return [op.name for op in checked.deltas if op.action == "delete_role"]


def _timeline(spec: ComputeSpec, timeline_id: str | None) -> str | None:
    if not spec.drop_subscriptions_before_start:
        return None
    timeline = timeline_id or (str(spec.timeline_id) if spec.timeline_id is not None else None)
    if timeline is None:
        raise SpecError("timeline_id", "drop_subscriptions_before_start needs the timeline id")
    return timeline


async def _snapshot(
    conn: psycopg.AsyncConnection[Any],
    checked: CheckedCatalog,
    privileged_role_name: str,
    timeline: str | None,
    lakebase: bool,
) -> Snapshot:
    return await inspect(
        conn,
        privileged_role=privileged_role_name,
        deleting_roles=_deleting_roles(checked),
        timeline_id=timeline,
        lakebase=lakebase,
    )


async def _plan(
    conn: psycopg.AsyncConnection[Any],
    spec: ComputeSpec,
    checked: CheckedCatalog,
    *,
    privileged_role_name: str,
    phase_set: Collection[Phase],
    timeline: str | None,
    lakebase: bool,
) -> Plan:
    """Read the catalog once and diff it against the checked spec."""
    snapshot = await _snapshot(conn, checked, privileged_role_name, timeline, lakebase)
    options = PlanOptions(
        privileged_role=privileged_role_name,
        admin_role=ADMIN_ROLE,
        phases=frozenset(phase_set),
        lakebase=lakebase,
        timeline_id=timeline,
    )
    return build_plan(spec, snapshot, options, checked=checked)


async def plan_spec(
    connstr: str,
    spec: ComputeSpec,
    *,
    privileged_role_name: str = DEFAULT_PRIVILEGED_ROLE,
    phase_set: Collection[Phase] = ALL_PHASES,
    timeline_id: str | None = None,
    lakebase: bool = False,
) -> Plan:
    """The plan `apply_spec` would execute now. Read-only: the session refuses writes."""
    check_name("role", privileged_role_name, "privileged_role_name")
    checked = check_catalog(spec)
    timeline = _timeline(spec, timeline_id)
    conn = await connect_maintenance(
        connstr, application_name=APPLY_APPLICATION_NAME, repair_admin=False
    )
    async with conn:
        await conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        return await _plan(
            conn,
            spec,
            checked,
            privileged_role_name=privileged_role_name,
            phase_set=phase_set,
            timeline=timeline,
            lakebase=lakebase,
        )


async def apply_spec(
    connstr: str,
    spec: ComputeSpec,
    *,
    privileged_role_name: str = DEFAULT_PRIVILEGED_ROLE,
    concurrency: int = 1,
    phase_set: Collection[Phase] = ALL_PHASES,
    timeline_id: str | None = None,
    lakebase: bool = False,
    checked: CheckedCatalog | None = None,
    statement_timeout: str = "0",
    on_statement_timeout: Callable[[], None] | None = None,
) -> ApplyReport:
    """Bring the catalog in line with `spec` (roles, databases, delta operations, grants,
    extensions). Raises SpecError before touching anything when the spec cannot be applied,
    CatalogError (phase, object, Postgres' message) when a statement fails.

    `checked` is the spec's catalog part as resolution checked it (`ParsedSpec.catalog`);
    without it the spec is checked here. `statement_timeout` bounds every statement of the
    apply's sessions (lakebase's first apply: `2min`); `on_statement_timeout` is told of each
    statement cancelled (SQLSTATE 57014), for `pg_cctl_configure_statement_timeout_errors_total`."""
    started = time.monotonic()
    if spec.skip_pg_catalog_updates:
        log.info("skip_pg_catalog_updates is set: roles, databases and extensions left as they are")
        return ApplyReport(skipped=True)
    check_name("role", privileged_role_name, "privileged_role_name")
    if checked is None:
        checked = check_catalog(spec)
    timeline = _timeline(spec, timeline_id)
    log.info("Applying config with max %d concurrency", concurrency)
    conn = await connect_maintenance(
        connstr, application_name=APPLY_APPLICATION_NAME, statement_timeout=statement_timeout
    )
    async with conn:
        plan = await _plan(
            conn,
            spec,
            checked,
            privileged_role_name=privileged_role_name,
            phase_set=phase_set,
            timeline=timeline,
            lakebase=lakebase,
        )
        for note in plan.notes:
            log.info("%s", note)

        async def connector(dbname: str | None) -> psycopg.AsyncConnection[Any]:
            return await connect_maintenance(
                connstr,
                application_name=APPLY_APPLICATION_NAME,
                dbname=dbname,
                repair_admin=False,
                statement_timeout=statement_timeout,
            )

        executor = Executor(conn, connector, concurrency, on_query_canceled=on_statement_timeout)
        result = await executor.run(plan)
    seconds = time.monotonic() - started
    log.info(
        "catalog applied: %d statements in %.0f ms%s",
        result.executed,
        seconds * 1000,
        " (nothing to change)" if not plan.statements else "",
    )
    return ApplyReport(
        planned=len(plan),
        executed=result.executed,
        by_phase=result.by_phase,
        notes=plan.notes,
        seconds=seconds,
    )


async def update_neon_extension(connstr: str) -> bool:
    """`ALTER EXTENSION neon UPDATE` if neon is installed (what still runs at start-up when
    catalog updates are skipped); False when it is not installed."""
    conn = await connect_maintenance(connstr, application_name=APPLY_APPLICATION_NAME)
    async with conn:
        cursor = await conn.execute(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'neon'"
        )
        if await cursor.fetchone() is None:
            log.info("ALTER EXTENSION neon UPDATE skipped: the neon extension is not installed")
            return False
        await conn.execute("ALTER EXTENSION neon UPDATE")
        return True
