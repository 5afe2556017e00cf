"""`GET /dbs_and_roles`: the roles and databases Postgres has now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.errors import PostgresError
from compute_ctl.http.responses import json_error, json_ok

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


async def get_dbs_and_roles(request: Request, compute: ComputeApi) -> Response:
    """Every role (with its stored password verifier) and every database.

    200: `{"roles": [...], "databases": [...]}` (database order unspecified).
    500: Postgres could not be reached or read.
    """
    from compute_ctl.catalog.inspect import list_dbs_and_roles  # noqa: PLC0415 - off the start-up path

    try:
        result = await list_dbs_and_roles(compute.params.connstr)
    except PostgresError as exc:
        return json_error(str(exc), 500)
    return json_ok(result.model_dump(mode="json"))
