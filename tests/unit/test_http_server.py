"""The uvicorn server the API runs on: settings a client can observe."""

from __future__ import annotations

from starlette.applications import Starlette

from compute_ctl.http.server import KEEP_ALIVE_SECONDS, make_server


def test_idle_keep_alive_connections_outlive_uvicorns_default() -> None:
    # uvicorn closes idle connections after 5 s; pooled clients of upstream's server keep them
    # much longer, and a request racing the close would fail.
    server = make_server(Starlette())
    assert server.config.timeout_keep_alive == KEEP_ALIVE_SECONDS
    assert KEEP_ALIVE_SECONDS >= 60
    assert server.config.timeout_graceful_shutdown == 1
