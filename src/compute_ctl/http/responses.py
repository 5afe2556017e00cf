"""Response conventions shared by every route: JSON bodies, `{"error": ...}` failures, and
upstream's timestamp formats."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from starlette.responses import Response

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
    """Upstream's error shape; every error answer is also logged."""
    log.error("%s", message)
    return JsonResponse({"error": message}, status_code=status_code)


def wrong_state(status: ComputeStatus) -> JsonResponse:
    """412 `invalid compute status: <display form>`, upstream's answer for a wrong state."""
    return json_error(str(WrongStateError(status)), 412)


def unless_running(state: ComputeState) -> JsonResponse | None:
    """The 412 answer of routes that need a running compute, or None when it is running."""
    status = state.status
    return None if status is ComputeStatus.RUNNING else wrong_state(status)


def _fraction(dt: datetime) -> str:
    # chrono prints 0, 3, 6 or 9 fractional digits, as few as represent the value exactly.
    micros = dt.microsecond
    if micros == 0:
        return ""
    if micros % 1000 == 0:
        return f".{micros // 1000:03d}"
    return f".{micros:06d}"


def rfc3339_z(dt: datetime) -> str:
    """`2026-03-25T09:27:03.512873Z` (the form of `start_time`)."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + _fraction(dt) + "Z"


def rfc3339_offset(dt: datetime) -> str:
    """`2026-03-25T09:31:10.004312+00:00` (the form of `last_active`)."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + _fraction(dt) + "+00:00"


_DEBUG_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def rust_debug_str(text: str) -> str:
    """`text` quoted as Rust's `{:?}` prints a string: printable characters (any script) kept,
    quotes and backslashes escaped, other control characters as `\\u{1b}`."""
    out = []
    for char in text:
        if char in _DEBUG_ESCAPES:
            out.append(_DEBUG_ESCAPES[char])
        elif char.isprintable() or char == " ":
            out.append(char)
        else:
            out.append(f"\\u{{{ord(char):x}}}")
    return '"' + "".join(out) + '"'
