"""`POST /failpoints` (internal): configure failpoints; this build has none.

Upstream serves the route only in its testing builds, where it configures the `fail` crate's
failpoints; a testing build compiled without failpoint support answers 412. compute_ctl has
no failpoints, so it always answers that 412, after checking the body as upstream's JSON
extractor does.
"""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.errors import SpecError
from compute_ctl.http.body import MAX_BODY_BYTES, BodyError
from compute_ctl.http.responses import json_error
from compute_ctl.http.schemas import ConfigureFailpointsRequest
from compute_ctl.spec.load import parse_json, spec_error_from_validation

NOT_SUPPORTED = "Cannot manage failpoints because neon was compiled without failpoints support"
_REQUEST = TypeAdapter(ConfigureFailpointsRequest)


async def _read_body(request: Request) -> ConfigureFailpointsRequest:
    """The body as a list of FailpointConfig, with the project's body rejections."""
    mime = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not (
        mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))
    ):
        raise BodyError(415, "Expected request with `Content-Type: application/json`")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyError(413, "Failed to buffer the request body: length limit exceeded")
        chunks.append(chunk)
    try:
        data = parse_json(b"".join(chunks))
    except SpecError as exc:
        if exc.field.startswith("line "):
            raise BodyError(
                400, f"Failed to parse the request body as JSON: {exc.problem} at {exc.field}"
            ) from None
        data_error = exc.one_line()
    else:
        try:
            return _REQUEST.validate_python(data)
        except ValidationError as exc:
            data_error = spec_error_from_validation(exc).one_line()
    raise BodyError(422, f"Failed to deserialize the JSON body into the target type: {data_error}")


async def post_failpoints(request: Request) -> Response:
    """Configure failpoints: not supported by this build.

    400: the body is not JSON.
    412: always, for a well-formed body: this build has no failpoints.
    413: the body is too large.
    415: no `Content-Type: application/json`.
    422: the body is not a list of `{"name", "actions"}`.
    """
    try:
        await _read_body(request)
    except BodyError as exc:
        return json_error(exc.message, exc.status_code)
    return json_error(NOT_SUPPORTED, 412)
