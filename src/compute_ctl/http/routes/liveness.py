"""`GET /hadron_liveness_probe`: is Postgres accepting connections?"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.responses import json_error, json_ok
from compute_ctl.postgres.tools import pg_isready

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi

NO_PORT = "Failed to get the port from the connection string"


def connstr_port(connstr: str) -> int | None:
    try:
        return urlsplit(connstr).port
    except ValueError:
        return None


async def get_hadron_liveness_probe(request: Request, compute: ComputeApi) -> Response:
    """Run `pg_isready -p <port of --connstr>` (next to `--pgbin`, nothing but the port, as
    upstream: the host comes from libpq's defaults and the environment, e.g. `PGHOST`).

    200: `"ok"`: Postgres accepts connections.
    500: no port in `--connstr`, or pg_isready could not run or failed.
    """
    port = connstr_port(compute.params.connstr)
    if port is None:
        return json_error(NO_PORT, 500)
    failure = await pg_isready(compute.params.pg_bindir, port)
    if failure is not None:
        return json_error(failure, 500)
    return json_ok("ok")
