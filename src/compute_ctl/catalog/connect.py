"""The "maintenance client" spec application uses (connections themselves are made by
`compute_ctl.postgres.connect`). It additionally repairs a cluster whose administrator is still the
legacy `zenith_admin`, and stops the neon extension from forwarding our DDL to the control plane.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from compute_ctl.errors import PostgresError
from compute_ctl.postgres.connect import ADMIN_ROLE, connect

log = logging.getLogger(__name__)

LEGACY_ADMIN_ROLE = "zenith_admin"
# SQLSTATEs of a failed login: invalid_password, invalid_authorization_specification. libpq
# does not expose the SQLSTATE of a failed connection attempt, so the server's (untranslated)
# messages for them are recognised too.
_LOGIN_FAILED = ("28P01", "28000")
_LOGIN_FAILED_TEXT = re.compile(
    r'FATAL:.*(authentication failed|role ".*" does not exist|no pg_hba\.conf entry)'
)


async def _create_admin_role(connstr: str, application_name: str) -> None:
    """A cluster still administered by zenith_admin gets cloud_admin, once."""
    log.info("connecting as %s failed; creating it as %s", ADMIN_ROLE, LEGACY_ADMIN_ROLE)
    params = dict(conninfo_to_dict(connstr))
    params["user"] = LEGACY_ADMIN_ROLE
    legacy = make_conninfo("", **params)
    conn = await connect(
        legacy, application_name=application_name, role=LEGACY_ADMIN_ROLE, pgaudit=False
    )
    async with conn:
        await conn.execute("SET neon.forward_ddl = false")
        await conn.execute(
            sql.SQL("CREATE USER {} WITH SUPERUSER").format(sql.Identifier(ADMIN_ROLE))
        )
        await conn.execute(
            sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(LEGACY_ADMIN_ROLE), sql.Identifier(ADMIN_ROLE)
            )
        )


async def prepare_session(conn: psycopg.AsyncConnection[Any]) -> None:
    """Keep the neon extension from forwarding our DDL to the control plane (a placeholder
    setting without the extension, which is harmless)."""
    await conn.execute("SET neon.forward_ddl = false")


async def connect_maintenance(
    connstr: str,
    *,
    application_name: str,
    dbname: str | None = None,
    repair_admin: bool = True,
    statement_timeout: str = "0",
) -> psycopg.AsyncConnection[Any]:
    """The connection spec application uses."""
    try:
        conn = await connect(
            connstr,
            application_name=application_name,
            dbname=dbname,
            statement_timeout=statement_timeout,
        )
    except psycopg.OperationalError as exc:
        if not repair_admin or not _login_failed(exc):
            raise PostgresError(f"cannot connect to Postgres: {_first_line(exc)}") from None
        try:
            await _create_admin_role(connstr, application_name)
            conn = await connect(
                connstr,
                application_name=application_name,
                dbname=dbname,
                statement_timeout=statement_timeout,
            )
        except psycopg.Error as retry_exc:
            raise PostgresError(
                f"cannot connect to Postgres: {_first_line(exc)}; "
                f"creating {ADMIN_ROLE} as {LEGACY_ADMIN_ROLE} failed: {_first_line(retry_exc)}"
            ) from None
    await prepare_session(conn)
    return conn


def _login_failed(exc: psycopg.OperationalError) -> bool:
    if exc.sqlstate is not None:
        return exc.sqlstate in _LOGIN_FAILED
    return _LOGIN_FAILED_TEXT.search(str(exc)) is not None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
