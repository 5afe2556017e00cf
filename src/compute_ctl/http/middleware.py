"""Request id and request logging for every route of both listeners.

A request without `x-request-id` gets a fresh UUIDv4; the response always carries the request's
id (404 and 405 answers included). Each request is logged at start and end in a form operators
grep for: `INFO request{method=POST uri=/configure ...}`.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("compute_ctl.http")

REQUEST_ID = "x-request-id"


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
        method = scope["method"]
        uri = scope["path"] + (
            "?" + scope["query_string"].decode() if scope["query_string"] else ""
        )
        span = (
            f"request{{method={method} uri={uri} version=HTTP/{scope.get('http_version', '1.1')}}}"
        )
        log.info("%s: %s %s request_id=%s", span, method, uri, request_id)
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
            log.info("%s: request_id=%s code=%d latency=%.3fms", span, request_id, status, latency)
