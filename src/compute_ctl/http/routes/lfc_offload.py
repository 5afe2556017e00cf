"""`GET/POST /lfc/offload`: store the LFC's state in endpoint storage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.responses import json_error, json_ok

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi

BUSY = "Multiple requests for prewarm offload are not allowed"


async def get_lfc_offload(request: Request, compute: ComputeApi) -> Response:
    """The state of the last offload (`{"status": ...}`, internally tagged).

    200: `not_offloaded`, `offloading`, `completed` (with timings), `failed` (with `error`)
    or `skipped` (Postgres had no state).
    """
    return json_ok(compute.lfc.offload_state.model_dump(mode="json"))


async def post_lfc_offload(request: Request, compute: ComputeApi) -> Response:
    """Start an offload in the background; poll `GET /lfc/offload` for the outcome.

    202: started (empty body).
    429: an offload is already running.
    """
    if not compute.lfc.offload():
        return json_error(BUSY, 429)
    return Response(b"", status_code=202)
