"""The two Starlette apps (external and internal listener) and how they are served.

Both listeners run as tasks on compute_ctl's one event loop (`uvicorn.Server.serve`); signal
handling stays with the lifecycle, so uvicorn is told not to install its own handlers.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from compute_ctl.http.auth import AllowAll, Authorizer, authorized
from compute_ctl.http.middleware import RequestIdMiddleware
from compute_ctl.http.routes.configure import post_configure
from compute_ctl.http.routes.metrics import get_metrics
from compute_ctl.http.routes.status import get_metrics_json, get_status
from compute_ctl.http.routes.terminate import post_terminate

if TYPE_CHECKING:
    from compute_ctl.compute.node import ComputeNode

log = logging.getLogger(__name__)


async def _empty_error(request: Request, exc: Exception) -> Response:
    """Unknown paths (404) and wrong methods (405) get an empty body, as upstream."""
    del request
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return Response(b"", status_code=status)


def _app(routes: list[Route], node: ComputeNode, authorizer: Authorizer) -> Starlette:
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={404: _empty_error, 405: _empty_error},
    )
    app.state.compute = node
    app.state.authorizer = authorizer
    return app


def external_app(node: ComputeNode, authorizer: Authorizer | None = None) -> Starlette:
    """Control plane, scrapers and tests: JWT-authorized except /metrics."""
    routes = [
        Route("/status", authorized(get_status), methods=["GET"]),
        Route("/metrics.json", authorized(get_metrics_json), methods=["GET"]),
        Route("/metrics", get_metrics, methods=["GET"]),
        Route("/configure", authorized(post_configure), methods=["POST"]),
        Route("/terminate", authorized(post_terminate), methods=["POST"]),
    ]
    return _app(routes, node, authorizer or AllowAll())


def internal_app(node: ComputeNode) -> Starlette:
    """Postgres' extension, local_proxy and tests: no authentication."""
    return _app([], node, AllowAll())


def bind_socket(port: int, host: str | None = None) -> socket.socket:
    """Listen on all interfaces like upstream (`[::]`, dual-stack), or on IPv4 only where the
    machine has no IPv6."""
    if host is None:
        with contextlib.suppress(OSError):
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
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
    sock = socket.socket(family, socket.SOCK_STREAM)
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


def make_server(app: Starlette) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    return _Server(config)
