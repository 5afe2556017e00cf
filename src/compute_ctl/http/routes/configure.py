"""`POST /configure`: deliver a spec to an empty compute, or a new one to a running compute."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl import tracing
from compute_ctl.errors import SpecError
from compute_ctl.http.body import BodyError, read_json_body
from compute_ctl.http.responses import json_error, json_ok, rust_debug_str, wrong_state
from compute_ctl.http.routes.status import status_body
from compute_ctl.spec.models import ConfigurationRequest
from compute_ctl.spec.resolve import resolve
from compute_ctl.state import ComputeStatus, WrongStateError

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


async def post_configure(request: Request, compute: ComputeApi) -> Response:
    """Store the spec and wait until it is applied.

    200: applied; the status object.
    400: the body is not JSON, or the spec cannot be resolved (`{"error": <problem>}`).
    412: the compute is neither `empty` nor `running`.
    415: the request has no `Content-Type: application/json`.
    422: the JSON does not have the ConfigurationRequest shape.
    500: the compute failed while applying it (`compute configuration failed: "<error>"`).
    """
    try:
        body = await read_json_body(request, ConfigurationRequest)
    except BodyError as exc:
        return json_error(exc.message, exc.status_code)
    try:
        pspec = resolve(body.spec)
    except SpecError as exc:
        return json_error(exc.problem, 400)
    state = compute.state
    # The start-up (or re-configure) this request causes is traced as its child, as upstream.
    tracing.hand_over("configure")
    try:
        outcome = await state.request_configure(pspec)
    except WrongStateError as exc:
        tracing.take_over("configure")
        return wrong_state(exc.status)
    if outcome is ComputeStatus.FAILED:
        detail = rust_debug_str(state.error if state.error else "unknown error")
        return json_error(f"compute configuration failed: {detail}", 500)
    return json_ok(status_body(state))
