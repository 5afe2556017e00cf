"""The path from exec to the HTTP listeners stays light, and the listeners answer promptly.

compute_ctl must answer `/status` as soon as possible after it starts: the libraries only some
requests or the compute start need (psycopg, grpc, PyJWT, the catalog, the storage clients)
are imported when first used, not by the modules the start-up path loads.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest

from compute_ctl.http.server import bind_socket

HEAVY = (
    "psycopg",
    "grpc",
    "jwt",
    "websockets",
    "compute_ctl.catalog",
    "compute_ctl.storage.basebackup",
    "compute_ctl.storage.safekeepers",
    "opentelemetry",
    "pythonjsonlogger",
    "requests",
    "compute_ctl.tracing.otel",
)


def test_start_up_modules_leave_heavy_libraries_unloaded() -> None:
    code = (
        "import sys\n"
        "import compute_ctl.cli, compute_ctl.compute.node\n"
        "print(' '.join(name for name in sys.argv[1:] if name in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *HEAVY], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == []


def test_the_grpc_basebackup_leaves_grpcio_to_its_child() -> None:
    """compute_ctl's side of a gRPC basebackup (the start's storage step, the client, the
    parent's end of the child's pipe) loads neither grpcio nor protobuf: only the child
    process does (`storage/grpc_child.py`)."""
    code = (
        "import sys\n"
        "import compute_ctl.compute.prepare, compute_ctl.compute.lease\n"
        "from compute_ctl.compute.prepare import import_storage_clients\n"
        "import_storage_clients()\n"
        "print(' '.join(name for name in sys.argv[1:] if name in sys.modules))\n"
    )
    grpc_side = ("grpc", "google.protobuf", "compute_ctl.storage.grpc", "compute_ctl.storage.proto")
    out = subprocess.run(
        [sys.executable, "-c", code, *grpc_side], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == []


def test_the_grpc_child_starts_without_pydantic() -> None:
    """What the gRPC basebackup's child process imports leaves pydantic unloaded: importing
    it would be a third of the child's start, which a pooled start waits for."""
    code = (
        "import sys\n"
        "import compute_ctl.storage.grpc, compute_ctl.storage.grpc_child, compute_ctl.logsetup\n"
        "print(' '.join(name for name in sys.argv[1:] if name in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "pydantic", "pydantic_core", "compute_ctl.spec.models"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == []


@pytest.mark.parametrize("host", [None, "127.0.0.1"])
def test_accepted_connections_do_not_wait_for_delayed_acks(host: str | None) -> None:
    """asyncio sets TCP_NODELAY on accepted sockets only when the listener says IPPROTO_TCP;
    without it an answer written in two parts waits 40 ms for the client's delayed ACK."""

    async def accepted_nodelay() -> int:
        sock = bind_socket(0, host)
        port = sock.getsockname()[1]
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            del reader
            conn = writer.get_extra_info("socket")
            accepted.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=sock)
        async with server:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                return await asyncio.wait_for(accepted, 5)
            finally:
                writer.close()
                await writer.wait_closed()

    assert asyncio.run(accepted_nodelay()) != 0


def test_an_empty_compute_prepares_what_configure_needs() -> None:
    """While it waits for `/configure`, an empty compute imports the catalog and the storage
    clients and builds the `/configure` body's validator, so the start a user waits for pays
    none of them; grpcio stays out (the basebackup's child loads it)."""
    code = (
        "import asyncio, sys\n"
        "from compute_ctl.compute.startup import preload_while_empty\n"
        "from compute_ctl.spec.models import ConfigurationRequest\n"
        "before = ConfigurationRequest.__pydantic_complete__\n"
        "asyncio.run(preload_while_empty())\n"
        "print(before, ConfigurationRequest.__pydantic_complete__)\n"
        "print(' '.join(name for name in sys.argv[1:] if name in sys.modules))\n"
    )
    wanted = ("compute_ctl.catalog", "compute_ctl.storage.pageserver", "compute_ctl.storage.libpq")
    out = subprocess.run(
        [sys.executable, "-c", code, *wanted, "grpc"], capture_output=True, text=True, check=True
    )
    built, loaded = out.stdout.splitlines()
    assert built == "False True"
    assert loaded.split() == list(wanted)
