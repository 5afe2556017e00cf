"""`GET /autoscaling_metrics`: the Postgres communicator's metrics, proxied.

The neon extension's communicator serves HTTP on the unix socket
`<pgdata>/neon-communicator.socket`; this route forwards `GET /autoscaling_metrics` to it and
answers with its status, `Content-Type` and body. A socket path too long for `AF_UNIX` is
reached through a short symlink in a temporary directory. Stock PostgreSQL has no communicator:
the route then answers 500.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.responses import json_error

if TYPE_CHECKING:
    from compute_ctl.compute.node import ComputeNode

SOCKET_NAME = "neon-communicator.socket"
PATH = "/autoscaling_metrics"
LONG_SOCKET_PATH = 100  # bytes; AF_UNIX paths are limited to about 108
TIMEOUT = 10.0


@dataclass(frozen=True)
class Proxied:
    status: int
    content_type: str | None
    body: bytes


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: Path) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        link_dir: str | None = None
        target = os.fsencode(self.socket_path)
        try:
            if len(target) >= LONG_SOCKET_PATH:
                link_dir = tempfile.mkdtemp(prefix="cctl-")
                link = os.path.join(link_dir, "s")
                os.symlink(self.socket_path, link)
                target = os.fsencode(link)
            sock.connect(target)
        except OSError:
            sock.close()
            raise
        finally:
            if link_dir is not None:
                shutil.rmtree(link_dir, ignore_errors=True)
        self.sock = sock


def fetch_over_unix_socket(socket_path: Path, path: str = PATH) -> Proxied:
    """One HTTP/1.1 GET over a unix socket (blocking); raises OSError or HTTPException."""
    conn = _UnixConnection(socket_path)
    try:
        conn.request("GET", path, headers={"Host": "localhost"})
        response = conn.getresponse()
        return Proxied(response.status, response.getheader("Content-Type"), response.read())
    finally:
        conn.close()


async def get_autoscaling_metrics(request: Request) -> Response:
    """The communicator's autoscaling metrics, forwarded as they are.

    200 (or whatever the communicator answers): its body and `Content-Type`.
    500: the communicator socket cannot be reached or does not answer HTTP.
    """
    node: ComputeNode = request.app.state.compute
    socket_path = node.params.pgdata / SOCKET_NAME
    try:
        proxied = await asyncio.to_thread(fetch_over_unix_socket, socket_path)
    except (OSError, http.client.HTTPException) as exc:
        return json_error(f"failed to get autoscaling metrics: {exc}", 500)
    headers = {"Content-Type": proxied.content_type} if proxied.content_type else None
    return Response(proxied.body, status_code=proxied.status, headers=headers)
