"""`POST /terminate[?mode=fast|immediate]`: stop Postgres and end the compute.

In lakebase mode an `empty` compute has no Postgres to stop: as upstream, it answers 200 with
an empty body and the process exits 0 five seconds later (time for the answer to reach the
caller); its status stays `empty` meanwhile.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from compute_ctl import tracing
from compute_ctl.http.responses import json_ok, wrong_state
from compute_ctl.state import ComputeStatus, WrongStateError

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi

log = logging.getLogger(__name__)

EMPTY_LAKEBASE_EXIT_DELAY = 5.0

MODES = {
    "fast": ComputeStatus.TERMINATION_PENDING_FAST,
    "immediate": ComputeStatus.TERMINATION_PENDING_IMMEDIATE,
}


def _mode(request: Request) -> ComputeStatus | str:
    params = request.query_params
    if not request.url.query:
        return MODES["fast"]
    if "mode" not in params:
        return "Failed to deserialize query string: missing field `mode`"
    mode = params["mode"]
    if mode not in MODES:
        return (
            f"Failed to deserialize query string: unknown variant `{mode}`, "
            "expected `fast` or `immediate`"
        )
    return MODES[mode]


async def post_terminate(request: Request, compute: ComputeApi) -> Response:
    """Terminate: Postgres is stopped (fast: SIGINT, immediate: the same, shorter linger).

    200: `{"lsn": <last flush LSN or null>}` once terminated.
    200 (empty body): lakebase mode, `empty`: the process exits 0 five seconds later.
    201: `{"lsn": ...}` the compute was already terminated.
    400: a bad query string (plain text).
    412: the compute is neither `empty` nor `running` (nor terminated).
    """
    pending = _mode(request)
    if isinstance(pending, str):
        return PlainTextResponse(pending, status_code=400)
    state = compute.state
    if compute.params.lakebase_mode and state.status is ComputeStatus.EMPTY:
        log.info("terminating empty compute - will exit process")
        compute.exit_after(EMPTY_LAKEBASE_EXIT_DELAY, 0)
        return Response(status_code=200)
    try:
        if not await state.request_termination(pending):
            return json_ok({"lsn": _lsn(compute)}, 201)
    except WrongStateError as exc:
        return wrong_state(exc.status)
    with tracing.span("terminate", mode=request.query_params.get("mode", "fast")):
        compute.forward_termination(dev=False)
        await state.wait_for(ComputeStatus.TERMINATED)
    return json_ok({"lsn": _lsn(compute)})


def _lsn(compute: ComputeApi) -> str | None:
    lsn = compute.state.terminate_flush_lsn
    return str(lsn) if lsn is not None else None
