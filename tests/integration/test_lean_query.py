"""The activity monitor's libpq path (postgres/lean_query.py) against a real PostgreSQL: the
same rows as psycopg's cursor path, in every state the monitor's rules look at, and errors
left to the cursor path so that they keep psycopg's exception."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from compute_ctl.compute.activity_monitor import ACTIVITY_QUERY, activity_rows
from compute_ctl.postgres import lean_query
from compute_ctl.postgres.connect import connect
from tests.support.pgserver import PgServer

USER = "app_user"


@pytest.fixture(scope="module")
def pg(plain_pg: PgServer) -> PgServer:
    with psycopg.connect(plain_pg.connstr(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {USER} LOGIN")
    return plain_pg


async def both_ways(pg: PgServer) -> tuple[list[Any], list[Any]]:
    conn = await connect(pg.connstr(), "compute_ctl:compute_monitor")
    async with conn:
        lean = await activity_rows(conn)
        cur = await conn.execute(ACTIVITY_QUERY)
        return lean, await cur.fetchall()


def test_no_client_backend_gives_one_row_of_nulls(pg: PgServer) -> None:
    lean, cursor = asyncio.run(both_ways(pg))
    assert lean == [(None, None, 0)] == [tuple(row) for row in cursor]


def test_idle_and_active_backends_match_the_cursor_path(pg: PgServer) -> None:
    started = threading.Event()
    with psycopg.connect(pg.connstr(user=USER), autocommit=True) as idle:
        idle.execute("SELECT 1")
        with psycopg.connect(pg.connstr(user=USER), autocommit=True) as busy:

            def sleep() -> None:
                started.set()
                busy.execute("SELECT pg_sleep(2)")

            thread = threading.Thread(target=sleep)
            thread.start()
            try:
                started.wait(5)
                # pg_stat_activity shows the sleep once the backend reports it
                for _attempt in range(200):
                    lean, cursor = asyncio.run(both_ways(pg))
                    if any(state == "active" for state, _, _ in lean):
                        break
                    threading.Event().wait(0.01)
            finally:
                thread.join()
    assert sorted(lean, key=str) == sorted((tuple(row) for row in cursor), key=str)
    states = sorted(state for state, _, _ in lean if state is not None)
    assert states == ["active", "idle"]
    changed = [at for _, at, _ in lean]
    assert all(isinstance(at, datetime) and at.tzinfo is not None for at in changed)


def test_timestamps_decode_as_psycopg_does(pg: PgServer) -> None:
    values = ("1999-12-31 23:59:59.999999+00", "2000-01-01 00:00:00+00", "2026-12-03 10:11:12.5+03")

    async def check() -> None:
        conn = await connect(pg.connstr(), "test")
        async with conn:
            for value in values:
                query = f"SELECT '{value}'::timestamptz".encode()
                raw = await lean_query.binary_rows(conn, query, (lean_query.TIMESTAMPTZ_OID,))
                cur = await conn.execute(query)
                expected = (await cur.fetchall())[0][0]
                assert raw is not None
                assert lean_query.timestamptz(raw[0][0]) == expected.astimezone(UTC)

    asyncio.run(check())


def test_an_error_or_other_columns_are_left_to_the_cursor_path(pg: PgServer) -> None:
    async def check() -> None:
        conn = await connect(pg.connstr(), "test")
        async with conn:
            assert await lean_query.binary_rows(conn, b"SELECT 1/0", (lean_query.INT8_OID,)) is None
            # the connection is usable after the error
            ints = await lean_query.binary_rows(conn, b"SELECT 7::int8", (lean_query.INT8_OID,))
            assert ints is not None and lean_query.int8(ints[0][0]) == 7
            other = await lean_query.binary_rows(conn, b"SELECT 7::int4", (lean_query.INT8_OID,))
            assert other is None
            two = await lean_query.binary_rows(conn, b"SELECT 1; SELECT 2", (lean_query.INT8_OID,))
            assert two is None

    asyncio.run(check())


def test_a_lost_connection_raises_operational_error(pg: PgServer) -> None:
    async def check() -> None:
        conn = await connect(pg.connstr(), "compute_ctl:compute_monitor")
        async with conn:
            with psycopg.connect(pg.connstr(), autocommit=True) as other:
                other.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'compute_ctl:compute_monitor'"
                )
            with pytest.raises(psycopg.OperationalError):
                await activity_rows(conn)

    asyncio.run(check())
