"""Usage insights: the top statements of `pg_stat_statements`, as one JSON text."""

from __future__ import annotations

import logging

from compute_ctl.errors import PostgresError
from compute_ctl.postgres.connect import connect, pg_error_text

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


async def collect_insights(connstr: str) -> str:
    """`{"pg_stat_statements": [<row>, ...]}`: an empty list when the statistics cannot be
    read (e.g. the extension is not installed); PostgresError when Postgres cannot be
    reached."""
    import psycopg  # noqa: PLC0415 - psycopg is heavy: off the start-up path

    try:
        conn = await connect(connstr, APPLICATION_NAME)
    except psycopg.Error as exc:
        raise PostgresError(pg_error_text(exc)) from None
    async with conn:
        try:
            cur = await conn.execute(INSIGHTS_QUERY)
            return insights_text([row[0] for row in await cur.fetchall()])
        except psycopg.Error as exc:
            log.error("failed to get insights: %s", pg_error_text(exc))
            return NO_INSIGHTS
