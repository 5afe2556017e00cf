"""Authorization of the external API's protected routes.

The seam is one small protocol: a route guarded by `authorized(...)` asks the app's authorizer
to judge the request and answers with its refusal if there is one. A compute started from a bare
spec (`-S`) has no keys and serves the routes openly (compute_ctl warns once at start-up).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

Endpoint = Callable[[Request], Awaitable[Response]]


class Authorizer(Protocol):
    def check(self, request: Request) -> Response | None:
        """None when the request may proceed, else the answer that refuses it."""


class AllowAll:
    """No authentication (a bare spec carries no keys)."""

    def check(self, request: Request) -> Response | None:
        del request
        return None


def authorized(endpoint: Endpoint, authorizer: Authorizer) -> Endpoint:
    """Guard a route with `authorizer`."""

    async def guarded(request: Request) -> Response:
        refusal = authorizer.check(request)
        if refusal is not None:
            return refusal
        return await endpoint(request)

    guarded.__name__ = endpoint.__name__
    guarded.__doc__ = endpoint.__doc__
    return guarded
