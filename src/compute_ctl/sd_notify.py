"""Tell systemd how the compute is doing: `Type=notify` in deploy/compute_ctl.service.

systemd passes the address of its notification socket in `$NOTIFY_SOCKET`; the protocol is one
datagram of `KEY=value` lines per message. compute_ctl sends `READY=1` the first time the
compute reaches `running` (so `systemctl start` returns once Postgres serves with its spec),
`STATUS=<status>` on every transition (shown by `systemctl status`), and `STOPPING=1` when a
termination starts. Outside systemd the variable is unset and nothing is sent.

The variable is removed from the environment once read, so that Postgres (built with systemd
support, it would send its own `READY=1`) and the other children do not use the socket.
A failed send is logged once and never stops the compute.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, MutableMapping

from compute_ctl.state import ComputeStatus

log = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"


def socket_address(value: str) -> str | bytes | None:
    """`$NOTIFY_SOCKET` as a socket address: a path, or `@name` for the abstract namespace."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    return None


class Notifier:
    """Datagrams to systemd's notification socket."""

    def __init__(self, address: str | bytes) -> None:
        self.address = address
        self.ready_sent = False
        self._failed = False

    def send(self, *lines: str) -> None:
        # A socket per message, as libsystemd does: transitions are rare, and nothing stays open.
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("could not notify systemd at %s: %s", os.fsdecode(self.address), exc)
                self._failed = True

    def on_status(self, status: ComputeStatus) -> None:
        """A status listener (compute/state.py): called on every transition."""
        lines = [f"STATUS={status}"]
        if status is ComputeStatus.RUNNING and not self.ready_sent:
            lines.insert(0, "READY=1")
            self.ready_sent = True
        if status.is_termination_pending:
            lines.insert(0, "STOPPING=1")
        self.send(*lines)


def listeners(environ: MutableMapping[str, str]) -> list[Callable[[ComputeStatus], None]]:
    """The status listener to register: one when systemd asks for notifications, else none.
    Takes `$NOTIFY_SOCKET` out of `environ`."""
    value = environ.pop(NOTIFY_SOCKET_ENV, "")
    if not value:
        return []
    address = socket_address(value)
    if address is None:
        log.warning(
            "%s=%r is not a socket address: systemd is not notified", NOTIFY_SOCKET_ENV, value
        )
        return []
    return [Notifier(address).on_status]
