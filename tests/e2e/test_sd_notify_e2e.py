"""A real compute under a real `$NOTIFY_SOCKET` listener, as systemd runs a `Type=notify` unit:
`READY=1` arrives when the compute reaches `running`, and every datagram comes from compute_ctl
itself (Postgres, which speaks the protocol too, never gets the socket)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute, shared_tempdir
from tests.support.waiting import DEADLINE

pytestmark = pytest.mark.postgres


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, Path]]:
    directory = shared_tempdir("e2e-notify-")
    path = directory / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        path.chmod(0o777)  # the compute runs as the server user
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.settimeout(DEADLINE)
        yield sock, path


def next_message(sock: socket.socket) -> tuple[int, str]:
    """(sender pid, text) of the next datagram; the kernel vouches for the pid."""
    size = struct.calcsize("3i")
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(size))
    pid = 0
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("3i", payload[:size])[0]
    return pid, data.decode()


def test_ready_when_running(
    compute: Compute,
    make_spec: SpecFactory,
    notify_socket: tuple[socket.socket, Path],
) -> None:
    sock, path = notify_socket
    spec = compute.write("spec.json", make_spec())
    compute.start("-S", str(spec), env={"NOTIFY_SOCKET": str(path)}, wait=False)
    assert compute.process is not None
    seen: list[str] = []
    while "READY=1" not in seen:
        pid, text = next_message(sock)  # times out (a failure) after DEADLINE
        assert pid == compute.process.pid, (pid, text)
        seen += text.split("\n")
    assert seen[-2:] == ["READY=1", "STATUS=running"]
    assert "STATUS=init" in seen
    assert compute.status()["status"] == "running"
    # Postgres was started without the socket.
    environ = Path(f"/proc/{compute.postmaster_pid()}/environ").read_bytes().split(b"\0")
    assert not [entry for entry in environ if entry.startswith(b"NOTIFY_SOCKET=")]

    assert compute.call("POST", "/terminate").status == 200
    pid, text = next_message(sock)
    assert (pid, text) == (compute.process.pid, "STOPPING=1\nSTATUS=termination-pending-fast")
    assert compute.wait_exit() == 0
