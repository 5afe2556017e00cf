"""`POST /check_writability`: can the compute write? (a row in `public.health_check`)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.errors import PostgresError
from compute_ctl.http.responses import json_error, json_ok, unless_running
from compute_ctl.postgres.health import check_writability

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


async def post_check_writability(request: Request, compute: ComputeApi) -> Response:
    """Write the health-check row on the system database.

    200: `true`: written, or the disk is full (SQLSTATE 53100 counts as writable).
    412: the compute is not running.
    500: the connection or the statement failed (`{"error": <Postgres error>}`).
    """
    if (refusal := unless_running(compute.state)) is not None:
        return refusal
    try:
        await check_writability(compute.params.connstr)
    except PostgresError as exc:
        return json_error(str(exc), 500)
    return json_ok(True)
