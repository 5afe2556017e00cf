"""`GET /insights`: the top statements of `pg_stat_statements`, as a JSON string."""

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

APPLICATION_NAME = "compute_ctl:collect_insights"
INSIGHTS_QUERY = (
    "SELECT pg_catalog.row_to_json(pss)::text FROM public.pg_stat_statements pss "
    "WHERE pss.userid != 'cloud_admin'::pg_catalog.regrole::pg_catalog.oid "
    "ORDER BY (pss.mean_exec_time + pss.mean_plan_time) DESC LIMIT 100"
)
NO_INSIGHTS = '{"pg_stat_statements": []}'


def insights_text(rows: list[str]) -> str:
    return '{"pg_stat_statements": [' + ",".join(rows) + "]}"


async def get_insights(request: Request) -> Response:
    """Usage insights of a running compute.

    200: a JSON string holding `{"pg_stat_statements": [<row>, ...]}` (an empty list when
    the statistics cannot be read, e.g. the extension is not installed).
    412: the compute is not running.
    500: Postgres could not be reached.
    """
    import psycopg  # noqa: PLC0415 - psycopg is heavy: off the start-up path

    node: ComputeNode = request.app.state.compute
    if (refusal := unless_running(node.state)) is not None:
        return refusal
    try:
        conn = await connect(node.params.connstr, APPLICATION_NAME)
    except psycopg.Error as exc:
        return json_error(pg_error_text(exc), 500)
    async with conn:
        try:
            cur = await conn.execute(INSIGHTS_QUERY)
            text = insights_text([row[0] for row in await cur.fetchall()])
        except psycopg.Error as exc:
            log.error("failed to get insights: %s", pg_error_text(exc))
            text = NO_INSIGHTS
    return json_ok(text)
