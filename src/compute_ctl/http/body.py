"""Reading a JSON request body into a model, with the rejections upstream's framework gives.

Status codes are kept as upstream answers them (415 without `Content-Type: application/json`,
400 for text that is not JSON, 422 for JSON of the wrong shape, 413 for a body that is too
large) and the message is lower-cased, as upstream does.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel
from starlette.requests import Request

from compute_ctl.errors import SpecError
from compute_ctl.spec.load import parse_json, validate

M = TypeVar("M", bound=BaseModel)

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


async def read_json_body(request: Request, model: type[M]) -> M:
    if not _is_json(request.headers.get("content-type", "")):
        raise BodyError(415, "Expected request with `Content-Type: application/json`")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyError(413, "Failed to buffer the request body: length limit exceeded")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        data = parse_json(raw)
    except SpecError as exc:
        if exc.field.startswith(("line ", "byte ")) or exc.field == "document":
            raise BodyError(
                400, f"Failed to parse the request body as JSON: {exc.problem} at {exc.field}"
            ) from None
        raise BodyError(
            422, f"Failed to deserialize the JSON body into the target type: {exc.one_line()}"
        ) from None
    try:
        return validate(model, data)
    except SpecError as exc:
        raise BodyError(
            422, f"Failed to deserialize the JSON body into the target type: {exc.one_line()}"
        ) from None
