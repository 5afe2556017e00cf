"""`GET /openapi.json`: the OpenAPI document of the listener that serves it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.openapi import openapi_document
from compute_ctl.http.responses import json_ok

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


async def get_openapi(request: Request, compute: ComputeApi) -> Response:
    """This listener's OpenAPI document, generated from its routes and models.

    200: the OpenAPI 3.1 document.
    """
    del compute  # the document depends on the listener only
    state = request.app.state
    document = getattr(state, "openapi", None)
    if document is None:
        document = openapi_document(state.api_routes, state.api_title)
        state.openapi = document
    return json_ok(document)
