"""`/autoscaling_metrics` forwarding over a unix socket (short and overlong paths)."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

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
