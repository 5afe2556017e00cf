"""The Postgres communicator's HTTP endpoint on its unix socket.

The neon extension's communicator serves HTTP on the unix socket
`<pgdata>/neon-communicator.socket`. A socket path too long for `AF_UNIX` is reached through a
short symlink in a temporary directory. Stock PostgreSQL has no communicator.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from compute_ctl.errors import ComputeError

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


class CommunicatorFailure(Enum):
    NOT_RUNNING = "not running"  # no socket, or nobody listens on it
    TIMEOUT = "timeout"
    BAD_ANSWER = "bad answer"  # the socket cannot be used, or what came back is not HTTP


class CommunicatorError(ComputeError):
    """The communicator cannot be reached or does not answer HTTP; `failure` says which."""

    def __init__(self, message: str, failure: CommunicatorFailure) -> None:
        super().__init__(message)
        self.failure = failure


async def autoscaling_metrics(pgdata: Path) -> Proxied:
    """`GET /autoscaling_metrics` of the communicator of the Postgres in `pgdata`."""
    socket_path = pgdata / SOCKET_NAME
    try:
        return await asyncio.to_thread(fetch_over_unix_socket, socket_path)
    except FileNotFoundError:
        raise CommunicatorError(
            f"the communicator socket {socket_path} does not exist "
            "(the neon extension's communicator is not running)",
            CommunicatorFailure.NOT_RUNNING,
        ) from None
    except ConnectionRefusedError:
        raise CommunicatorError(
            f"nothing listens on the communicator socket {socket_path} "
            "(the neon extension's communicator is not running)",
            CommunicatorFailure.NOT_RUNNING,
        ) from None
    except TimeoutError:
        raise CommunicatorError(
            f"the communicator did not answer within {TIMEOUT:g} s", CommunicatorFailure.TIMEOUT
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise CommunicatorError(
            f"the communicator could not be asked: {exc or type(exc).__name__}",
            CommunicatorFailure.BAD_ANSWER,
        ) from None
