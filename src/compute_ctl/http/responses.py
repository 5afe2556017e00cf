"""Response conventions shared by every route: JSON bodies and `{"error": ...}` failures."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.responses import Response

# The text forms live in a base module (the remote-extension download uses them too); routes
# keep importing them from here.
from compute_ctl.errors import CatalogError, CatalogRefusalError
from compute_ctl.formats import rfc3339_offset, rfc3339_z, rust_debug_str
from compute_ctl.http.logtext import one_line
from compute_ctl.state import ComputeState, ComputeStatus, WrongStateError

log = logging.getLogger(__name__)


class JsonResponse(Response):
    """Compact JSON, `Content-Type: application/json`."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_ok(value: Any, status_code: int = 200) -> JsonResponse:
    return JsonResponse(value, status_code=status_code)


def json_error(message: str, status_code: int) -> JsonResponse:
    """Upstream's error shape; every error answer is also logged (as one line: a message may
    quote what the client sent)."""
    log.error("%s", one_line(message))
    return JsonResponse({"error": message}, status_code=status_code)


def catalog_failure(what: str, exc: CatalogError) -> JsonResponse:
    """`<what>: <Postgres' message>`: 404 when the request named something that does not
    exist, 400 when Postgres refused a name or value of the request, else 500."""
    status = 500
    if isinstance(exc, CatalogRefusalError):
        status = 404 if exc.missing else 400
    return json_error(f"{what}: {exc.message}", status)


def wrong_state(status: ComputeStatus) -> JsonResponse:
    """412 `invalid compute status: <display form>`, upstream's answer for a wrong state."""
    return json_error(str(WrongStateError(status)), 412)


def unless_running(state: ComputeState) -> JsonResponse | None:
    """The 412 answer of routes that need a running compute, or None when it is running."""
    status = state.status
    return None if status is ComputeStatus.RUNNING else wrong_state(status)


__all__ = [
    "JsonResponse",
    "catalog_failure",
    "json_error",
    "json_ok",
    "rfc3339_offset",
    "rfc3339_z",
    "rust_debug_str",
    "unless_running",
    "wrong_state",
]
