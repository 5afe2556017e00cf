"""`GET /insights`: the top statements of `pg_stat_statements`, as a JSON string."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.errors import PostgresError
from compute_ctl.http.responses import json_error, json_ok, unless_running
from compute_ctl.postgres.insights import collect_insights

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


async def get_insights(request: Request, compute: ComputeApi) -> Response:
    """Usage insights of a running compute.

    200: a JSON string holding `{"pg_stat_statements": [<row>, ...]}` (an empty list when
    the statistics cannot be read, e.g. the extension is not installed).
    412: the compute is not running.
    500: Postgres could not be reached.
    """
    if (refusal := unless_running(compute.state)) is not None:
        return refusal
    try:
        text = await collect_insights(compute.params.connstr)
    except PostgresError as exc:
        return json_error(str(exc), 500)
    return json_ok(text)
