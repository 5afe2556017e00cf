"""`POST /extensions` (internal): install or update one extension in one database."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.errors import CatalogError
from compute_ctl.http.body import BodyError, read_json_body
from compute_ctl.http.responses import catalog_failure, json_error, json_ok, unless_running
from compute_ctl.http.schemas import ExtensionInstallRequest, ExtensionInstallResult, name_error

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi


async def post_extensions(request: Request, compute: ComputeApi) -> Response:
    """Install `extension` at `version` in `database` (schema public), or update it.

    201: `{"extension", "version"}` (also when that version was already installed).
    400: the body is not JSON; or `extension`, `database` or `version` is not a name Postgres
    takes as it is (empty, longer than 63 bytes, a NUL character: `database: database name is
    empty`); or Postgres refused the name or version (`failed to install extension: extension
    "citext" has no installation script nor update path for version "9"`), or the database
    accepts no connections.
    404: the database does not exist, or the extension (or one it requires) is not installed
    on this compute (`failed to install extension: database "x" does not exist`).
    412: the compute is not running.
    415: no `Content-Type: application/json`.
    422: the body is not an ExtensionInstallRequest.
    500: Postgres could not be reached or failed otherwise (`failed to install extension:
    <error>`).
    """
    try:
        body = await read_json_body(request, ExtensionInstallRequest)
    except BodyError as exc:
        return json_error(exc.message, exc.status_code)
    if (problem := name_error(body)) is not None:
        return json_error(problem.one_line(), 400)
    if (refusal := unless_running(compute.state)) is not None:
        return refusal
    from compute_ctl.catalog import install_extension  # noqa: PLC0415 - off the start-up path

    try:
        version = await install_extension(
            compute.params.connstr, body.database, body.extension, body.version
        )
    except CatalogError as exc:
        return catalog_failure("failed to install extension", exc)
    result = ExtensionInstallResult(extension=body.extension, version=version)
    return json_ok(result.model_dump(mode="json"), 201)
