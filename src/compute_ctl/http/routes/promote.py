"""`POST /promote`: make this replica the primary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from compute_ctl.errors import SpecError
from compute_ctl.http.body import BodyError, read_json_body
from compute_ctl.http.responses import json_error, json_ok
from compute_ctl.http.schemas import PromoteRequest
from compute_ctl.spec.resolve import resolve
from compute_ctl.spec.responses import PromoteFailed

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


async def post_promote(request: Request, compute: ComputeApi) -> Response:
    """Promote the replica with the new `spec` once it has replayed `wal_flush_lsn`.

    The first call starts the promotion; concurrent and later calls (whatever their body)
    wait for it and get the same outcome. A client that goes away does not stop it.

    200: `{"status": "completed", "lsn_wait_time_ms", "pg_promote_time_ms",
    "reconfigure_time_ms"}`.
    400: the spec cannot be resolved (`{"error": ...}`); a body that is not JSON is refused
    in plain text, as upstream's plain JSON extractor does.
    413: the body is too large (plain text).
    415: no `Content-Type: application/json` (plain text).
    422: the JSON is not `{"spec", "wal_flush_lsn"}` (plain text).
    500: `{"status": "failed", "error": ...}` (a PromoteState, not the generic error shape).
    """
    try:
        body = await read_json_body(request, PromoteRequest)
    except BodyError as exc:
        return PlainTextResponse(str(exc), status_code=exc.status_code)
    try:
        pspec = resolve(body.spec)
    except SpecError as exc:
        return json_error(exc.problem, 400)
    outcome = await compute.promote(pspec, body.wal_flush_lsn)
    if isinstance(outcome, PromoteFailed):
        return json_ok(outcome.model_dump(mode="json"), 500)
    return json_ok(outcome.model_dump(mode="json"))
