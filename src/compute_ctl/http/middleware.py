"""Request id and request logging for every route of both listeners.

A request without `x-request-id` gets a fresh UUIDv4; the response always carries the request's
id (404 and 405 answers included). Each request is logged at start and end in a form operators
grep for: `INFO request{method=POST uri=/configure ...}`.

What a client sent is logged as it was sent, never as decoded: the path percent-encoded as on
the request line (as upstream logs the URI), so `%0a` cannot start a forged log line nor `%00`
write a NUL; any other unprintable character (and the backslash) is written as an escape. In
the query string the values of secret-looking keys (`token`, `access_token`, `jwt`,
`password`…) are replaced by `<redacted>`: a token sent as `?token=` never reaches the log.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from urllib.parse import unquote_plus

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from compute_ctl.http.logtext import printable

log = logging.getLogger("compute_ctl.http")

REQUEST_ID = "x-request-id"

REDACTED = "<redacted>"
_SECRET_KEY = re.compile(
    r"token|jwt|passw|pwd|secret|auth|api_?key|credential|signature|session", re.IGNORECASE
)


def redact_query(query: str) -> str:
    """The query string with the value of every secret-looking key replaced."""
    parts = []
    for part in query.split("&"):
        key, sep, _ = part.partition("=")
        secret = sep and _SECRET_KEY.search(unquote_plus(key))
        parts.append(f"{key}={REDACTED}" if secret else part)
    return "&".join(parts)


def logged_uri(scope: Scope) -> str:
    """The request target for the log: raw path, redacted query, unprintables escaped."""
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = scope["query_string"].decode("latin-1")
    return printable(path + ("?" + redact_query(query) if query else ""))


def request_label(scope: Scope) -> str:
    """Upstream's `request{method=… uri=… version=…}` span label, escaped and redacted: what
    both the request lines and the lines logged while it is served start with."""
    method = printable(scope["method"])
    version = printable(scope.get("http_version", "1.1"))
    return f"request{{method={method} uri={logged_uri(scope)} version=HTTP/{version}}}"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw_id = headers.get(REQUEST_ID.encode())
        request_id = raw_id.decode("latin-1") if raw_id else str(uuid.uuid4())
        if raw_id is None:
            scope["headers"] = [*scope["headers"], (REQUEST_ID.encode(), request_id.encode())]
        span = request_label(scope)
        method, uri = printable(scope["method"]), logged_uri(scope)
        logged_id = printable(request_id)
        log.info("%s: %s %s request_id=%s", span, method, uri, logged_id)
        started = time.monotonic()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            latency = (time.monotonic() - started) * 1000
            log.info("%s: request_id=%s code=%d latency=%.3fms", span, logged_id, status, latency)
