"""The pageserver libpq stand-in against real clients (psql, psycopg, a raw extended-protocol
client shaped like rust-postgres), and compute_ctl's libpq basebackup and lease client
against every libpq fault the stand-in can inject.

Each test runs the server and its clients on one event loop with `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gzip
import io
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from compute_ctl.errors import StorageError
from compute_ctl.spec.types import Lsn, ShardIndex, TenantId, TenantShardId, TimelineId
from compute_ctl.storage.libpq import basebackup_command, libpq_basebackup, libpq_lease_lsn
from compute_ctl.storage.sink import BasebackupStats
from compute_dev.pgbin import server_user
from compute_dev.standins.pageserver import Faults, parse_command, serve_pageserver_libpq
from compute_dev.standins.timelines import SUPERUSER, Timeline, TimelineStore
from tests.integration.conftest import JwtKeys

pytestmark = pytest.mark.postgres

HOST = "127.0.0.1"


@contextlib.asynccontextmanager
async def pageserver(
    store: TimelineStore, *, public_key: bytes | None = None, faults: Faults | None = None
) -> AsyncIterator[str]:
    """A running stand-in on a free port; yields its libpq URL."""
    server = await serve_pageserver_libpq(store, HOST, 0, public_key=public_key, faults=faults)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"postgres://no_user@{HOST}:{port}"
    finally:
        server.close()
        await server.wait_closed()


class Collect:
    """A sink that keeps what it is fed."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.data += chunk


class Inflate:
    """A sink that gunzips as it goes, like the real extractor: corrupt input raises."""

    def __init__(self) -> None:
        self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.raw = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.raw += self.inflater.decompress(chunk)


def tar_names(data: bytes, *, ignore_zeros: bool = True) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", ignore_zeros=ignore_zeros) as tar:
        return tar.getnames()


def basebackup(
    url: str,
    timeline: Timeline,
    sink: Collect | Inflate,
    *,
    lsn: Lsn | None = None,
    mode: str = "primary",
    token: str | None = None,
) -> BasebackupStats:
    return asyncio.run(
        libpq_basebackup(
            url,
            timeline.tenant_id,
            timeline.timeline_id,
            lsn,
            mode_type=mode,
            token=token,
            sink=sink,
        )
    )


def failed_basebackup(
    store: TimelineStore,
    timeline: Timeline,
    faults: Faults,
    sink: Collect | Inflate | None = None,
    *,
    public_key: bytes | None = None,
    token: str | None = None,
) -> StorageError:
    async def attempt() -> StorageError:
        async with pageserver(store, faults=faults, public_key=public_key) as url:
            with pytest.raises(StorageError) as caught:
                await libpq_basebackup(
                    url,
                    timeline.tenant_id,
                    timeline.timeline_id,
                    None,
                    mode_type="primary",
                    token=token,
                    sink=sink or Collect(),
                )
            return caught.value

    return asyncio.run(attempt())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


# -- psql and stock PostgreSQL ---------------------------------------------------------------


@pytest.fixture
def server_tmp() -> Iterator[Path]:
    """A scratch directory the unprivileged server user can use."""
    path = Path(tempfile.mkdtemp(prefix="compute-dev-pgdata-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_psql_basebackup_gives_a_tarball_stock_postgres_starts_from(
    timeline_store: TimelineStore, timeline: Timeline, pg_bin: Path, server_tmp: Path
) -> None:
    out = server_tmp / "out.gz"

    async def fetch() -> None:
        async with pageserver(timeline_store) as url:
            with out.open("wb") as stdout:
                psql = await asyncio.create_subprocess_exec(
                    "psql",
                    url,
                    "-X",
                    "-c",
                    f"basebackup {timeline.tenant_id} {timeline.timeline_id} --gzip",
                    stdout=stdout,
                    stderr=asyncio.subprocess.PIPE,
                )
                _, stderr = await psql.communicate()
            assert psql.returncode == 0, stderr.decode()

    asyncio.run(fetch())
    payload = out.read_bytes()
    assert payload[:2] == b"\x1f\x8b"
    names = tar_names(gzip.decompress(payload))
    assert "postgresql.conf" not in names
    assert {"pg_hba.conf", "neon.signal", "zenith.signal", "PG_VERSION"} <= set(names)
    # pg_control comes last but for the WAL, so a cut tarball cannot start.
    tail = [n for n in names if not n.startswith("pg_wal/")][-1]
    assert tail == "global/pg_control"

    pgdata = server_tmp / "pgdata"
    with tarfile.open(out, mode="r:gz", ignore_zeros=True) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(pgdata, filter="data")
        else:  # an interpreter without extraction filters; the stand-in's own tarball
            tar.extractall(pgdata)  # noqa: S202
    pgdata.chmod(0o700)
    port = free_port()
    (pgdata / "postgresql.conf").write_text(
        f"port = {port}\nlisten_addresses = '{HOST}'\n"
        f"unix_socket_directories = '{server_tmp}'\nfsync = off\n"
    )
    user = server_user()
    user.chown(server_tmp)
    log = server_tmp / "postgres.log"

    def pg_ctl(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(pg_bin / "pg_ctl"), "-D", str(pgdata), *argv],
            capture_output=True,
            text=True,
            preexec_fn=user.preexec(),
            env=user.env(),
            check=False,
        )

    started = pg_ctl("-l", str(log), "-w", "-t", "60", "start")
    try:
        assert started.returncode == 0, started.stderr + log.read_text()
        query = subprocess.run(
            [
                *("psql", "-X", "-h", HOST, "-p", str(port), "-U", SUPERUSER, "-d", "postgres"),
                *("-Atc", "select count(*) from pg_database where datname = 'postgres'"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert query.returncode == 0, query.stderr
        assert query.stdout.strip() == "1"
    finally:
        stopped = pg_ctl("-m", "fast", "-w", "stop")
    assert stopped.returncode == 0, stopped.stderr


def test_psql_sees_the_grammar_errors_and_set(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    async def run() -> None:
        async with pageserver(timeline_store) as url:
            for command, expected_out, expected_err, status in (
                ("set datestyle to ISO", "SELECT 1", "", 0),
                ("hello", "", "ERROR:  cannot parse query: hello", 1),
                (
                    f"lease lsn {timeline.tenant_id} {timeline.timeline_id} 0/1",
                    "valid_until",
                    "",
                    0,
                ),
            ):
                psql = await asyncio.create_subprocess_exec(
                    "psql",
                    url,
                    "-X",
                    "-c",
                    command,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                stdout, stderr = await psql.communicate()
                assert psql.returncode == status, stderr
                assert expected_out in stdout.decode()
                assert expected_err in stderr.decode()

    asyncio.run(run())


# -- compute_ctl's client, trust mode --------------------------------------------------------


def test_client_fetches_a_gzip_basebackup_and_reports_metrics(
    timeline_store: TimelineStore, timeline: Timeline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="compute_dev.pageserver")
    sink = Collect()

    async def run() -> BasebackupStats:
        async with pageserver(timeline_store) as url:
            return await libpq_basebackup(
                url,
                timeline.tenant_id,
                timeline.timeline_id,
                timeline.lsn,
                mode_type="primary",
                token=None,
                sink=sink,
            )

    result = asyncio.run(run())
    assert result.compressed_bytes == len(sink.data) > 0
    assert result.connect_micros > 0
    assert result.duration_ms * 1000 >= result.connect_micros // 1000
    names = tar_names(gzip.decompress(bytes(sink.data)))
    assert "global/pg_control" in names
    # One line for the request, saying what the client asked and what was sent.
    lines = [r.getMessage() for r in caplog.records if "libpq basebackup" in r.getMessage()]
    assert len(lines) == 1
    line = lines[0]
    assert "compute_mode=primary" in line
    assert f"tenant={timeline.tenant_id} timeline={timeline.timeline_id}" in line
    assert f"lsn={timeline.lsn} bytes={result.compressed_bytes}: ok" in line
    assert "--gzip" in line and "--replica" not in line


@pytest.mark.parametrize("mode", ["static", "replica"])
def test_client_asks_for_a_replica_backup_in_other_modes(
    timeline_store: TimelineStore,
    timeline: Timeline,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    caplog.set_level(logging.INFO, logger="compute_dev.pageserver")

    async def run() -> None:
        async with pageserver(timeline_store) as url:
            await libpq_basebackup(
                url,
                timeline.tenant_id,
                timeline.timeline_id,
                Lsn(0),
                mode_type=mode,
                token=None,
                sink=Collect(),
            )

    asyncio.run(run())
    (line,) = [r.getMessage() for r in caplog.records if "libpq basebackup" in r.getMessage()]
    assert "basebackup --gzip --replica" in line
    assert f"compute_mode={mode}" in line
    assert f"lsn={timeline.lsn}" in line  # no LSN asked: the latest is served


def test_basebackup_command_strings() -> None:
    tenant, timeline = TenantId("AB" * 16), TimelineId("cd" * 16)
    assert (
        basebackup_command(tenant, timeline, Lsn.parse("0/16B5A50"), replica=False)
        == f"basebackup {'ab' * 16} {'cd' * 16} 0/16B5A50 --gzip"
    )
    assert (
        basebackup_command(tenant, timeline, Lsn(0), replica=True)
        == f"basebackup {'ab' * 16} {'cd' * 16} --gzip --replica"
    )
    assert basebackup_command(tenant, timeline, None, replica=False).endswith(" --gzip")


@pytest.mark.parametrize(
    ("command", "gzipped"),
    [
        ("BaseBackup {t} {l} latest --gzip", True),
        ("basebackup {t} {l} {lsn}", False),
        ("basebackup   {t}  {l} --replica --gzip  ", True),
        ("fullbackup {t} {l}", False),
        ("fullbackup {t} {l} {lsn} {lsn}", False),
    ],
)
def test_accepted_backup_commands(
    timeline_store: TimelineStore, timeline: Timeline, command: str, gzipped: bool
) -> None:
    text = command.format(t=timeline.tenant_id, l=timeline.timeline_id, lsn=timeline.lsn)

    async def run() -> bytes:
        async with (
            pageserver(timeline_store) as url,
            await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
            conn.cursor() as cursor,
        ):
            data = bytearray()
            async with cursor.copy(text.encode()) as copy:
                async for chunk in copy:
                    data += chunk
            return bytes(data)

    payload = asyncio.run(run())
    assert (payload[:2] == b"\x1f\x8b") is gzipped
    names = tar_names(gzip.decompress(payload) if gzipped else payload)
    assert "global/pg_control" in names


# -- the command grammar's errors ------------------------------------------------------------

OTHER_TIMELINE = "0" * 32


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("hello", "cannot parse query: hello"),
        ("  hello  ", "cannot parse query: hello"),
        ("bogus {t}", "unsupported command bogus in bogus {t}"),
        ("basebackup {t}", "invalid number of parameters for basebackup command: basebackup {t}"),
        ("basebackup {t} {l} --gzip --gzip", "duplicate parameter for basebackup command: --gzip"),
        ("basebackup {t} {l} --replica --fast", "invalid parameter for basebackup command: --fast"),
        ("basebackup {t} {l} --gzip {lsn}", "invalid parameter for basebackup command: {lsn}"),
        ("basebackup {t} {l} 16B5A50", "Failed to parse lsn from 16B5A50: invalid LSN"),
        ("basebackup xyz {l}", "Failed to parse tenant id from xyz: Odd number of digits"),
        ("basebackup {t} abcd", "Failed to parse timeline id from abcd: Invalid string length"),
        ("fullbackup {t}", "invalid number of parameters for fullbackup command: fullbackup {t}"),
        ("fullbackup {t} {l} 0/1 0/1 0/1", "invalid number of parameters for fullbackup"),
        (
            "lease lsn {t} {l}",
            "invalid number of parameters for lease lsn command: lease lsn {t} {l}",
        ),
        ("lease foo {t}", "invalid lease command: lease foo {t}"),
        ("basebackup {t} " + OTHER_TIMELINE + " --gzip", "not found"),
        ("basebackup " + OTHER_TIMELINE + " {l} --gzip", "not found"),
        (
            "basebackup {t} {l} {later} --gzip",
            "Timed out while waiting for WAL record at LSN {later} to arrive, "
            "last_record_lsn {lsn} disk consistent LSN={lsn}",
        ),
        (
            "basebackup {t} {l} {earlier} --gzip",
            "invalid basebackup lsn: LSN {earlier} is earlier than latest GC cutoff {lsn} "
            "(we might've already garbage collected needed data)",
        ),
        ("pagestream_v2 {t} {l}", "pagestream_v2 is not implemented by the compute_dev"),
    ],
)
def test_command_errors_over_the_simple_protocol(
    timeline_store: TimelineStore, timeline: Timeline, query: str, expected: str
) -> None:
    values = {
        "t": timeline.tenant_id,
        "l": timeline.timeline_id,
        "lsn": timeline.lsn,
        "later": Lsn(timeline.lsn + 8),
        "earlier": Lsn(timeline.lsn - 8),
    }

    async def run() -> None:
        async with (
            pageserver(timeline_store) as url,
            await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
            conn.cursor() as cursor,
        ):
            with pytest.raises(psycopg.errors.InternalError_) as caught:
                await cursor.execute(query.format(**values).encode())
            assert caught.value.sqlstate == "XX000"
            assert (caught.value.diag.message_primary or "").startswith(expected.format(**values))
            # An error never ends the connection.
            await cursor.execute(b"set datestyle to ISO")
            assert cursor.statusmessage == "SELECT 1"

    asyncio.run(run())


def test_parse_command_reads_lease_shards() -> None:
    tenant = "ab" * 16
    command = parse_command(f"LEASE LSN {tenant}-0104 {'cd' * 16} 0/1 ")
    assert command == parse_command(f"lease lsn {tenant}-0104 {'cd' * 16} 0/1")
    assert getattr(command, "tenant_shard_id", None) == TenantShardId(
        TenantId(tenant), ShardIndex(1, 4)
    )


# -- the extended protocol, as the Rust compute_ctl speaks it --------------------------------


class RawClient:
    """A frontend written against the protocol itself, sending exactly what rust-postgres
    sends for `copy_out`: Parse + Describe + Sync, then Bind + Execute + Sync."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> RawClient:
        reader, writer = await asyncio.open_connection(HOST, int(url.rsplit(":", 1)[1]))
        return cls(reader, writer)

    async def startup(self, body: bytes) -> None:
        self.writer.write(struct.pack("!i", len(body) + 4) + body)
        await self.writer.drain()

    @classmethod
    async def connect(cls, url: str, password: str | None = None) -> RawClient:
        """Open and authenticate, with rust-postgres's startup parameters in its order."""
        client = await cls.open(url)
        params = b"".join(
            k.encode() + b"\0" + v.encode() + b"\0"
            for k, v in (
                ("client_encoding", "UTF8"),
                ("user", "no_user"),
                ("options", "-c neon.compute_mode=primary"),
                ("application_name", "compute_ctl"),
            )
        )
        await client.startup(struct.pack("!i", 3 << 16) + params + b"\0")
        kind, payload = await client.recv()
        if kind == b"R" and payload == struct.pack("!i", 3):
            assert password is not None
            client.send(b"p", password.encode() + b"\0")
            kind, payload = await client.recv()
        assert (kind, payload) == (b"R", struct.pack("!i", 0)), payload
        await client.until_ready()
        return client

    def send(self, kind: bytes, body: bytes = b"") -> None:
        self.writer.write(kind + struct.pack("!i", len(body) + 4) + body)

    async def recv(self) -> tuple[bytes, bytes]:
        kind = await self.reader.readexactly(1)
        (length,) = struct.unpack("!i", await self.reader.readexactly(4))
        return kind, await self.reader.readexactly(length - 4)

    async def until_ready(self) -> list[tuple[bytes, bytes]]:
        messages = []
        while True:
            message = await self.recv()
            messages.append(message)
            if message[0] == b"Z":
                return messages

    def prepare(self, query: str) -> None:
        self.send(b"P", b"\0" + query.encode() + b"\0" + struct.pack("!h", 0))
        self.send(b"D", b"S\0")
        self.send(b"S")

    def bind_execute(self) -> None:
        self.send(b"B", b"\0\0" + struct.pack("!hhh", 0, 0, 0))
        self.send(b"E", b"\0" + struct.pack("!i", 0))
        self.send(b"S")

    async def close(self) -> None:
        self.send(b"X")
        self.writer.close()
        await self.writer.wait_closed()


def error_text(body: bytes) -> dict[str, str]:
    fields = {}
    for field in body.rstrip(b"\0").split(b"\0"):
        fields[chr(field[0])] = field[1:].decode()
    return fields


def test_extended_protocol_basebackup_as_rust_postgres_sends_it(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    command = f"basebackup {timeline.tenant_id} {timeline.timeline_id} {timeline.lsn} --gzip"

    async def run() -> list[tuple[bytes, bytes]]:
        async with pageserver(timeline_store) as url:
            client = await RawClient.connect(url)
            client.prepare(command)
            prepared = await client.until_ready()
            assert prepared == [(b"1", b""), (b"t", b"\0\0"), (b"n", b""), (b"Z", b"I")]
            client.bind_execute()
            messages = await client.until_ready()
            await client.close()
            return messages

    messages = asyncio.run(run())
    kinds = [kind for kind, _ in messages]
    assert kinds[:2] == [b"2", b"H"]
    assert messages[1][1] == b"\0\0\0"  # text format, zero columns
    assert kinds[-3:] == [b"c", b"C", b"Z"]
    assert messages[-2][1] == b"SELECT 1\0"
    assert set(kinds[2:-3]) == {b"d"}
    payload = b"".join(body for kind, body in messages if kind == b"d")
    assert "global/pg_control" in tar_names(gzip.decompress(payload))


def test_extended_protocol_error_texts(
    timeline_store: TimelineStore, timeline: Timeline, jwt_keys: JwtKeys
) -> None:
    other_tenant = TenantId("ff" * 16)
    token = jwt_keys.token(scope="tenant", tenant_id=str(timeline.tenant_id))

    async def error_for(query: str, *, public_key: bytes | None = None) -> str:
        async with pageserver(timeline_store, public_key=public_key) as url:
            client = await RawClient.connect(url, token if public_key else None)
            client.prepare(query)
            await client.until_ready()
            client.bind_execute()
            messages = await client.until_ready()
            await client.close()
        assert [kind for kind, _ in messages] == [b"2", b"E", b"Z"]
        return error_text(messages[1][1])["M"]

    async def run() -> None:
        t, l = timeline.tenant_id, timeline.timeline_id  # noqa: E741
        assert await error_for(f"basebackup {t} {OTHER_TIMELINE}") == (
            f"Not found: Timeline {t}/{OTHER_TIMELINE} was not found"
        )
        assert await error_for(f"basebackup xyz {l}") == "Failed to parse tenant id from xyz"
        denied = await error_for(f"basebackup {other_tenant} {l}", public_key=jwt_keys.public_pem)
        assert denied == "Unauthorized: Tenant id mismatch. Permission denied"

    asyncio.run(run())


def test_extended_protocol_skips_to_sync_after_an_error(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    async def run() -> None:
        async with pageserver(timeline_store) as url:
            client = await RawClient.connect(url)
            client.send(b"P", b"\0hello\0" + struct.pack("!h", 0))
            client.send(b"B", b"\0\0" + struct.pack("!hhh", 0, 0, 0))
            client.send(b"E", b"\0" + struct.pack("!i", 0))
            client.send(b"E", b"\0" + struct.pack("!i", 0))  # skipped: the sequence failed
            client.send(b"S")
            messages = await client.until_ready()
            assert [kind for kind, _ in messages] == [b"1", b"2", b"E", b"Z"]
            assert error_text(messages[2][1])["M"] == "cannot parse query: hello"
            await client.close()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        (b"D", b"P\0", "only statement Describe is supported"),
        (b"P", b"\0set x\0" + struct.pack("!hi", 1, 25), "query params not implemented"),
        (b"E", b"portal\0" + struct.pack("!i", 0), "only the unnamed portal is supported"),
    ],
)
def test_extended_protocol_violations_end_the_connection(
    timeline_store: TimelineStore, kind: bytes, body: bytes, message: str
) -> None:
    async def run() -> None:
        async with pageserver(timeline_store) as url:
            client = await RawClient.connect(url)
            client.send(kind, body)
            received, error = await client.recv()
            assert received == b"E"
            assert error_text(error) == {"S": "ERROR", "C": "08P01", "M": message}
            assert await client.reader.read() == b""  # closed by the server
            client.writer.close()
            await client.writer.wait_closed()

    asyncio.run(run())


@pytest.mark.parametrize("code", [80877103, 80877104])
def test_encryption_requests_are_declined(timeline_store: TimelineStore, code: int) -> None:
    async def run() -> None:
        async with pageserver(timeline_store) as url:
            reader, writer = await asyncio.open_connection(HOST, int(url.rsplit(":", 1)[1]))
            writer.write(struct.pack("!ii", 8, code))
            assert await reader.readexactly(1) == b"N"
            client = RawClient(reader, writer)
            await client.startup(struct.pack("!i", 3 << 16) + b"user\0no_user\0\0")
            assert (await client.recv()) == (b"R", struct.pack("!i", 0))
            await client.until_ready()
            await client.close()

    asyncio.run(run())


def test_protocol_versions(timeline_store: TimelineStore) -> None:
    async def run() -> None:
        async with pageserver(timeline_store) as url:
            client = await RawClient.open(url)
            # A newer minor version with a protocol option: negotiated down to 3.0.
            await client.startup(struct.pack("!i", (3 << 16) | 2) + b"_pq_.x\0y\0\0")
            assert await client.recv() == (b"v", struct.pack("!ii", 0, 1) + b"_pq_.x\0")
            assert (await client.recv())[0] == b"R"
            await client.until_ready()
            await client.close()

            client = await RawClient.open(url)
            await client.startup(struct.pack("!i", 2 << 16) + b"\0")
            kind, body = await client.recv()
            assert kind == b"E"
            assert error_text(body)["C"] == "0A000"
            assert await client.reader.read() == b""
            client.writer.close()
            await client.writer.wait_closed()

            # A CancelRequest has nothing to cancel: the connection just ends.
            client = await RawClient.open(url)
            await client.startup(struct.pack("!iii", 80877102, 1, 2))
            assert await client.reader.read() == b""
            client.writer.close()
            await client.writer.wait_closed()

    asyncio.run(run())


# -- JWT mode ---------------------------------------------------------------------------------


def test_jwt_mode_handshake_and_tenant_token(
    timeline_store: TimelineStore, timeline: Timeline, jwt_keys: JwtKeys
) -> None:
    token = jwt_keys.token(scope="tenant", tenant_id=str(timeline.tenant_id))

    async def run() -> None:
        async with pageserver(timeline_store, public_key=jwt_keys.public_pem) as url:
            async with await psycopg.AsyncConnection.connect(
                url, password=token, autocommit=True
            ) as conn:
                # JWT handshakes send client_encoding only.
                assert conn.info.parameter_status("client_encoding") == "UTF8"
                assert conn.info.parameter_status("server_version") is None
                assert conn.info.parameter_status("integer_datetimes") is None
            # The token replaces any password in the URL.
            with_password = url.replace("no_user@", "no_user:not-the-token@")
            sink = Collect()
            await libpq_basebackup(
                with_password,
                timeline.tenant_id,
                timeline.timeline_id,
                None,
                mode_type="primary",
                token=token,
                sink=sink,
            )
            assert sink.data[:2] == b"\x1f\x8b"

    asyncio.run(run())


def test_trust_mode_sends_all_parameters_and_ignores_passwords(
    timeline_store: TimelineStore,
) -> None:
    async def run() -> None:
        async with (
            pageserver(timeline_store) as url,
            await psycopg.AsyncConnection.connect(url, password="whatever") as conn,
        ):
            assert conn.info.parameter_status("server_version") == "14.1"
            assert conn.info.parameter_status("integer_datetimes") == "on"

    asyncio.run(run())


@pytest.mark.parametrize(
    "case",
    [
        ({"scope": "pageserverapi"}, None),
        ({"scope": "tenant", "tenant_id": "ff" * 16}, False),  # per command: wrong tenant
        ({"scope": "admin"}, False),  # per command: ineligible scope
        ({"scope": "safekeeperdata"}, False),
        ({"scope": "tenant"}, False),  # at the handshake: tenant scope without tenant_id
        ({"scope": "nonsense"}, False),  # at the handshake: unknown scope
        ({"scope": "pageserverapi", "exp": 1}, False),  # expired
        ({"scope": "pageserverapi", "aud": "x"}, False),  # an audience is not expected
    ],
)
def test_jwt_claims(
    timeline_store: TimelineStore,
    timeline: Timeline,
    jwt_keys: JwtKeys,
    caplog: pytest.LogCaptureFixture,
    case: tuple[dict[str, object], bool | None],
) -> None:
    claims, transient = case
    caplog.set_level(logging.DEBUG)
    token = jwt_keys.token(**claims)

    async def run() -> None:
        async with pageserver(timeline_store, public_key=jwt_keys.public_pem) as url:
            attempt = libpq_basebackup(
                url,
                timeline.tenant_id,
                timeline.timeline_id,
                None,
                mode_type="primary",
                token=token,
                sink=Collect(),
            )
            if transient is None:
                await attempt
                return
            with pytest.raises(StorageError) as caught:
                await attempt
            assert "JWT authentication error" in str(caught.value)
            assert caught.value.transient is transient
            assert token not in str(caught.value)

    asyncio.run(run())
    assert token not in caplog.text


def test_jwt_signed_by_another_key_or_missing_is_rejected(
    timeline_store: TimelineStore, timeline: Timeline, jwt_keys: JwtKeys
) -> None:
    forged = jwt.encode({"scope": "pageserverapi"}, Ed25519PrivateKey.generate(), algorithm="EdDSA")
    for token, text in ((forged, "JWT authentication error"), (None, "no password supplied")):
        error = failed_basebackup(
            timeline_store, timeline, Faults(), public_key=jwt_keys.public_pem, token=token
        )
        assert text in str(error)
        assert error.transient is False
        assert "connecting to pageserver 127.0.0.1:" in str(error)


# -- faults and what the client makes of them ---------------------------------------


def test_fault_1_connection_refused_and_closed_before_handshake(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(StorageError) as refused:
        basebackup(f"postgres://no_user:secret@{HOST}:{port}", timeline, Collect())
    assert refused.value.transient is True
    assert f"pageserver {HOST}:{port}" in str(refused.value)
    assert "Connection refused" in str(refused.value)
    assert "secret" not in str(refused.value) and "secret" not in refused.value.target

    faults = Faults(drop_before_handshake=True)
    error = failed_basebackup(timeline_store, timeline, faults)
    assert error.transient is True
    assert "server closed the connection unexpectedly" in str(error)
    assert faults.fired == 1


def test_fault_2_auth_rejected_at_handshake(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    token = "a-token-that-must-stay-secret"
    error = failed_basebackup(timeline_store, timeline, Faults(reject_auth=True), token=token)
    assert "JWT authentication error" in str(error)
    assert error.transient is False
    assert token not in str(error)


def test_fault_3_tenant_denied_keeps_the_connection(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    error = failed_basebackup(timeline_store, timeline, Faults(deny_tenant=True))
    assert "JWT authentication error" in str(error)
    assert error.transient is False

    async def run() -> None:
        async with (
            pageserver(timeline_store, faults=Faults(deny_tenant=True)) as url,
            await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
            conn.cursor() as cursor,
        ):
            with pytest.raises(psycopg.errors.InternalError_):
                await cursor.execute(
                    f"basebackup {timeline.tenant_id} {timeline.timeline_id}".encode()
                )
            await cursor.execute(b"set x")  # `set` needs no permission
            assert cursor.statusmessage == "SELECT 1"

    asyncio.run(run())


@pytest.mark.parametrize("fault", ["timeline_not_found", "timeline_archived"])
def test_fault_4_timeline_not_found_before_copy(
    timeline_store: TimelineStore, timeline: Timeline, fault: str
) -> None:
    sink = Collect()
    error = failed_basebackup(timeline_store, timeline, Faults(**{fault: True}), sink)
    assert str(error).endswith("failed: not found (SQLSTATE XX000)")
    assert error.transient is True
    assert not sink.data


def test_fault_5_delay_before_copy_is_waited_out(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    async def run() -> BasebackupStats:
        async with pageserver(timeline_store, faults=Faults(copy_delay=0.3)) as url:
            return await libpq_basebackup(
                url,
                timeline.tenant_id,
                timeline.timeline_id,
                None,
                mode_type="primary",
                token=None,
                sink=Collect(),
            )

    result = asyncio.run(run())
    assert result.duration_ms >= 300
    assert result.connect_micros < 300_000


def test_fault_6_error_mid_stream_leaves_a_truncated_gzip(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    sink = Inflate()
    error = failed_basebackup(timeline_store, timeline, Faults(error_mid_stream=True), sink)
    assert "failpoint basebackup-before-control-file" in str(error)
    assert error.transient is True
    assert len(sink.raw) == Faults().cut_after  # the data up to the cut, and no more
    assert not sink.inflater.eof  # the gzip member never ended


def test_fault_7_error_after_the_end_marker_is_still_an_error(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    sink = Inflate()
    error = failed_basebackup(timeline_store, timeline, Faults(error_after_end_marker=True), sink)
    assert "after the end-of-archive marker" in str(error)
    assert not sink.inflater.eof
    # The hazard: the tarball alone looks complete to a reader that stops at the
    # first zero block. Only reading the stream to its end reveals the failure.
    assert "global/pg_control" in tar_names(bytes(sink.raw), ignore_zeros=False)


def test_fault_8_corrupt_gzip_fails_in_the_sink(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    async def run() -> None:
        async with pageserver(timeline_store, faults=Faults(corrupt_gzip=True)) as url:
            with pytest.raises(zlib.error, match="invalid block type"):
                await libpq_basebackup(
                    url,
                    timeline.tenant_id,
                    timeline.timeline_id,
                    None,
                    mode_type="primary",
                    token=None,
                    sink=Inflate(),
                )

    asyncio.run(run())


def test_fault_8_connection_dropped_mid_stream(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    sink = Collect()
    error = failed_basebackup(timeline_store, timeline, Faults(drop_mid_stream=True), sink)
    assert error.transient is True
    assert "basebackup from pageserver 127.0.0.1:" in str(error)
    assert sink.data  # it broke off mid-stream


def test_faults_fire_a_limited_number_of_times(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    faults = Faults(drop_mid_stream=True, times=1)

    async def run() -> None:
        async with pageserver(timeline_store, faults=faults) as url:

            async def attempt() -> BasebackupStats:
                return await libpq_basebackup(
                    url,
                    timeline.tenant_id,
                    timeline.timeline_id,
                    None,
                    mode_type="primary",
                    token=None,
                    sink=Collect(),
                )

            with pytest.raises(StorageError):
                await attempt()
            assert (await attempt()).compressed_bytes > 0
            # Faults can also be switched while the server runs.
            faults.times = None
            faults.drop_mid_stream = False
            faults.timeline_not_found = True
            with pytest.raises(StorageError, match="not found"):
                await attempt()

    asyncio.run(run())
    assert faults.fired == 2


# -- LSN leases -----------------------------------------------------------


def lease(
    store: TimelineStore, timeline: Timeline, faults: Faults, lsn: Lsn | None = None
) -> datetime.datetime | None:
    async def run() -> datetime.datetime | None:
        async with pageserver(store, faults=faults) as url:
            return await libpq_lease_lsn(
                url,
                TenantShardId(timeline.tenant_id, ShardIndex.unsharded()),
                timeline.timeline_id,
                lsn if lsn is not None else timeline.lsn,
                token=None,
            )

    return asyncio.run(run())


def test_lease_granted_for_the_default_length(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    before = time.time()
    expires = lease(timeline_store, timeline, Faults())
    assert expires is not None
    assert before + 600 - 1 <= expires.timestamp() <= time.time() + 600 + 1


def test_fault_11_lease_not_granted(timeline_store: TimelineStore, timeline: Timeline) -> None:
    assert lease(timeline_store, timeline, Faults(lease_not_granted=True)) is None
    # Below the stand-in's GC cutoff (the stored LSN) a lease is refused too.
    assert lease(timeline_store, timeline, Faults(), Lsn(timeline.lsn - 8)) is None


def test_fault_12_lease_error_is_transient(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    with pytest.raises(StorageError) as caught:
        lease(timeline_store, timeline, Faults(lease_error=True))
    assert caught.value.transient is True
    assert "lease lsn failed (injected)" in str(caught.value)


def test_fault_13_short_lease(timeline_store: TimelineStore, timeline: Timeline) -> None:
    before = time.time()
    expires = lease(timeline_store, timeline, Faults(lease_length=120))
    assert expires is not None
    assert before + 119 <= expires.timestamp() <= time.time() + 121


def test_lease_is_only_ever_extended(timeline_store: TimelineStore, timeline: Timeline) -> None:
    faults = Faults()

    async def run() -> tuple[datetime.datetime | None, datetime.datetime | None]:
        async with pageserver(timeline_store, faults=faults) as url:
            shard = TenantShardId(timeline.tenant_id, ShardIndex(0, 2))
            first = await libpq_lease_lsn(
                url, shard, timeline.timeline_id, timeline.lsn, token=None
            )
            faults.lease_length = 60
            second = await libpq_lease_lsn(
                url, shard, timeline.timeline_id, timeline.lsn, token=None
            )
            return first, second

    first, second = asyncio.run(run())
    assert first is not None and first == second


# -- compute-dev storage -----------------------------------------------------------------------


def test_storage_command_serves_until_sigterm(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    launcher = (
        "import argparse, sys\n"
        "from compute_dev.commands.storage import add_storage_parser\n"
        "parser = argparse.ArgumentParser()\n"
        "add_storage_parser(parser.add_subparsers())\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(args.handler(args))\n"
    )
    argv = [sys.executable, "-c", launcher, "storage", "--dir", str(timeline_store.root)]
    argv += ["--libpq-port", "0", "--grpc-port", "0"]
    argv += ["--safekeeper-ports", "0,0"]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    ) as child:
        try:
            assert child.stdout is not None
            ready = json.loads(child.stdout.readline())
            assert len(ready["safekeeper_connstrings"]) == 2
            assert not ready["pageserver_grpc_url"].endswith(":0")
            assert {
                "tenant_id": timeline.tenant_id,
                "timeline_id": timeline.timeline_id,
                "lsn": str(timeline.lsn),
            } in ready["timelines"]
            out = subprocess.run(
                ["psql", ready["pageserver_libpq_url"], "-X", "-c", "set datestyle to ISO"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert out.stdout.strip() == "SELECT 1", out.stderr
        finally:
            child.send_signal(signal.SIGTERM)
            _, stderr = child.communicate(timeout=30)
    assert child.returncode == 0, stderr
    assert "libpq set" in stderr
