"""Connections compute_ctl opens to its own Postgres, with upstream's startup options.

Every connection runs as the administrator role with a fixed environment — no search_path (so no
user object can shadow a catalog function), no statement timeout, read-write, and pgaudit silent
— whatever the cluster's or the role's defaults are. Per-database work only swaps the database
name. The "maintenance client" additionally repairs a cluster whose administrator is still the
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

log = logging.getLogger(__name__)

ADMIN_ROLE = "cloud_admin"
LEGACY_ADMIN_ROLE = "zenith_admin"
# SQLSTATEs of a failed login: invalid_password, invalid_authorization_specification. libpq
# does not expose the SQLSTATE of a failed connection attempt, so the server's (untranslated)
# messages for them are recognised too.
_LOGIN_FAILED = ("28P01", "28000")
_LOGIN_FAILED_TEXT = re.compile(
    r'FATAL:.*(authentication failed|role ".*" does not exist|no pg_hba\.conf entry)'
)


def _option_value(value: str) -> str:
    """Escape a value for libpq's `options` (spaces and backslashes are backslash-escaped)."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def startup_options(role: str = ADMIN_ROLE, *, pgaudit: bool = True) -> str:
    options = [
        f"-c role={_option_value(role)}",
        "-c default_transaction_read_only=off",
        "-c search_path=''",
        "-c statement_timeout=0",
    ]
    if pgaudit:
        options.append("-c pgaudit.log=none")
    return " ".join(options)


def conninfo_params(
    connstr: str,
    *,
    application_name: str,
    dbname: str | None = None,
    role: str = ADMIN_ROLE,
    pgaudit: bool = True,
) -> dict[str, Any]:
    """libpq parameters for `connstr` with our startup options prepended to its own."""
    params: dict[str, Any] = dict(conninfo_to_dict(connstr))
    existing = params.get("options")
    ours = startup_options(role, pgaudit=pgaudit)
    params["options"] = f"{ours} {existing}" if existing else ours
    params["application_name"] = application_name
    if dbname is not None:
        params["dbname"] = dbname
    return params


async def connect(
    connstr: str,
    *,
    application_name: str,
    dbname: str | None = None,
    role: str = ADMIN_ROLE,
    pgaudit: bool = True,
) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection with the startup options; never prepares statements."""
    params = conninfo_params(
        connstr, application_name=application_name, dbname=dbname, role=role, pgaudit=pgaudit
    )
    return await psycopg.AsyncConnection.connect(**params, autocommit=True, prepare_threshold=None)


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
) -> psycopg.AsyncConnection[Any]:
    """The connection spec application uses (§5.1 "maintenance client")."""
    try:
        conn = await connect(connstr, application_name=application_name, dbname=dbname)
    except psycopg.OperationalError as exc:
        if not repair_admin or not _login_failed(exc):
            raise PostgresError(f"cannot connect to Postgres: {_first_line(exc)}") from None
        try:
            await _create_admin_role(connstr, application_name)
            conn = await connect(connstr, application_name=application_name, dbname=dbname)
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
