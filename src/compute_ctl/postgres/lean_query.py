"""One read-only statement on an open psycopg connection, through libpq directly.

The activity monitor asks Postgres the same question twice a second for the compute's whole
life, and an idle fleet pays for every check (docs/benchmarks.md, F5). On an idle process,
whose caches are cold at every check, psycopg's cursor path (a cursor, its generator-based
wait, the row loaders) costs about as much CPU again as the check's own wake-up; this path
sends the statement with binary results and hands back the raw column values.

Only a result set with the expected column types is decoded here. Anything else (an error, an
unexpected answer) returns None, and the caller asks again through psycopg's cursor path, so
that an error keeps psycopg's exception and its text.
"""

from __future__ import annotations

import asyncio
import struct
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

TEXT_OID = 25
INT8_OID = 20
TIMESTAMPTZ_OID = 1184

_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_INT8 = struct.Struct(">q")

Row = tuple[bytes | None, ...]


async def binary_rows(
    conn: psycopg.AsyncConnection[Any], query: bytes, column_types: tuple[int, ...]
) -> list[Row] | None:
    """The rows of `query` (no parameters) as raw binary values, None for NULL; None instead
    of the rows when the answer is not one result set whose columns have `column_types`.
    Raises psycopg.OperationalError when the connection is lost. The connection must be idle
    and used by nobody else meanwhile."""
    from psycopg import pq  # noqa: PLC0415 - psycopg is heavy: off the start-up path

    pgconn = conn.pgconn
    pgconn.send_query_params(query, None, result_format=pq.Format.BINARY)
    while pgconn.flush():  # a non-blocking connection may not send it all at once
        await _ready(pgconn.socket, writable=True)
    pgconn.consume_input()
    while pgconn.is_busy():
        await _ready(pgconn.socket, writable=False)
        pgconn.consume_input()
    results = []
    while (result := pgconn.get_result()) is not None:
        results.append(result)
    if len(results) != 1:
        return None
    result = results[0]
    if result.status != pq.ExecStatus.TUPLES_OK or result.nfields != len(column_types):
        return None
    if any(result.ftype(i) != oid for i, oid in enumerate(column_types)):
        return None
    columns = range(result.nfields)
    return [tuple(result.get_value(row, col) for col in columns) for row in range(result.ntuples)]


async def _ready(fd: int, *, writable: bool) -> None:
    """Wait until the socket is readable (or writable) on the running event loop."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    add, remove = (
        (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)
    )
    add(fd, wake)
    try:
        await ready
    finally:
        remove(fd)


def text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def int8(value: bytes | None) -> int | None:
    return None if value is None else int(_INT8.unpack(value)[0])


def timestamptz(value: bytes | None) -> datetime | None:
    """A binary timestamptz: microseconds since 2000-01-01 UTC (Postgres' integer datetimes)."""
    if value is None:
        return None
    return _POSTGRES_EPOCH + timedelta(microseconds=_INT8.unpack(value)[0])
