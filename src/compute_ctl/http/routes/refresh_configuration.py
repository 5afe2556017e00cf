"""`POST /refresh_configuration` (internal): pull the config again and apply it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl import tracing
from compute_ctl.errors import ComputeError
from compute_ctl.http.responses import json_error

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


async def post_refresh_configuration(request: Request, compute: ComputeApi) -> Response:
    """Signal the configurator to refresh; it does not wait for the outcome.

    Every call counts in `pg_cctl_pagestream_request_errors_total`.

    200: accepted (empty body); also while the compute is still starting, where it does nothing.
    500: not allowed in this status
    (`{"error": "Cannot refresh compute configuration in state <Variant>"}`).
    """
    compute.prom.pagestream_request_errors.inc()
    tracing.hand_over("refresh")  # the refresh's span is a child of this request's
    try:
        await compute.signal_refresh()
    except ComputeError as exc:
        tracing.take_over("refresh")
        return json_error(str(exc), 500)
    return Response(b"", status_code=200)
