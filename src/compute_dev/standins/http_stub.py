"""What the small HTTP stand-ins (control plane, endpoint storage, extension gateway) share: a
threaded server, its request handler's base, and the `<file>.status` fault a test injects."""

from __future__ import annotations

import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Named as before the split into packages, so log lines and their filters stay the same.
log = logging.getLogger("compute_dev.http_stub")


class StubHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1, one body-sending helper, requests logged through `logging`."""

    protocol_version = "HTTP/1.1"
    content_type = "application/octet-stream"

    def _send(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


def status_override(target: Path) -> int | None:
    """The status a `<file>.status` beside a served file asks for (a fault injected by a test),
    if there is one; 500 when that file does not hold a number."""
    try:
        return int(target.with_name(target.name + ".status").read_text().strip())
    except FileNotFoundError:
        return None
    except ValueError:
        return HTTPStatus.INTERNAL_SERVER_ERROR


def make_server(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A server ready to `serve_forever` (in the caller's thread of choice)."""
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
