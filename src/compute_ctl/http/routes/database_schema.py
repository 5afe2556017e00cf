"""`GET /database_schema?database=<name>`: a schema-only dump of one database, streamed.

The dump (`postgres/pg_dump.py`) is streamed as pg_dump writes it, labelled `application/json`
as upstream does (the body is SQL text). pg_dump is killed if the client goes away before the
end.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from compute_ctl.http.logtext import one_line
from compute_ctl.http.responses import json_error
from compute_ctl.http.schemas import DatabaseSchemaQuery, name_error
from compute_ctl.postgres.connect import DatabaseRefusal, database_refusal
from compute_ctl.postgres.pg_dump import DumpNotStartedError, SchemaDump, dump_target
from compute_ctl.spec.load import spec_error_from_validation

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi

log = logging.getLogger(__name__)

FAILED = "failed to execute pg_dump"


class PgDumpResponse(Response):
    """Streams pg_dump's stdout; kills pg_dump when the client disconnects or on any exit."""

    media_type = "application/json"

    def __init__(self, dump: SchemaDump, first: bytes) -> None:
        super().__init__(b"", status_code=200)
        self.dump = dump
        self.first = first
        del self.headers["content-length"]

    async def _watch_disconnect(self, receive: Receive) -> None:
        await wait_for_disconnect(receive)
        log.info("database_schema: the client went away, stopping pg_dump")
        self.dump.kill()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(self._watch_disconnect(receive))
        drain = asyncio.ensure_future(self.dump.log_stderr())
        complete = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            chunk = self.first
            while chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                chunk = await self.dump.read()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            complete = True
        except OSError:
            log.info("database_schema: the client went away")
        finally:
            watcher.cancel()
            if not complete:
                self.dump.kill()
            code = await self.dump.wait()
            drain.cancel()
            if code != 0:
                log.warning("pg_dump exited with code %d", code)


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the client has gone away (the request has no body to read)."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _first_chunk(request: Request, dump: SchemaDump) -> bytes | None:
    """pg_dump's first output (b"" if none), or None when the client left before it came."""
    reading = asyncio.ensure_future(dump.read())
    leaving = asyncio.ensure_future(wait_for_disconnect(request.receive))
    try:
        await asyncio.wait({reading, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        leaving.cancel()
    if not reading.done():
        reading.cancel()
        return None
    return reading.result()


async def get_database_schema(request: Request, compute: ComputeApi) -> Response:
    """The schema of one database (`pg_dump --schema-only`), streamed.

    200: the dump (SQL text, labelled `application/json` like upstream).
    400: the `database` query parameter is missing, or is not a name Postgres could take as it
    is (empty, longer than 63 bytes, a NUL character: `database: database name is empty`), or
    the database does not accept connections (`database does not accept connections`).
    404: the database does not exist (`{"error": "database does not exist"}`).
    499: (not seen by anyone) the client went away before the dump started; pg_dump is killed.
    500: pg_dump could not be run or produced nothing (`failed to execute pg_dump`), or the
    connection string lacks a host, port or user (`unexpected I/O error`).
    """
    try:
        query = DatabaseSchemaQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        problem = spec_error_from_validation(exc)
        reason = (
            f"missing field `{problem.field}`"
            if problem.problem == "required field is missing"
            else f"{problem.field}: {problem.problem}"
        )
        return json_error(f"failed to deserialize query string: {reason}", 400)
    if (bad_name := name_error(query)) is not None:
        return json_error(bad_name.one_line(), 400)
    target = dump_target(compute.params.connstr)
    if target is None:
        return json_error("unexpected I/O error", 500)
    try:
        dump = await SchemaDump.start(compute.params.pg_bindir, target, query.database)
    except DumpNotStartedError as exc:
        log.error("%s", exc)
        return json_error(FAILED, 500)
    first = await _first_chunk(request, dump)
    if first is None:
        log.info("database_schema: the client went away, stopping pg_dump")
        dump.kill()
        await dump.wait()
        return Response(b"", status_code=499)  # nobody is listening any more
    if first:
        return PgDumpResponse(dump, first)
    said = await dump.error_output()
    dump.kill()
    await dump.wait()
    log.error("pg_dump failed: %s", one_line(said.strip()))
    refusal = database_refusal(said, query.database)
    if refusal is DatabaseRefusal.MISSING:
        return json_error("database does not exist", 404)
    if refusal is DatabaseRefusal.CLOSED:
        return json_error("database does not accept connections", 400)
    return json_error(FAILED, 500)
