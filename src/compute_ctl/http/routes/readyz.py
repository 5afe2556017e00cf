"""`GET /readyz`: may this compute take traffic? For a kubelet or a load balancer, which can
read a status code but not a JSON body (an addition; docs/compatibility.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.responses import json_ok
from compute_ctl.state import ComputeStatus

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


async def get_readyz(request: Request, compute: ComputeApi) -> Response:
    """Ready means `running`; no token needed.

    200: `{"status": "running"}`.
    503: `{"status": "<status>"}`: any other status (empty, init, configuration, failed,
    termination…): not ready, or no longer.
    """
    status = compute.state.status
    return json_ok({"status": status.value}, 200 if status is ComputeStatus.RUNNING else 503)
