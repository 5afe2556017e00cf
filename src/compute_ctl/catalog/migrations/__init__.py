"""Numbered, run-once SQL migrations of the system database, tracked like upstream's.

`neon_migration.migration_id` holds the number of the last migration applied; each start-up of a
primary (unless catalog updates are skipped) runs the ones after it, each in its own transaction
together with the counter update, so a failure leaves the counter at the last success and the
next start resumes there. A file starting with `-- SKIP` only advances the counter. Files are
numbered `NNNN-name.sql` from 0001 without gaps; the same number under `tests/` is SQL that
raises an error unless the migration's effect is in place.

Migration texts may name the privileged role as `{privileged_role}` (an identifier) or
`{privileged_role_literal}` (a string literal); both are filled in by `psycopg.sql`, so a file
must contain no other braces. In lakebase mode, upstream rewrites `neon_superuser` into
`databricks_superuser` in every migration it runs; the role name is the only place where our
texts can contain it, so the rewrite is done there (`migration_role`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from compute_ctl.catalog.execute import error_text
from compute_ctl.catalog.plan import DEFAULT_PRIVILEGED_ROLE
from compute_ctl.errors import CatalogError, ConfigError
from compute_ctl.failpoints import MIGRATION, Failpoints
from compute_ctl.postgres.connect import ADMIN_ROLE, connect
from compute_ctl.spec.models import ComputeSpec

log = logging.getLogger(__name__)

MIGRATIONS_APPLICATION_NAME = "compute_ctl:migrations"
PHASE = "Migrations"
SKIP_MARKER = "-- SKIP"
_FILE_NAME = re.compile(r"([0-9]{4})-([a-z0-9_]+)\.sql")
_PRIVILEGED_ROLE = re.compile(r"[a-z_]+")

_PREPARE = (
    "CREATE SCHEMA IF NOT EXISTS neon_migration",
    "CREATE TABLE IF NOT EXISTS neon_migration.migration_id ("
    "key pg_catalog.int4 NOT NULL PRIMARY KEY, id pg_catalog.int8 NOT NULL DEFAULT 0)",
    "INSERT INTO neon_migration.migration_id VALUES (0, 0) ON CONFLICT DO NOTHING",
)


@dataclass(frozen=True)
class Migration:
    id: int
    name: str
    text: str
    test: str

    @property
    def skipped(self) -> bool:
        return self.text.startswith(SKIP_MARKER)

    @property
    def untested(self) -> bool:
        return self.test.startswith(SKIP_MARKER)


@cache
def migrations() -> tuple[Migration, ...]:
    """All migrations in order. Their numbering is checked: it is what the counter means."""
    root = resources.files(__name__)
    found: list[Migration] = []
    for entry in root.iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match is None:
            continue
        test = root.joinpath("tests", entry.name)
        found.append(
            Migration(
                id=int(match.group(1)),
                name=match.group(2),
                text=entry.read_text(),
                test=test.read_text(),
            )
        )
    found.sort(key=lambda m: m.id)
    for expected, migration in enumerate(found, start=1):
        if migration.id != expected:
            raise ConfigError(f"migration files are not numbered 1..N: {migration.id} found")
    return tuple(found)


def render(text: str, privileged_role_name: str) -> sql.Composed:
    """A migration (or test) text with the privileged role filled in."""
    if not _PRIVILEGED_ROLE.fullmatch(privileged_role_name):
        raise ConfigError("the privileged role name can only contain lowercase letters and _")
    return sql.SQL(text).format(
        privileged_role=sql.Identifier(privileged_role_name),
        privileged_role_literal=sql.Literal(privileged_role_name),
    )


def migration_role(privileged_role_name: str, *, lakebase: bool) -> str:
    """The privileged role the migrations name (lakebase: `neon_superuser` rewritten)."""
    if lakebase:
        return privileged_role_name.replace("neon_superuser", "databricks_superuser")
    return privileged_role_name


def should_run_migrations(spec: ComputeSpec, *, starting: bool) -> bool:
    """Only at start-up, only on a primary, only when catalog updates are not skipped."""
    return starting and spec.mode.is_primary and not spec.skip_pg_catalog_updates


@dataclass
class MigrationReport:
    previous_id: int = 0
    current_id: int = 0
    ran: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)


async def _prepare(conn: psycopg.AsyncConnection[Any]) -> int:
    for statement in _PREPARE:
        await conn.execute(statement)
    await conn.execute(
        sql.SQL("ALTER SCHEMA neon_migration OWNER TO {}").format(sql.Identifier(ADMIN_ROLE))
    )
    await conn.execute("REVOKE ALL ON SCHEMA neon_migration FROM PUBLIC")
    cursor = await conn.execute("SELECT id FROM neon_migration.migration_id")
    row = await cursor.fetchone()
    assert row is not None
    current: int = row[0]
    return current


async def run_migrations(
    connstr: str,
    *,
    privileged_role_name: str = DEFAULT_PRIVILEGED_ROLE,
    fail_at: int | None = None,
    on_failure: Callable[[int], None] | None = None,
    failpoints: Failpoints | None = None,
    lakebase: bool = False,
    statement_timeout: str = "0",
) -> MigrationReport:
    """Apply the migrations after the recorded one. `fail_at` fails that migration just
    before its counter update, and so does upstream's `compute-migration` failpoint
    (`return(N)` fails migration N) when `failpoints` are given; `on_failure` is told the id
    of a failed migration (for the `compute_ctl_db_migration_failed_total` metric). Raises
    CatalogError naming the migration on failure."""
    log.info("handle migrations")
    report = MigrationReport()
    privileged_role_name = migration_role(privileged_role_name, lakebase=lakebase)
    conn = await connect(
        connstr, application_name=MIGRATIONS_APPLICATION_NAME, statement_timeout=statement_timeout
    )
    async with conn:
        try:
            current = await _prepare(conn)
        except psycopg.Error as exc:
            raise CatalogError(PHASE, "neon_migration", error_text(exc)) from None
        report.previous_id = report.current_id = current
        for migration in migrations()[current:]:
            try:
                await _run_one(conn, migration, privileged_role_name, fail_at, failpoints)
            except (psycopg.Error, CatalogError) as exc:
                message = exc.message if isinstance(exc, CatalogError) else error_text(exc)
                log.error("Failed to run migration id=%d: %s", migration.id, message)
                if on_failure is not None:
                    on_failure(migration.id)
                raise CatalogError(PHASE, f"migration id={migration.id}", message) from None
            (report.skipped if migration.skipped else report.ran).append(migration.id)
            report.current_id = migration.id
            log.info("Finished migration id=%d", migration.id)
    return report


async def _run_one(
    conn: psycopg.AsyncConnection[Any],
    migration: Migration,
    privileged_role_name: str,
    fail_at: int | None,
    failpoints: Failpoints | None,
) -> None:
    async with conn.transaction():
        if migration.skipped:
            log.info("Skipping migration id=%d", migration.id)
        else:
            text = render(migration.text, privileged_role_name)
            log.info("Running migration id=%d:\n%s\n", migration.id, text.as_string(conn))
            await conn.execute(text)
        if fail_at == migration.id or await _failpoint_hit(failpoints, migration.id):
            raise CatalogError(
                PHASE,
                f"migration id={migration.id}",
                f"migration {migration.id} was configured to fail because of a failpoint",
            )
        await conn.execute("UPDATE neon_migration.migration_id SET id = %s", (migration.id,))


async def _failpoint_hit(failpoints: Failpoints | None, migration_id: int) -> bool:
    """Upstream's `compute-migration` failpoint: its `return` argument is the id to fail."""
    if failpoints is None:
        return False
    value = await failpoints.evaluate(MIGRATION)
    return value is not None and value.strip() == str(migration_id)


async def check_migration_effects(
    connstr: str, *, privileged_role_name: str = DEFAULT_PRIVILEGED_ROLE
) -> dict[int, str | None]:
    """Run the test SQL of every applied, tested migration: id → None (ok) or the error."""
    results: dict[int, str | None] = {}
    conn = await connect(connstr, application_name=MIGRATIONS_APPLICATION_NAME)
    async with conn:
        cursor = await conn.execute("SELECT id FROM neon_migration.migration_id")
        row = await cursor.fetchone()
        applied = row[0] if row is not None else 0
        for migration in migrations()[:applied]:
            if migration.untested:
                continue
            try:
                await conn.execute(render(migration.test, privileged_role_name))
                results[migration.id] = None
            except psycopg.Error as exc:
                results[migration.id] = error_text(exc)
    return results
