"""`GET /hadron_liveness_probe`: is Postgres accepting connections?"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.responses import json_error, json_ok
from compute_ctl.postgres.tools import pg_isready

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


async def get_hadron_liveness_probe(request: Request, compute: ComputeApi) -> Response:
    """Run pg_isready (next to `--pgbin`) against the Postgres `--connstr` names: its host or
    socket directory, port, user and database, as every other connection of compute_ctl.

    200: `"ok"`: Postgres accepts connections.
    500: Postgres does not accept connections, or pg_isready could not run: `could not run
    <command>`, the command as run (its connection string has no password); pg_isready's
    output is logged.
    """
    failure = await pg_isready(compute.params.pg_bindir, compute.params.connstr)
    if failure is not None:
        return json_error(failure, 500)
    return json_ok("ok")
