"""Route declarations: one table per listener, from which both the Starlette routes and the
OpenAPI document are made.

An `ApiRoute` names the method, the path, the handler, whether the JWT check guards it, the
model of its body and query string, and every answer it gives (status, description, schema).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from compute_ctl.http.auth import Authorizer, authorized
from compute_ctl.http.compute_api import ComputeApi
from compute_ctl.http.schemas import GenericError

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, ComputeApi], Awaitable[Response]]
"""A route's handler: the request, and the compute it may ask things of."""

JSON = "application/json"
TEXT = "text/plain"
PROMETHEUS = "text/plain; version=0.0.4"


@dataclass(frozen=True)
class Reply:
    """One answer of a route. `schema` is a pydantic model or a type pydantic understands;
    None for an empty body (or a text body described in words)."""

    status: int
    description: str
    schema: Any = None
    media_type: str | None = JSON


@dataclass(frozen=True)
class ApiRoute:
    method: str
    path: str
    handler: Handler
    replies: tuple[Reply, ...]
    auth: bool = False
    body: Any = None
    query: Any = None

    @property
    def summary(self) -> str:
        doc = self.handler.__doc__ or ""
        return doc.strip().split("\n", 1)[0]

    def route(self, compute: ComputeApi, authorizer: Authorizer) -> Route:
        """The Starlette route: the handler bound to `compute`, guarded when `auth`."""
        handler = self.handler

        async def endpoint(request: Request) -> Response:
            return await handler(request, compute)

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        guarded = authorized(endpoint, authorizer) if self.auth else endpoint
        return Route(self.path, guarded, methods=[self.method])


def error(status: int, description: str) -> Reply:
    return Reply(status, description, GenericError)


AUTH_REPLIES = (
    error(400, "no or malformed `Authorization: Bearer` header"),
    error(401, "the token does not verify, or an admin token lacks the `compute` audience"),
    error(403, "the token's compute_id is missing or not this compute's"),
)


def with_auth_errors(route: ApiRoute) -> tuple[Reply, ...]:
    """The route's answers, plus the JWT refusals when it is guarded."""
    if not route.auth:
        return route.replies
    known = {r.status for r in route.replies}
    return route.replies + tuple(r for r in AUTH_REPLIES if r.status not in known)
