"""`POST /failpoints` (internal): configure failpoints, in testing builds only.

Upstream serves the route only in its testing builds, where it configures the `fail` crate's
failpoints; a build compiled without failpoint support answers 412. Here the testing switch
(`COMPUTE_CTL_TESTING`, docs/deploying.md) plays the part of the testing build: with it, the
entries are applied in order (`compute_ctl/failpoints.py`); without it, every well-formed body
gets that 412. The body is checked first either way, as upstream's JSON extractor does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.failpoints import FailpointError
from compute_ctl.http.body import BodyError, read_json_as
from compute_ctl.http.responses import json_error
from compute_ctl.http.schemas import ConfigureFailpointsRequest

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


NOT_SUPPORTED = "Cannot manage failpoints because neon was compiled without failpoints support"
_REQUEST = TypeAdapter(ConfigureFailpointsRequest)


async def post_failpoints(request: Request, compute: ComputeApi) -> Response:
    """Configure failpoints (with the testing switch only).

    200: the failpoints are configured (empty body).
    400: the body is not JSON, or an entry's actions cannot be parsed (entries before it are
    applied, as upstream).
    412: for a well-formed body without the testing switch.
    413: the body is too large.
    415: no `Content-Type: application/json`.
    422: the body is not a list of `{"name", "actions"}`.
    """
    try:
        entries = await read_json_as(request, _REQUEST)
    except BodyError as exc:
        return json_error(exc.message, exc.status_code)
    failpoints = compute.params.failpoints
    if not failpoints.enabled:
        return json_error(NOT_SUPPORTED, 412)
    for entry in entries:
        try:
            failpoints.configure(entry.name, entry.actions)
        except FailpointError as exc:
            return json_error(f"failed to configure failpoints: {exc}", 400)
    return Response(status_code=200)
