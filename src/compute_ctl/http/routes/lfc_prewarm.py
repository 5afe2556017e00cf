"""`GET/POST/DELETE /lfc/prewarm`: load the LFC from the state kept in endpoint storage."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from compute_ctl.http.responses import json_error, json_ok

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi

BUSY = "Multiple requests for prewarm are not allowed"
FIELD = "from_endpoint"


def from_endpoint(query: str) -> str | PlainTextResponse | None:
    """The optional query string: none at all, or one `from_endpoint` (a 400 otherwise)."""
    if not query:
        return None
    values = [value for key, value in parse_qsl(query, keep_blank_values=True) if key == FIELD]
    if len(values) == 1:
        return values[0]
    problem = f"missing field `{FIELD}`" if not values else f"duplicate field `{FIELD}`"
    return PlainTextResponse(f"Failed to deserialize query string: {problem}", status_code=400)


async def get_lfc_prewarm(request: Request, compute: ComputeApi) -> Response:
    """The state of the last prewarm (`{"status": ...}`, internally tagged).

    200: `not_prewarmed`, `prewarming`, `completed` (with counts and timings), `failed`
    (with `error`), `skipped` (no state stored) or `cancelled`.
    """
    return json_ok(compute.lfc.prewarm_state.model_dump(mode="json"))


async def post_lfc_prewarm(request: Request, compute: ComputeApi) -> Response:
    """Start a prewarm in the background from this endpoint's stored state, or from
    another endpoint's (`?from_endpoint=<id>`); poll `GET /lfc/prewarm` for the outcome.

    202: started (empty body).
    400: a query string without exactly one `from_endpoint` (plain text).
    429: a prewarm is already running.
    """
    endpoint = from_endpoint(request.url.query)
    if isinstance(endpoint, Response):
        return endpoint
    if not compute.lfc.prewarm(endpoint):
        return json_error(BUSY, 429)
    return Response(b"", status_code=202)


async def delete_lfc_prewarm(request: Request, compute: ComputeApi) -> Response:
    """Cancel the running prewarm (it ends `cancelled`); with none running, the next one
    ends `cancelled` (as upstream).

    202: cancellation requested (empty body).
    """
    compute.lfc.cancel_prewarm()
    return Response(b"", status_code=202)
