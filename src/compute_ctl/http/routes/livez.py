"""`GET /livez`: is compute_ctl serving? For a liveness probe that must not kill a compute
that is still starting (an addition; docs/compatibility.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.responses import json_ok

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


async def get_livez(request: Request, compute: ComputeApi) -> Response:
    """Alive while the process serves, in every status; no token needed. (A compute that
    fails exits by itself after a while, and is restarted then.)

    200: `{"status": "<status>"}`, whatever the status.
    """
    return json_ok({"status": compute.state.status.value})
