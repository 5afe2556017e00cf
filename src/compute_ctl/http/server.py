"""How the HTTP apps are served: listening sockets and uvicorn servers.

Both listeners run as tasks on compute_ctl's one event loop (`uvicorn.Server.serve`); signal
handling stays with the entry point, so uvicorn is told not to install its own handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from compute_ctl.http.protocol import BoundedH11Protocol


def bind_socket(port: int, host: str | None = None) -> socket.socket:
    """Listen on all interfaces like upstream (`[::]`, dual-stack), or on IPv4 only where the
    machine has no IPv6.

    The protocol is IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets
    that say TCP, and without it an answer written in two parts (head, body) waits for the
    client's delayed ACK, 40 ms per request on Linux.
    """
    if host is None:
        with contextlib.suppress(OSError):
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("::", port))
            except OSError:
                sock.close()
                raise
            sock.listen(1024)
            sock.setblocking(False)
            return sock
        host = "0.0.0.0"  # noqa: S104 - upstream listens on every interface
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


DATE_REFRESH_SECONDS = 1.0
"""How often the cached `Date` header is renewed (uvicorn's own resolution)."""


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (the entry point owns SIGINT/SIGTERM/SIGQUIT) and
    without its 100 ms poll: uvicorn's main loop wakes ten times a second to see whether it
    should exit, which is most of an idle compute's CPU; this one renews the `Date` header
    once a second and wakes at once when asked to exit."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._exit_requested = asyncio.Event()
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        return self._exit_requested.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit_requested.set()
        else:
            self._exit_requested.clear()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        # on_tick(0) renews the Date header and says whether to exit.
        while not await self.on_tick(0):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_requested.wait(), DATE_REFRESH_SECONDS)


KEEP_ALIVE_SECONDS = 75
"""How long an idle keep-alive connection stays open. uvicorn's default (5 s) would close
connections that clients of upstream's server (which does not time them out) keep in their
pools, and a request sent just as the server closes its connection fails."""


def make_server(app: Starlette) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        http=BoundedH11Protocol,  # request-head time bound, HTTP/1.x only
        ws="none",  # no WebSocket routes: skip loading a WebSocket implementation
    )
    return _Server(config)
