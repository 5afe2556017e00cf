"""`GET /status` and `GET /metrics.json`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.responses import json_ok, rfc3339_offset, rfc3339_z
from compute_ctl.state import ComputeState

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


def status_body(state: ComputeState) -> dict[str, Any]:
    """The ComputeStatusResponse shape (also the success body of /configure)."""
    pspec = state.pspec
    return {
        "start_time": rfc3339_z(state.start_time),
        "tenant": str(pspec.tenant_id) if pspec else None,
        "timeline": str(pspec.timeline_id) if pspec else None,
        "status": state.status.value,
        "last_active": rfc3339_offset(state.last_active) if state.last_active else None,
        "error": state.error,
    }


async def get_status(request: Request, compute: ComputeApi) -> Response:
    """The compute's status.

    200: the status object.
    """
    return json_ok(status_body(compute.state))


async def get_metrics_json(request: Request, compute: ComputeApi) -> Response:
    """Start-up timings and sizes.

    200: the ComputeMetrics object (every field, integers).
    """
    return json_ok(dict(vars(compute.state.metrics)))
