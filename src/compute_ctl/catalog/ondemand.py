"""Catalog changes asked for one at a time over the internal HTTP API.

`POST /extensions` installs (or moves to another version) an extension in one database, and
`POST /grants` grants schema privileges to a role. Both first look at what is already there, so a
repeated request changes nothing, and both quote every name with `psycopg.sql`.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from compute_ctl.catalog.execute import error_text
from compute_ctl.errors import CatalogError
from compute_ctl.postgres.connect import connect
from compute_ctl.spec.privilege import Privilege


async def install_extension(connstr: str, database: str, extension: str, version: str) -> str:
    """Install `extension` at `version` in `database` (schema public), or update it to that
    version when another one is installed. Returns the version now installed."""
    obj = f'extension "{extension}" in database "{database}"'
    try:
        conn = await connect(
            connstr, application_name="compute_ctl:install_extension", dbname=database
        )
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
        raise CatalogError("InstallExtension", obj, error_text(exc)) from None
    return version


async def set_role_grants(
    connstr: str, database: str, schema: str, privileges: list[Privilege], role: str
) -> None:
    """Grant `privileges` on `schema` to `role`, skipping those already granted (so the request
    also succeeds on a read-only replica when there is nothing to do)."""
    obj = f'schema "{schema}" in database "{database}"'
    try:
        conn = await connect(
            connstr, application_name="compute_ctl:set_role_grants", dbname=database
        )
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
        raise CatalogError("SetRoleGrants", obj, error_text(exc)) from None
