"""How the HTTP apps are served: listening sockets and uvicorn servers.

Both listeners run as tasks on compute_ctl's one event loop (`uvicorn.Server.serve`); signal
handling stays with the entry point, so uvicorn is told not to install its own handlers.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette


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


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the lifecycle owns SIGINT/SIGTERM/SIGQUIT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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
        ws="none",  # no WebSocket routes: skip loading a WebSocket implementation
    )
    return _Server(config)
