"""`GET /hadron_liveness_probe`: is Postgres accepting connections?"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.responses import json_error, json_ok

if TYPE_CHECKING:
    from compute_ctl.compute.node import ComputeNode

log = logging.getLogger(__name__)

NO_PORT = "Failed to get the port from the connection string"


def connstr_port(connstr: str) -> int | None:
    try:
        return urlsplit(connstr).port
    except ValueError:
        return None


async def get_hadron_liveness_probe(request: Request) -> Response:
    """Run `pg_isready -p <port of --connstr>` (next to `--pgbin`, nothing but the port, as
    upstream: the host comes from libpq's defaults and the environment, e.g. `PGHOST`).

    200: `"ok"`: Postgres accepts connections.
    500: no port in `--connstr`, or pg_isready could not run or failed.
    """
    node: ComputeNode = request.app.state.compute
    port = connstr_port(node.params.connstr)
    if port is None:
        return json_error(NO_PORT, 500)
    binary = node.params.pg_bindir / "pg_isready"
    failed = f"could not run `{binary} --port {port}`"
    try:
        process = await asyncio.create_subprocess_exec(
            str(binary),
            "-p",
            str(port),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
    except OSError as exc:
        log.error("Hadron liveness probe failed: %s: %s", failed, exc)
        return json_error(failed, 500)
    text = output.decode(errors="replace").strip()
    if process.returncode != 0:
        log.error(
            "Hadron liveness probe failed: %s: exit status %s: %s",
            failed,
            process.returncode,
            text,
        )
        return json_error(failed, 500)
    return json_ok("ok")
