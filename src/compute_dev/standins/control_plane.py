"""`compute-dev control-plane`: a stand-in for the control plane's spec endpoint.

It answers `GET /compute/api/v2/computes/{id}/spec` from the file `DIR/{id}.json`, read anew
at every request so that a test or an operator can change the spec (or its answer) while a
compute runs:

- a file holding a ControlPlaneConfigResponse (`{"status": ..., "spec": ...,
  "compute_ctl_config": ...}`) is served as it is;
- a file holding a ComputeConfig (no `status`) is served with `status` `attached` when it has
  a spec and `empty` when it has none;
- a file `DIR/{id}.status` holding a number makes the answer that HTTP status instead (with
  an empty body), e.g. 503 to exercise the client's retries;
- no file: 404.

With `--token`, a request without `Authorization: Bearer <token>` gets 401. Once listening it
prints one JSON line on stdout with its URL; one log line per request goes to stderr (the
token is never printed). It runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from compute_dev.standins.http_stub import (
    StubHandler,
    make_server,
)

# Named as before the split into packages, so log lines and their filters stay the same.
log = logging.getLogger("compute_dev.control_plane")

SPEC_PATH = re.compile(r"^/compute/api/v2/computes/([^/]+)/spec$")
COMPUTE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def answer_for(spec_dir: Path, compute_id: str) -> tuple[int, bytes]:
    """(status, body) the stand-in gives for one compute."""
    if not COMPUTE_ID.match(compute_id) or compute_id.startswith("."):
        return HTTPStatus.NOT_FOUND, b""
    status_file = spec_dir / f"{compute_id}.status"
    if status_file.exists():
        try:
            return int(status_file.read_text().strip()), b""
        except ValueError:
            return HTTPStatus.INTERNAL_SERVER_ERROR, b""
    spec_file = spec_dir / f"{compute_id}.json"
    try:
        raw = spec_file.read_bytes()
    except FileNotFoundError:
        return HTTPStatus.NOT_FOUND, b""
    try:
        document: Any = json.loads(raw)
    except ValueError:
        return HTTPStatus.OK, raw  # served as it is: lets a test send an undecodable body
    if isinstance(document, dict) and "status" not in document:
        document = {
            "status": "attached" if document.get("spec") is not None else "empty",
            **document,
        }
        raw = json.dumps(document).encode()
    return HTTPStatus.OK, raw


def make_handler(spec_dir: Path, token: str | None) -> type[StubHandler]:
    class Handler(StubHandler):
        content_type = "application/json"

        def do_GET(self) -> None:
            match = SPEC_PATH.match(self.path.split("?", 1)[0])
            if match is None:
                self._send(HTTPStatus.NOT_FOUND, b"")
                return
            if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                self._send(HTTPStatus.UNAUTHORIZED, b"")
                return
            status, body = answer_for(spec_dir, match.group(1))
            self._send(status, body)

    return Handler


def serve(spec_dir: Path, host: str, port: int, token: str | None) -> ThreadingHTTPServer:
    return make_server(host, port, make_handler(spec_dir, token))
