"""What the small HTTP stand-ins (control plane, endpoint storage) share: a threaded server,
and running it in the foreground until SIGTERM or SIGINT after announcing where it listens."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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


def add_listen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, metavar="N", help="0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")


def make_server(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A server ready to `serve_forever` (in the caller's thread of choice)."""
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def run_in_foreground(
    name: str,
    directory: Path,
    build: Callable[[], ThreadingHTTPServer],
    announce: Callable[[ThreadingHTTPServer], dict[str, Any]],
) -> int:
    """`compute-dev <name>`: check `directory`, build the server (`build()`), print one JSON
    line (`announce(server)`) so a caller can wait for it, and serve until SIGTERM/SIGINT."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not directory.is_dir():
        print(f"compute-dev {name}: {directory} is not a directory", file=sys.stderr)
        return 1
    try:
        server = build()
    except OSError as exc:
        print(f"compute-dev {name}: cannot listen: {exc.strerror}", file=sys.stderr)
        return 1
    ready = announce(server)
    print(json.dumps(ready), flush=True)
    log.info("%s serving %s: %s", name, directory, ready)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    stop.wait()
    server.shutdown()
    server.server_close()
    return 0
