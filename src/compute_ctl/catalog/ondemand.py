"""Catalog changes asked for one at a time over the internal HTTP API.

`POST /extensions` installs (or moves to another version) an extension in one database, and
`POST /grants` grants schema privileges to a role. Both first look at what is already there, so a
repeated request changes nothing, and both quote every name with `psycopg.sql`.

What Postgres refuses because of the request itself (a database, schema, role or extension
that does not exist, a version it has no script for) is raised as `CatalogRefusalError`, so the
route can answer 404 or 400 instead of 500; a database that is missing is told without the
connection details of libpq's message.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from compute_ctl.catalog.execute import error_text
from compute_ctl.errors import CatalogError, CatalogRefusalError
from compute_ctl.postgres.connect import DatabaseRefusal, connect, database_refusal
from compute_ctl.spec.privilege import Privilege

# SQLSTATEs of statements refused because of what they name: undefined_object (a role, a
# required extension), invalid_schema_name; and for values Postgres does not take:
# invalid_parameter_value (no such version, a bad extension name), reserved_name, name and
# encoding errors.
MISSING_STATES = frozenset({"42704", "3F000"})
REFUSED_STATES = frozenset({"22023", "42939", "42602", "42622", "42601", "22021", "22P05"})
# feature_not_supported: what CREATE EXTENSION says of an extension that is not installed.
EXTENSION_MISSING = "0A000"


async def _connect(
    connstr: str, application_name: str, database: str, phase: str, obj: str
) -> psycopg.AsyncConnection[Any]:
    try:
        return await connect(connstr, application_name=application_name, dbname=database)
    except psycopg.Error as exc:
        refusal = database_refusal(str(exc), database)
        if refusal is None:
            raise CatalogError(phase, obj, error_text(exc)) from None
        message = f'database "{database}" {refusal.value}'
        raise CatalogRefusalError(
            phase, obj, message, missing=refusal is DatabaseRefusal.MISSING
        ) from None


def _failure(exc: psycopg.Error, phase: str, obj: str, missing: frozenset[str]) -> CatalogError:
    """The error to raise for a failed statement: a refusal when its SQLSTATE says the request
    named something that is not there (`missing`) or that Postgres does not take."""
    text = error_text(exc)
    if exc.sqlstate in missing:
        return CatalogRefusalError(phase, obj, text, missing=True)
    if exc.sqlstate in REFUSED_STATES:
        return CatalogRefusalError(phase, obj, text, missing=False)
    return CatalogError(phase, obj, text)


async def install_extension(connstr: str, database: str, extension: str, version: str) -> str:
    """Install `extension` at `version` in `database` (schema public), or update it to that
    version when another one is installed. Returns the version now installed."""
    phase = "InstallExtension"
    obj = f'extension "{extension}" in database "{database}"'
    conn = await _connect(connstr, "compute_ctl:install_extension", database, phase, obj)
    try:
        async with conn:
            cursor = await conn.execute(
                "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = %s", (extension,)
            )
            row = await cursor.fetchone()
            if row is not None and row[0] == version:
                return version
            if row is not None:
                query = sql.SQL("ALTER EXTENSION {} UPDATE TO {}")
            else:
                query = sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA public VERSION {}")
            await conn.execute(query.format(sql.Identifier(extension), sql.Identifier(version)))
    except psycopg.Error as exc:
        raise _failure(exc, phase, obj, MISSING_STATES | {EXTENSION_MISSING}) from None
    return version


async def set_role_grants(
    connstr: str, database: str, schema: str, privileges: list[Privilege], role: str
) -> None:
    """Grant `privileges` on `schema` to `role`, skipping those already granted (so the request
    also succeeds on a read-only replica when there is nothing to do)."""
    phase = "SetRoleGrants"
    obj = f'schema "{schema}" in database "{database}"'
    conn = await _connect(connstr, "compute_ctl:set_role_grants", database, phase, obj)
    try:
        async with conn:
            cursor = await conn.execute(
                "SELECT acl.privilege_type FROM pg_catalog.pg_namespace AS n,"
                " LATERAL pg_catalog.aclexplode(n.nspacl) AS acl"
                " JOIN pg_catalog.pg_roles AS r ON r.oid = acl.grantee"
                " WHERE r.rolname = %s AND n.nspname = %s",
                (role, schema),
            )
            granted = {row[0] for row in await cursor.fetchall()}
            missing = [p for p in dict.fromkeys(privileges) if p.value not in granted]
            if not missing:
                return
            await conn.execute(
                sql.SQL("GRANT {} ON SCHEMA {} TO {}").format(
                    sql.SQL(", ").join(sql.SQL(p.value) for p in missing),
                    sql.Identifier(schema),
                    sql.Identifier(role),
                )
            )
    except psycopg.Error as exc:
        raise _failure(exc, phase, obj, MISSING_STATES) from None
