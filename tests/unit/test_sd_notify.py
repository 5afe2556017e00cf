"""sd_notify: the datagrams a `Type=notify` unit's socket receives, on a real unix socket."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from compute_ctl import sd_notify
from compute_ctl.state import ComputeStatus as S


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        yield sock, path


def received(sock: socket.socket) -> list[str]:
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        return messages
    finally:
        sock.settimeout(5)


def test_ready_once_and_a_status_on_every_transition(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    environ = {"NOTIFY_SOCKET": path, "OTHER": "x"}
    (on_status,) = sd_notify.listeners(environ)
    assert environ == {"OTHER": "x"}  # children (Postgres) never see the socket
    for status in (S.INIT, S.RUNNING, S.CONFIGURATION_PENDING, S.CONFIGURATION, S.RUNNING):
        on_status(status)
    on_status(S.TERMINATION_PENDING_FAST)
    on_status(S.TERMINATED)
    assert received(sock) == [
        "STATUS=init",
        "READY=1\nSTATUS=running",
        "STATUS=configuration-pending",
        "STATUS=configuration",
        "STATUS=running",
        "STOPPING=1\nSTATUS=termination-pending-fast",
        "STATUS=terminated",
    ]


def test_abstract_socket_address() -> None:
    name = f"compute-ctl-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        (on_status,) = sd_notify.listeners({"NOTIFY_SOCKET": f"@{name}"})
        on_status(S.RUNNING)
        assert sock.recv(4096) == b"READY=1\nSTATUS=running"


def test_no_socket_no_listener() -> None:
    assert sd_notify.listeners({}) == []
    assert sd_notify.listeners({"NOTIFY_SOCKET": ""}) == []


def test_a_bad_address_is_refused_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    assert sd_notify.listeners({"NOTIFY_SOCKET": "vsock:2:1234"}) == []
    assert "NOTIFY_SOCKET='vsock:2:1234' is not a socket address" in caplog.text


def test_a_socket_that_went_away_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    (on_status,) = sd_notify.listeners({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    on_status(S.INIT)
    on_status(S.RUNNING)
    assert caplog.text.count("could not notify systemd") == 1
