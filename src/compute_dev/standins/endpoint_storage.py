"""`compute-dev endpoint-storage`: a stand-in for endpoint storage, where computes keep their
LFC state.

Objects live in a directory, one file per object path: `PUT /<tenant>/<timeline>/<endpoint>/<key>`
stores the body in `DIR/<tenant>/<timeline>/<endpoint>/<key>` (200), `GET` answers it (200) or
404, `DELETE` removes it (200). Paths must have exactly four segments of letters, digits, `-`,
`_` and `.` (and not start with a dot); anything else is 404. A test or an operator can change
the answers while computes run, per object, with files beside the object:

- `<object>.status` holding a number: answer that HTTP status (empty body) instead;
- `<object>.hold` (any content): while it exists, requests for the object wait (at most
  10 minutes), so that a request can be caught in flight and then released.

With `--token`, a request without `Authorization: Bearer <token>` gets 401 (the real service
checks a JWT; a fixed token is enough here). Once listening it prints one JSON line on stdout,
`{"endpoint_storage_addr": "127.0.0.1:PORT"}` (the spec's `endpoint_storage_addr`: no scheme),
and logs one line per request on stderr (never the token). It runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import re
import time
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path

from compute_dev.standins.http_stub import (
    StubHandler,
    make_server,
    status_override,
)

# Named as before the split into packages, so log lines and their filters stay the same.
log = logging.getLogger("compute_dev.endpoint_storage")

SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"
OBJECT_PATH = re.compile(rf"^/({SEGMENT})/({SEGMENT})/({SEGMENT})/({SEGMENT})$")
MAX_OBJECT_BYTES = 256 * 1024 * 1024
MAX_HOLD = 600.0
HOLD_POLL = 0.02


def object_file(root: Path, path: str) -> Path | None:
    """The file behind a request path, or None when the path is not an object's."""
    match = OBJECT_PATH.match(path.split("?", 1)[0])
    if match is None:
        return None
    return root.joinpath(*match.groups())


def _hold(target: Path) -> None:
    """Wait while `<object>.hold` exists (bounded)."""
    hold = target.with_name(target.name + ".hold")
    deadline = time.monotonic() + MAX_HOLD
    while hold.exists() and time.monotonic() < deadline:
        time.sleep(HOLD_POLL)


def make_handler(root: Path, token: str | None) -> type[StubHandler]:
    class Handler(StubHandler):
        def _target(self) -> Path | None:
            """The object, after the token check and the faults; None when answered."""
            target = object_file(root, self.path)
            if target is None:
                self._discard_body()
                self._send(HTTPStatus.NOT_FOUND)
                return None
            if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                self._discard_body()
                self._send(HTTPStatus.UNAUTHORIZED)
                return None
            _hold(target)
            status = status_override(target)
            if status is not None:
                self._discard_body()
                self._send(status)
                return None
            return target

        def do_GET(self) -> None:
            target = self._target()
            if target is None:
                return
            try:
                body = target.read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                self._send(HTTPStatus.NOT_FOUND)
                return
            self._send(HTTPStatus.OK, body)

        def do_PUT(self) -> None:
            target = self._target()
            if target is None:
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_OBJECT_BYTES:
                self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                self.close_connection = True
                return
            body = self.rfile.read(length)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(body)
            tmp.replace(target)  # readers never see a half-written object
            self._send(HTTPStatus.OK)

        def do_DELETE(self) -> None:
            target = self._target()
            if target is None:
                return
            target.unlink(missing_ok=True)
            self._send(HTTPStatus.OK)

        def _discard_body(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if 0 < length <= MAX_OBJECT_BYTES:
                self.rfile.read(length)
            elif length:
                self.close_connection = True

    return Handler


def serve(root: Path, host: str, port: int, token: str | None) -> ThreadingHTTPServer:
    """A server ready to `serve_forever` (in the caller's thread of choice)."""
    return make_server(host, port, make_handler(root, token))
