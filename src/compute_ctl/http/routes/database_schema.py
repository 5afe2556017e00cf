"""`GET /database_schema?database=<name>`: a schema-only dump of one database, streamed.

`pg_dump --host H --port P --username U --schema-only` (H, P, U from `--connstr`) with the
database in `PGDATABASE`, so that any name works (spaces, quotes, `=`, emoji) without being
read as a connection string. The dump is streamed as pg_dump writes it, labelled
`application/json` as upstream does (the body is SQL text). pg_dump is killed if the client goes
away before the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from compute_ctl.http.responses import json_error
from compute_ctl.http.schemas import DatabaseSchemaQuery
from compute_ctl.spec.load import spec_error_from_validation

if TYPE_CHECKING:
    from compute_ctl.compute.node import ComputeNode

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
FAILED = "failed to execute pg_dump"


def dump_target(connstr: str) -> tuple[str, str, str] | None:
    """(host, port, user) of the connstr URL, or None when one is missing."""
    try:
        parts = urlsplit(connstr)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or port is None or not parts.username:
        return None
    return parts.hostname, str(port), unquote(parts.username)


class PgDumpResponse(Response):
    """Streams pg_dump's stdout; kills pg_dump when the client disconnects or on any exit."""

    media_type = "application/json"

    def __init__(self, process: asyncio.subprocess.Process, first: bytes) -> None:
        super().__init__(b"", status_code=200)
        self.process = process
        self.first = first
        del self.headers["content-length"]

    async def _watch_disconnect(self, receive: Receive) -> None:
        await wait_for_disconnect(receive)
        log.info("database_schema: the client went away, stopping pg_dump")
        _kill(self.process)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        watcher = asyncio.ensure_future(self._watch_disconnect(receive))
        drain = asyncio.ensure_future(_log_stderr(self.process))
        complete = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            chunk = self.first
            while chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                chunk = await stdout.read(CHUNK)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            complete = True
        except OSError:
            log.info("database_schema: the client went away")
        finally:
            watcher.cancel()
            if not complete:
                _kill(self.process)
            code = await self.process.wait()
            drain.cancel()
            if code != 0:
                log.warning("pg_dump exited with code %d", code)


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the client has gone away (the request has no body to read)."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


async def _first_chunk(request: Request, process: asyncio.subprocess.Process) -> bytes | None:
    """pg_dump's first output (b"" if none), or None when the client left before it came."""
    assert process.stdout is not None
    reading = asyncio.ensure_future(process.stdout.read(CHUNK))
    leaving = asyncio.ensure_future(wait_for_disconnect(request.receive))
    try:
        await asyncio.wait({reading, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        leaving.cancel()
    if not reading.done():
        reading.cancel()
        return None
    try:
        return reading.result()
    except OSError:
        return b""


async def _log_stderr(process: asyncio.subprocess.Process) -> None:
    assert process.stderr is not None
    while line := await process.stderr.readline():
        log.info("pg_dump: %s", line.decode(errors="replace").rstrip())


async def get_database_schema(request: Request) -> Response:
    """The schema of one database (`pg_dump --schema-only`), streamed.

    200: the dump (SQL text, labelled `application/json` like upstream).
    400: the `database` query parameter is missing.
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
    node: ComputeNode = request.app.state.compute
    target = dump_target(node.params.connstr)
    if target is None:
        return json_error("unexpected I/O error", 500)
    host, port, user = target
    pg_dump = node.params.pg_bindir / "pg_dump"
    argv = [str(pg_dump), "--host", host, "--port", port, "--username", user, "--schema-only"]
    env = {**os.environ, "PGDATABASE": query.database}
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the environment
        log.error("could not run %s: %s", pg_dump, exc)
        return json_error(FAILED, 500)
    assert process.stdout is not None and process.stderr is not None
    first = await _first_chunk(request, process)
    if first is None:
        log.info("database_schema: the client went away, stopping pg_dump")
        _kill(process)
        await process.wait()
        return Response(b"", status_code=499)  # nobody is listening any more
    if first:
        return PgDumpResponse(process, first)
    stderr_line = (await process.stderr.readline()).decode(errors="replace")
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()
    log.error("pg_dump failed: %s", stderr_line.rstrip())
    if f'FATAL:  database "{query.database}" does not exist' in stderr_line:
        return json_error("database does not exist", 404)
    return json_error(FAILED, 500)
