"""`/autoscaling_metrics` forwarding over a unix socket (short and overlong paths), and its
answers when the communicator is missing, gone or not speaking HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from starlette.requests import Request

from compute_ctl.http.compute_api import ComputeApi
from compute_ctl.http.routes.autoscaling_metrics import get_autoscaling_metrics
from compute_ctl.postgres.communicator import fetch_over_unix_socket

BODY = b"# TYPE lfc_hits counter\nlfc_hits 3\n"


def serve_once(sock: socket.socket, seen: list[bytes]) -> None:
    conn, _ = sock.accept()
    with conn:
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        seen.append(request)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
        )


@pytest.fixture(params=["short", "long"])
def socket_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cctl") as root:
        path = Path(root)
        if request.param == "long":
            path = path / ("d" * 60) / ("e" * 60)
            path.mkdir(parents=True)
        yield path


def test_forwards_status_type_and_body(socket_dir: Path) -> None:
    target = socket_dir / "neon-communicator.socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bind through a short relative path: the long one does not fit in sockaddr_un either.
    cwd = os.getcwd()
    os.chdir(socket_dir)
    try:
        server.bind(target.name)
    finally:
        os.chdir(cwd)
    server.listen(1)
    seen: list[bytes] = []
    thread = threading.Thread(target=serve_once, args=(server, seen))
    thread.start()
    try:
        proxied = fetch_over_unix_socket(target)
    finally:
        thread.join(10)
        server.close()
    assert proxied.status == 200
    assert proxied.content_type == "text/plain; version=0.0.4"
    assert proxied.body == BODY
    assert seen[0].startswith(b"GET /autoscaling_metrics HTTP/1.1\r\n")


def test_missing_socket_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        fetch_over_unix_socket(tmp_path / "neon-communicator.socket")


def answer_of(pgdata: Path) -> tuple[int, Any]:
    """The route's status and JSON body for a compute whose PGDATA is `pgdata`."""
    compute = cast(ComputeApi, SimpleNamespace(params=SimpleNamespace(pgdata=pgdata)))
    request = Request({"type": "http", "method": "GET", "path": "/autoscaling_metrics"})
    response = asyncio.run(get_autoscaling_metrics(request, compute))
    return response.status_code, json.loads(bytes(response.body))


def test_no_communicator_is_a_412_saying_what_is_missing(tmp_path: Path) -> None:
    socket_path = tmp_path / "neon-communicator.socket"
    assert answer_of(tmp_path) == (
        412,
        {
            "error": f"failed to get autoscaling metrics: the communicator socket {socket_path} "
            "does not exist (the neon extension's communicator is not running)"
        },
    )


def test_a_socket_nobody_listens_on_is_a_412(tmp_path: Path) -> None:
    # What a communicator that died leaves behind: the socket file, and no listener.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # a short relative path: tmp_path may be too long for sockaddr_un
    try:
        stale.bind("neon-communicator.socket")
    finally:
        os.chdir(cwd)
    stale.close()
    status, body = answer_of(tmp_path)
    assert status == 412
    assert body["error"].startswith("failed to get autoscaling metrics: nothing listens on ")


def test_an_answer_that_is_not_http_is_a_502(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        server.bind("neon-communicator.socket")
    finally:
        os.chdir(cwd)
    server.listen(1)

    def garbage() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"SSH-2.0-not-http\r\n")

    thread = threading.Thread(target=garbage)
    thread.start()
    try:
        status, body = answer_of(tmp_path)
    finally:
        thread.join(10)
        server.close()
    assert status == 502
    assert body["error"].startswith("failed to get autoscaling metrics: the communicator could")
