"""`POST /extension_server/{filename}[?is_library=true]` (internal): Postgres' `neon`
extension asks for an extension (or a library) it cannot find locally; the archive is fetched
from the extension gateway and installed before the answer."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.errors import ComputeError
from compute_ctl.http.responses import JsonResponse, json_error, wrong_state
from compute_ctl.remote_ext.errors import DownloadError, ExtensionNotFoundError
from compute_ctl.remote_ext.manager import NOT_CONFIGURED

if TYPE_CHECKING:
    from compute_ctl.http.compute_api import ComputeApi

FIELD = "is_library"
NO_REMOTE_EXTENSIONS = "information about remote extensions is unavailable"
DOWNLOAD_FAILED = "Failed to download a remote file"


class AnyPathConvertor(Convertor[str]):
    """Starlette's `path` convertor without its blind spot: `.` does not match a newline, so a
    file name holding a (percent-encoded) newline matched no route and got an empty 404
    instead of this route's answer. Upstream's catch-all segment takes any characters."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anypath", AnyPathConvertor())


def is_library(query: str) -> bool | JsonResponse:
    """The optional `is_library` flag (default false), or the 400 answer for a bad one."""
    values = [value for key, value in parse_qsl(query, keep_blank_values=True) if key == FIELD]
    if not values:
        return False
    if len(values) > 1:
        problem = f"duplicate field `{FIELD}`"
    elif values[0] in ("true", "false"):
        return values[0] == "true"
    else:
        problem = "provided string was not `true` or `false`"
    return json_error(f"failed to deserialize query string: {problem}", 400)


async def post_extension_server(request: Request, compute: ComputeApi) -> Response:
    """Download and install a remote extension's archive (`filename` may contain `/`).

    200: installed, now or before (empty body).
    400: `is_library` is not `true` or `false`.
    404: no file name (empty body), or `extension X is not found`, `library X is not found`,
    `real_ext_name X is not found`.
    409: the spec has no `remote_extensions`.
    412: no `--remote-ext-base-url` (`remote storage is not configured`), or no spec yet
    (`invalid compute status: empty`).
    500: the download or the installation failed (`Failed to download a remote file: ...`).
    """
    library = is_library(request.url.query)
    if isinstance(library, JsonResponse):
        return library
    filename: str = request.path_params["filename"]
    if not filename:
        return Response(b"", status_code=404)
    manager = compute.remote_ext
    if not manager.configured:
        return json_error(NOT_CONFIGURED, 412)
    pspec = compute.state.pspec
    if pspec is None:
        return wrong_state(compute.state.status)
    remote = pspec.spec.remote_extensions
    if remote is None:
        return json_error(NO_REMOTE_EXTENSIONS, 409)
    try:
        archive = await manager.resolve(remote, filename, is_library=library)
    except ExtensionNotFoundError as exc:
        return json_error(str(exc), 404)
    except ComputeError as exc:  # pg_config could not be asked
        return json_error(f"{DOWNLOAD_FAILED}: {exc}", 500)
    try:
        await manager.download(archive)
    except DownloadError as exc:
        return json_error(f"{DOWNLOAD_FAILED}: {exc}", 500)
    return Response(b"", status_code=200)
