"""The HTTP edge on a real uvicorn server and real sockets: HTTP versions, request-head time,
and what request logging writes for hostile request lines."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from compute_ctl.http.middleware import RequestIdMiddleware, redact_query
from compute_ctl.http.protocol import HEADER_TIMEOUT_SECONDS, BoundedH11Protocol
from compute_ctl.http.server import bind_socket, make_server

SHORT_BOUND = 0.3


async def _echo(request: Request) -> Response:
    body = await request.body()
    return PlainTextResponse(f"ok {len(body)}")


def _app() -> Starlette:
    return Starlette(
        routes=[Route("/echo", _echo, methods=["GET", "POST"])],
        middleware=[Middleware(RequestIdMiddleware)],
    )


@pytest.fixture
def server_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Our server settings (make_server) on a loopback port, with a short head bound."""
    monkeypatch.setattr(BoundedH11Protocol, "header_timeout", SHORT_BOUND)
    server = make_server(_app())
    sock = bind_socket(0, "127.0.0.1")
    port: int = sock.getsockname()[1]
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send `data`, then read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def _read_response(conn: socket.socket) -> bytes:
    """One whole response (head and a Content-Length body) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body


def test_production_bound_and_protocol() -> None:
    server = make_server(Starlette())
    assert server.config.http is BoundedH11Protocol
    assert 10 <= HEADER_TIMEOUT_SECONDS <= 30
    assert BoundedH11Protocol.header_timeout == HEADER_TIMEOUT_SECONDS


@pytest.mark.parametrize("version", ["9.9", "2.0", "0.9", "1.2"])
def test_unsupported_http_version_is_refused(server_port: int, version: str) -> None:
    answer = _exchange(
        server_port, f"GET /echo HTTP/{version}\r\nHost: x\r\n\r\n".encode(), timeout=10
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 505 "), answer
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"error": "http version not supported"}


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_supported_versions_are_served(server_port: int, version: str) -> None:
    request = f"GET /echo HTTP/{version}\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    answer = _exchange(server_port, request)
    assert answer.startswith(f"HTTP/{'1.1'} 200 ".encode()), answer
    assert answer.endswith(b"ok 0")


@pytest.mark.parametrize(
    "partial",
    [b"GET /echo HT", b"GET /echo HTTP/1.1\r\nHost: x\r\n", b"G"],
    ids=["request-line", "headers", "one-byte"],
)
def test_half_a_request_head_is_closed(server_port: int, partial: bytes) -> None:
    # Without the bound this read would wait for the 10 s socket timeout (and, outside the
    # test, forever): the server closes the connection without answering.
    started = time.monotonic()
    assert _exchange(server_port, partial, timeout=10) == b""
    assert time.monotonic() - started < 9


def test_a_trickled_head_is_bounded_from_its_first_byte(server_port: int) -> None:
    with socket.create_connection(("127.0.0.1", server_port), timeout=10) as conn:
        conn.sendall(b"GET /echo HTTP/1.1\r\n")
        closed = False
        for _ in range(100):  # a header line every 50 ms: never a complete head
            try:
                conn.sendall(b"X-Slow: 1\r\n")
            except OSError:
                closed = True
                break
            conn.settimeout(0.05)
            try:
                if conn.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        assert closed, "a head trickled for 5 s was never closed"


def test_a_slow_body_after_a_complete_head_is_not_cut(server_port: int) -> None:
    with socket.create_connection(("127.0.0.1", server_port), timeout=10) as conn:
        conn.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab")
        # Past the head bound: the head was complete, so the connection stays open.
        conn.settimeout(SHORT_BOUND * 3)
        with pytest.raises(TimeoutError):
            conn.recv(1)
        conn.settimeout(10)
        conn.sendall(b"c")
        answer = _read_response(conn)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert answer.endswith(b"ok 3")


def test_keep_alive_requests_are_served_after_the_bound(server_port: int) -> None:
    with socket.create_connection(("127.0.0.1", server_port), timeout=10) as conn:
        for _ in range(2):
            conn.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_response(conn).startswith(b"HTTP/1.1 200 ")
            conn.settimeout(SHORT_BOUND * 3)  # idle between requests is not a slow head
            with pytest.raises(TimeoutError):
                conn.recv(1)
            conn.settimeout(10)


# --------------------------------------------------------------------------------------------
# Request logging


def test_forged_log_lines_and_nul_are_escaped(
    server_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="compute_ctl.http")
    target = "/echo%0a2026-01-01T00:00:00.000Z%20ERROR%20FORGED%00%0d%e2%80%a8"
    with socket.create_connection(("127.0.0.1", server_port), timeout=10) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        while conn.recv(65536):
            pass
    lines = [r.getMessage() for r in caplog.records if r.name == "compute_ctl.http"]
    assert lines, caplog.text
    for line in lines:
        assert "\n" not in line and "\r" not in line and "\0" not in line
        assert "\u2028" not in line
        assert f"uri={target} " in line


def test_query_secrets_are_redacted(server_port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="compute_ctl.http")
    query = "mode=fast&token=eyJhbGci.secret1&access_token=secret2&JWT=secret3&password=secret4"
    with socket.create_connection(("127.0.0.1", server_port), timeout=10) as conn:
        conn.sendall(f"GET /echo?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        while conn.recv(65536):
            pass
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "compute_ctl.http")
    assert "uri=/echo?mode=fast&token=<redacted>&access_token=<redacted>" in text, text
    assert "secret" not in text


@pytest.mark.parametrize(
    ("query", "logged"),
    [
        ("a=1&b=2", "a=1&b=2"),
        ("api_key=k&apikey=k&x_auth=k&session=k", "api_key=<redacted>&apikey=<redacted>"),
        ("acc%65ss_token=k", "acc%65ss_token=<redacted>"),  # keys are compared decoded
        ("token", "token"),  # no value: nothing to hide
        ("token=&t=1", "token=<redacted>&t=1"),
    ],
)
def test_redact_query(query: str, logged: str) -> None:
    assert redact_query(query).startswith(logged)
    assert "=k" not in redact_query(query)
