"""`POST /grants` (internal): grant schema privileges to a role."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.errors import CatalogError
from compute_ctl.http.body import BodyError, read_json_body
from compute_ctl.http.responses import catalog_failure, json_error, json_ok, unless_running
from compute_ctl.http.schemas import SetRoleGrantsRequest, SetRoleGrantsResponse, name_error

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


async def post_grants(request: Request, compute: ComputeApi) -> Response:
    """Grant the privileges the role does not have yet, in one statement.

    201: the request echoed (`{"database", "schema", "privileges", "role"}`).
    400: the body is not JSON; or `database`, `schema` or `role` is not a name Postgres takes
    as it is (empty, longer than 63 bytes, a NUL character: `role: role name is empty`); or
    Postgres refused a name (a reserved role name), or the database accepts no connections.
    404: the database, the schema or the role does not exist (`failed to grant role privileges
    to the schema: role "x" does not exist`).
    412: the compute is not running.
    415: no `Content-Type: application/json`.
    422: the body has the wrong shape, or a privilege is not one of the accepted names.
    500: Postgres could not be reached or failed otherwise (`failed to grant role privileges
    to the schema: <error>`).
    """
    try:
        body = await read_json_body(request, SetRoleGrantsRequest)
    except BodyError as exc:
        return json_error(exc.message, exc.status_code)
    if (problem := name_error(body)) is not None:
        return json_error(problem.one_line(), 400)
    if (refusal := unless_running(compute.state)) is not None:
        return refusal
    from compute_ctl.catalog import set_role_grants  # noqa: PLC0415 - off the start-up path

    try:
        await set_role_grants(
            compute.params.connstr, body.database, body.schema_, body.privileges, body.role
        )
    except CatalogError as exc:
        return catalog_failure("failed to grant role privileges to the schema", exc)
    answer = SetRoleGrantsResponse(
        database=body.database, schema_=body.schema_, privileges=body.privileges, role=body.role
    )
    return json_ok(answer.model_dump(mode="json", by_alias=True), 201)
