"""`POST /check_writability`: can the compute write? (a row in `public.health_check`)"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.responses import json_error, json_ok, unless_running
from compute_ctl.postgres.connect import connect, pg_error_text

if TYPE_CHECKING:
    from compute_ctl.compute.node import ComputeNode

log = logging.getLogger(__name__)

APPLICATION_NAME = "compute_ctl:availability_checker"
HEALTH_CHECK_QUERY = (
    "INSERT INTO public.health_check VALUES (1, pg_catalog.now()) "
    "ON CONFLICT (id) DO UPDATE SET updated_at = pg_catalog.now();"
)
DISK_FULL = "53100"


async def post_check_writability(request: Request) -> Response:
    """Write the health-check row on the system database.

    200: `true`: written, or the disk is full (SQLSTATE 53100 counts as writable).
    412: the compute is not running.
    500: the connection or the statement failed (`{"error": <Postgres error>}`).
    """
    import psycopg  # noqa: PLC0415 - psycopg is heavy: off the start-up path

    node: ComputeNode = request.app.state.compute
    if (refusal := unless_running(node.state)) is not None:
        return refusal
    try:
        async with await connect(node.params.connstr, APPLICATION_NAME) as conn:
            await conn.execute(HEALTH_CHECK_QUERY)
    except psycopg.Error as exc:
        if exc.sqlstate == DISK_FULL:
            log.warning("Tenant disk is full")
            return json_ok(True)
        return json_error(pg_error_text(exc), 500)
    return json_ok(True)
