"""Connections compute_ctl opens to its own Postgres: one recipe for every caller.

Every connection uses `--connstr` with upstream's startup options prepended to any the
connstr has: the administrator role, no search_path (so no user object can shadow a catalog
function), no statement timeout, read-write, and pgaudit silent, whatever the cluster's or the
role's defaults are. An application name says who connects (`compute_ctl:compute_monitor`, …);
a database other than the connstr's replaces only the dbname. Error texts follow the form
upstream's clients print (`db error: ERROR: <message>`) and never quote the connection string.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

ADMIN_ROLE = "cloud_admin"
CONNECT_TIMEOUT = 10


def _option_value(value: str) -> str:
    """Escape a value for libpq's `options` (spaces and backslashes are backslash-escaped)."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def startup_options(
    role: str = ADMIN_ROLE, *, pgaudit: bool = True, statement_timeout: str = "0"
) -> str:
    """`statement_timeout` is 0 except for lakebase's catalog sessions (`2min`)."""
    options = [
        f"-c role={_option_value(role)}",
        "-c default_transaction_read_only=off",
        "-c search_path=''",
        f"-c statement_timeout={_option_value(statement_timeout)}",
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
    statement_timeout: str = "0",
) -> dict[str, Any]:
    """libpq parameters for `connstr` with our startup options prepended to its own."""
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415 - see connect()

    params: dict[str, Any] = dict(conninfo_to_dict(connstr))
    existing = params.get("options")
    ours = startup_options(role, pgaudit=pgaudit, statement_timeout=statement_timeout)
    params["options"] = f"{ours} {existing}" if existing else ours
    params["application_name"] = application_name
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    if dbname is not None:
        params["dbname"] = dbname
    return params


async def connect(
    connstr: str,
    application_name: str,
    dbname: str | None = None,
    *,
    role: str = ADMIN_ROLE,
    pgaudit: bool = True,
    statement_timeout: str = "0",
) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection with the startup options; never prepares statements."""
    import psycopg  # noqa: PLC0415 - psycopg is heavy: off the start-up path

    params = conninfo_params(
        connstr,
        application_name=application_name,
        dbname=dbname,
        role=role,
        pgaudit=pgaudit,
        statement_timeout=statement_timeout,
    )
    return await psycopg.AsyncConnection.connect(**params, autocommit=True, prepare_threshold=None)


class DatabaseRefusal(Enum):
    """Why the server refused a connection because of the database asked for."""

    MISSING = "does not exist"
    CLOSED = "is not currently accepting connections"  # datallowconn is false (template0)


def database_refusal(message: str, database: str) -> DatabaseRefusal | None:
    """The server's reason when it refused a connection to `database` because of the database
    itself, found in a client's message (libpq's, psycopg's or pg_dump's); None for any other
    failure.

    libpq gives no SQLSTATE for a failed connection attempt, so the server's message is
    recognised; `postgresql.conf` fixes `lc_messages`, so the message is never translated.
    """
    for refusal in DatabaseRefusal:
        pattern = rf'FATAL:\s+database "{re.escape(database)}" {refusal.value}'
        if re.search(pattern, message):
            return refusal
    return None


def pg_error_text(exc: BaseException) -> str:
    """`db error: ERROR: relation "x" does not exist` for a server error (with DETAIL/HINT
    lines), else the client's own message (`error connecting to server: ...`)."""
    import psycopg  # noqa: PLC0415 - psycopg is heavy: off the start-up path

    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        diag = exc.diag
        text = f"db error: {diag.severity or 'ERROR'}: {diag.message_primary}"
        if diag.message_detail:
            text += f"\nDETAIL: {diag.message_detail}"
        if diag.message_hint:
            text += f"\nHINT: {diag.message_hint}"
        return text
    if isinstance(exc, psycopg.OperationalError):
        return f"error connecting to server: {str(exc).strip()}"
    return str(exc).strip() or type(exc).__name__
