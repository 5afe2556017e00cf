"""`POST /failpoints` (internal): configure failpoints; this build has none.

Upstream serves the route only in its testing builds, where it configures the `fail` crate's
failpoints; a testing build compiled without failpoint support answers 412. compute_ctl has
no failpoints, so it always answers that 412, after checking the body as upstream's JSON
extractor does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.body import BodyError, read_json_as
from compute_ctl.http.responses import json_error
from compute_ctl.http.schemas import ConfigureFailpointsRequest

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


NOT_SUPPORTED = "Cannot manage failpoints because neon was compiled without failpoints support"
_REQUEST = TypeAdapter(ConfigureFailpointsRequest)


async def post_failpoints(request: Request, compute: ComputeApi) -> Response:
    """Configure failpoints: not supported by this build.

    400: the body is not JSON.
    412: always, for a well-formed body: this build has no failpoints.
    413: the body is too large.
    415: no `Content-Type: application/json`.
    422: the body is not a list of `{"name", "actions"}`.
    """
    try:
        await read_json_as(request, _REQUEST)
    except BodyError as exc:
        return json_error(exc.message, exc.status_code)
    return json_error(NOT_SUPPORTED, 412)
