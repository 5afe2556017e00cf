"""`/readyz` and `/livez` in every status, through the real external app (no token needed even
when tokens are checked); the Kubernetes example's probes use exactly these paths."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from types import SimpleNamespace
from typing import Any, cast

import pytest
from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.app import EXTERNAL_ROUTES, external_app
from compute_ctl.http.compute_api import ComputeApi
from compute_ctl.state import ComputeState, ComputeStatus


class RefuseAll:
    """Every request refused: the probes must never be asked about."""

    def check(self, request: Request) -> Response | None:
        del request
        return Response(b"", status_code=401)


def get(status: ComputeStatus, path: str) -> tuple[int, Any]:
    state = ComputeState(status=status)
    node = cast(ComputeApi, SimpleNamespace(state=state))
    app = external_app(node, RefuseAll())
    sent: list[MutableMapping[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 3080),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body) if body else None


@pytest.mark.parametrize("status", list(ComputeStatus), ids=lambda s: s.value)
def test_ready_only_when_running(status: ComputeStatus) -> None:
    expected = 200 if status is ComputeStatus.RUNNING else 503
    assert get(status, "/readyz") == (expected, {"status": status.value})


@pytest.mark.parametrize("status", list(ComputeStatus), ids=lambda s: s.value)
def test_alive_in_every_status(status: ComputeStatus) -> None:
    assert get(status, "/livez") == (200, {"status": status.value})


def test_probe_routes_are_unauthenticated() -> None:
    routes = {route.path: route for route in EXTERNAL_ROUTES}
    assert not routes["/readyz"].auth
    assert not routes["/livez"].auth
    assert routes["/status"].auth
    assert get(ComputeStatus.RUNNING, "/status")[0] == 401  # the authorizer does refuse
