"""A server span for every HTTP request of both listeners, when traces are exported.

The span continues the caller's W3C trace context (`traceparent`/`tracestate` headers) and
carries the request id (`x-request-id`, set by `http/middleware.py`, which runs outside this
one) as an attribute, with the HTTP semantic-convention attributes. Whether traces are
exported or not, the lines logged while the request is served are prefixed with upstream's
`request{method=… uri=… version=…}` span, and the request id is made current for JSON lines.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from compute_ctl import tracing
from compute_ctl.http.logtext import printable
from compute_ctl.http.middleware import request_label

TRACE_HEADERS = (b"traceparent", b"tracestate")
EXTENSION_SERVER = "/extension_server/"


def _route(path: str) -> str:
    """The span name's route: the path, with the file name of an extension download folded
    into the route's template."""
    if path.startswith(EXTENSION_SERVER):
        return EXTENSION_SERVER + "{filename}"
    return path


class TraceMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier: dict[str, str] = {}
        request_id = ""
        for key, value in scope["headers"]:
            if key in TRACE_HEADERS:
                carrier[key.decode()] = value.decode("latin-1")
            elif key == b"x-request-id":
                request_id = value.decode("latin-1")
        # The same escaped, redacted label as the request line: no line forged through it.
        token = tracing.request_id.set(printable(request_id))
        try:
            with tracing.log_scope(request_label(scope)):
                if tracing.active():
                    await self._traced(scope, receive, send, carrier, request_id)
                else:
                    await self.app(scope, receive, send)
        finally:
            tracing.request_id.reset(token)

    async def _traced(
        self, scope: Scope, receive: Receive, send: Send, carrier: dict[str, str], request_id: str
    ) -> None:
        method, path = scope["method"], scope["path"]
        with tracing.span(
            f"{method} {_route(path)}",
            parent=tracing.parent_from_headers(carrier) if carrier else None,
            server=True,
            prefix=False,  # http/middleware.py prints upstream's `request{...}` itself
            request_id=request_id,
            **{
                "http.request.method": method,
                "url.path": path,
                "url.scheme": scope.get("scheme", "http"),
                "network.protocol.version": scope.get("http_version", "1.1"),
            },
        ) as current:

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    current.set_attribute("http.response.status_code", message["status"])
                await send(message)

            await self.app(scope, receive, send_traced)
