"""`compute-dev extension-gateway`: a stand-in for the extension gateway that computes started
with `--remote-ext-base-url` download remote extensions from.

`GET /<build tag>/<arch>/<vNN>/extensions/<extension>.tar.zst` answers the file of the same
relative path under DIR (200) or 404; any other path is 404. Path segments are letters,
digits, `-`, `_` and `.` (not starting with a dot), so nothing outside DIR can be named. A
file `<archive>.status` beside an archive (it need not exist itself) holding a number makes
the gateway answer that HTTP status instead, e.g. 503 to simulate an outage. Once listening it
prints one JSON line on stdout, `{"remote_ext_base_url": "http://127.0.0.1:PORT/"}` (the value
for compute_ctl's `--remote-ext-base-url`), and logs one line per request on stderr. It runs
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path

from compute_dev.standins.http_stub import (
    StubHandler,
    make_server,
    status_override,
)

# Named as before the split into packages, so log lines and their filters stay the same.
log = logging.getLogger("compute_dev.extension_gateway")

SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"
ARCHIVE_PATH = re.compile(rf"^/({SEGMENT})/({SEGMENT})/(v[0-9]+)/extensions/({SEGMENT}\.tar\.zst)$")
CHUNK = 256 * 1024

# Called with the request path before each answer (tests use it to count or hold requests).
RequestHook = Callable[[str], None]


def archive_file(root: Path, path: str) -> Path | None:
    """The file behind a request path, or None when the path is not an archive's."""
    match = ARCHIVE_PATH.match(path.split("?", 1)[0])
    if match is None:
        return None
    return root.joinpath(*match.group(1, 2, 3), "extensions", match.group(4))


def make_handler(root: Path, on_request: RequestHook | None) -> type[StubHandler]:
    class Handler(StubHandler):
        def do_GET(self) -> None:
            if on_request is not None:
                on_request(self.path)
            target = archive_file(root, self.path)
            if target is None:
                self._send(HTTPStatus.NOT_FOUND)
                return
            status = status_override(target)
            if status is not None:
                self._send(status)
                return
            try:
                archive = target.open("rb")
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                self._send(HTTPStatus.NOT_FOUND)
                return
            with archive:
                size = archive.seek(0, 2)
                archive.seek(0)
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", self.content_type)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                while chunk := archive.read(CHUNK):
                    self.wfile.write(chunk)

    return Handler


def serve(
    root: Path, host: str, port: int, on_request: RequestHook | None = None
) -> ThreadingHTTPServer:
    """A server ready to `serve_forever` (in the caller's thread of choice)."""
    return make_server(host, port, make_handler(root, on_request))


def base_url(host: str, server: ThreadingHTTPServer) -> str:
    return f"http://{host}:{server.server_address[1]}/"
