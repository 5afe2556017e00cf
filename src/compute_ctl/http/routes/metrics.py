"""`GET /metrics`: Prometheus exposition, unauthenticated."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


async def get_metrics(request: Request, compute: ComputeApi) -> Response:
    """Metrics in the Prometheus text format 0.0.4.

    200: the metrics text.
    """
    return Response(compute.prom.render(), media_type=CONTENT_TYPE)
