"""Reading a JSON request body into a model, with the rejections upstream's framework gives.

Status codes are kept as upstream answers them (415 without `Content-Type: application/json`,
400 for text that is not JSON, 422 for JSON of the wrong shape, 413 for a body that is too
large) and the message is lower-cased, as upstream does. The text is decoded by the spec
loader's `parse_json`, the one JSON decoder (nesting and lone-surrogate bounds included).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request

from compute_ctl.errors import SpecError
from compute_ctl.spec.load import (
    JsonTextError,
    parse_json,
    spec_error_from_validation,
    validate,
)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

MAX_BODY_BYTES = 64 * 1024 * 1024


class BodyError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message.lower()


def _is_json(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


def _shape_error(exc: SpecError) -> BodyError:
    return BodyError(
        422, f"Failed to deserialize the JSON body into the target type: {exc.one_line()}"
    )


async def read_json(request: Request) -> Any:
    """The request's JSON document, with upstream's rejections (415, 413, 400, 422)."""
    if not _is_json(request.headers.get("content-type", "")):
        raise BodyError(415, "Expected request with `Content-Type: application/json`")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyError(413, "Failed to buffer the request body: length limit exceeded")
        chunks.append(chunk)
    try:
        return parse_json(b"".join(chunks))
    except JsonTextError as exc:
        raise BodyError(
            400, f"Failed to parse the request body as JSON: {exc.problem} at {exc.field}"
        ) from None
    except SpecError as exc:
        raise _shape_error(exc) from None


async def read_json_body(request: Request, model: type[M]) -> M:
    """The body as `model` (a JSON object)."""
    data = await read_json(request)
    try:
        return validate(model, data)
    except SpecError as exc:
        raise _shape_error(exc) from None


async def read_json_as(request: Request, adapter: TypeAdapter[T]) -> T:
    """The body as any type pydantic knows (e.g. a JSON array of objects)."""
    data = await read_json(request)
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise _shape_error(spec_error_from_validation(exc)) from None
