"""Connections compute_ctl opens to its own Postgres (monitor, HTTP handlers).

Every one uses `--connstr` with upstream's startup options prepended to any the connstr has,
and an application name saying who connects (`compute_ctl:compute_monitor`, ...). A database
other than the connstr's replaces only the dbname. Error texts follow the form upstream's
clients print (`db error: ERROR: <message>`), without ever quoting the connection string.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

STARTUP_OPTIONS = (
    "-c role=cloud_admin -c default_transaction_read_only=off -c search_path='' "
    "-c statement_timeout=0 -c pgaudit.log=none"
)
CONNECT_TIMEOUT = 10


def local_conninfo(connstr: str, application_name: str, dbname: str | None = None) -> str:
    params = conninfo_to_dict(connstr)
    existing = params.get("options")
    options = f"{STARTUP_OPTIONS} {existing}" if existing else STARTUP_OPTIONS
    extra: dict[str, Any] = {"options": options, "application_name": application_name}
    if dbname is not None:
        extra["dbname"] = dbname
    if "connect_timeout" not in params:
        extra["connect_timeout"] = CONNECT_TIMEOUT
    return make_conninfo(connstr, **extra)


async def connect(
    connstr: str, application_name: str, dbname: str | None = None
) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(
        local_conninfo(connstr, application_name, dbname), autocommit=True
    )


def pg_error_text(exc: BaseException) -> str:
    """`db error: ERROR: relation "x" does not exist` for a server error (with DETAIL/HINT
    lines), else the client's own message (`error connecting to server: ...`)."""
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
