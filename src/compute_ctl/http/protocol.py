"""The HTTP/1 connection handling both listeners use: uvicorn's h11 protocol with two bounds.

- A request head must arrive whole within `HEADER_TIMEOUT_SECONDS` of its first byte. Without
  it a client that sends half a request line or half its headers and stops holds its connection
  (and its slot) forever; trickling a byte at a time does not extend the bound. A connection
  that has sent nothing yet is closed after the idle keep-alive time, as between requests.
- Only HTTP/1.0 and HTTP/1.1 are served. h11 parses any `HTTP/d.d` on the request line and
  would answer `HTTP/9.9` like `HTTP/1.1`; such a request gets `505 HTTP Version Not
  Supported` (what upstream's server answers) with a JSON error body, and the connection is
  closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from compute_ctl.http.responses import JsonResponse

HEADER_TIMEOUT_SECONDS = 20.0
"""How long a request head (request line and headers) may take from its first byte."""

SUPPORTED_VERSIONS = frozenset({"1.0", "1.1"})


def _refuse_unsupported_versions(app: Any) -> Any:
    """The ASGI app, answering 505 to a request of an HTTP version we do not speak."""

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("http_version") not in SUPPORTED_VERSIONS:
            response = JsonResponse(
                {"error": "http version not supported"},
                status_code=505,
                headers={"connection": "close"},
            )
            await response(scope, receive, send)
            return
        await app(scope, receive, send)

    return guarded


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a bound on request-head time and a version check."""

    header_timeout: float = HEADER_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = _refuse_unsupported_versions(self.app)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Nothing sent yet: idle, as a kept-alive connection between requests.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()  # the head is complete (or the connection is done)
        elif self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request already buffered may be incomplete: it is bounded too.
        pending = self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])
        if pending and self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info("closing a connection whose request head did not arrive in time")
            self.transport.close()
