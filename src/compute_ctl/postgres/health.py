"""Can the compute write? A row in `public.health_check` (`POST /check_writability`)."""

from __future__ import annotations

import logging

from compute_ctl.errors import PostgresError
from compute_ctl.postgres.connect import connect, pg_error_text

log = logging.getLogger(__name__)

APPLICATION_NAME = "compute_ctl:availability_checker"
HEALTH_CHECK_QUERY = (
    "INSERT INTO public.health_check VALUES (1, pg_catalog.now()) "
    "ON CONFLICT (id) DO UPDATE SET updated_at = pg_catalog.now();"
)
DISK_FULL = "53100"


async def check_writability(connstr: str) -> None:
    """Write the health-check row on the system database. A full disk (SQLSTATE 53100)
    counts as writable; any other failure is a PostgresError with Postgres' text."""
    import psycopg  # noqa: PLC0415 - psycopg is heavy: off the start-up path

    try:
        async with await connect(connstr, APPLICATION_NAME) as conn:
            await conn.execute(HEALTH_CHECK_QUERY)
    except psycopg.Error as exc:
        if exc.sqlstate == DISK_FULL:
            log.warning("Tenant disk is full")
            return
        raise PostgresError(pg_error_text(exc)) from None
