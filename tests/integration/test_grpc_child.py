"""The gRPC basebackup in its child process (`storage/grpc_child.py`), against the gRPC stand-in.

What the child must keep of the in-process client: the same bytes in the same chunks, and every
failure the same `StorageError` (text, target, transient flag), so the retry policy decides as
before. What it adds: a child that dies mid-stream is a transient error and the next try gets a
new one; a cancelled or failed attempt leaves no child behind; the token travels on stdin only;
the child dies with its parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from compute_ctl.errors import StorageError
from compute_ctl.spec.models import PageserverProtocol
from compute_ctl.spec.types import Lsn, ShardIndex, TenantId, TimelineId
from compute_ctl.storage import grpc_child
from compute_ctl.storage.basebackup import get_basebackup
from compute_ctl.storage.grpc import grpc_basebackup
from compute_ctl.storage.grpc_child import (
    HEADER,
    BasebackupRequest,
    basebackup_in_child,
    child_argv,
    start_child,
)
from compute_ctl.storage.pageserver import PageserverClient, _GrpcClient
from compute_ctl.storage.retry import RetryPolicy
from compute_ctl.storage.sink import BasebackupStats, ChunkSink
from compute_dev.standins import timelines
from compute_dev.standins.grpc_server import GrpcFaults, GrpcStandIn, start_grpc_stand_in
from compute_dev.standins.timelines import Timeline, TimelineStore
from tests.integration.conftest import JwtKeys
from tests.integration.test_basebackup import parsed
from tests.support.harness import running
from tests.support.stored_timelines import store_noise_timeline
from tests.support.waiting import wait_until, wait_until_async

CHUNK = 256 * 1024
LSN = Lsn.parse("0/1500708")
FAST = RetryPolicy(max_retries=3, initial_delay=0.0, multiplier=1.0)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


@pytest.fixture(scope="module")
def store() -> Iterator[TimelineStore]:
    root = Path(tempfile.mkdtemp(prefix="grpc-child-"))
    try:
        yield TimelineStore(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def timeline(store: TimelineStore) -> Timeline:
    """A stored timeline without initdb whose gzip stream is 8 MiB of incompressible data:
    far more than the pipe and both ends' buffers hold, so a child killed at the first chunk
    cannot have sent its last one."""
    return store_noise_timeline(store, LSN, relation_bytes=8 * 1024 * 1024, seed=11)


@pytest.fixture
def frozen_mtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same mtime in every tarball (the stand-in runs in this process), so that two streams
    compare byte for byte."""
    monkeypatch.setattr(timelines, "_now", lambda: 1_700_000_000)


@asynccontextmanager
async def stand_in(store: TimelineStore, **options: Any) -> AsyncIterator[GrpcStandIn]:
    server = await start_grpc_stand_in(store, "127.0.0.1", 0, **options)
    try:
        yield server
    finally:
        await server.stop(None)


class Collect:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)


class Stall(Collect):
    """Keeps the first chunk, then waits until released: the child is alive meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def feed(self, chunk: bytes) -> None:  # type: ignore[override]
        self.chunks.append(chunk)
        await self.release.wait()


@dataclass(frozen=True)
class Call:
    """One basebackup, as the child and as the in-process client are asked for it."""

    url: str
    tenant: str
    timeline: str
    lsn: Lsn | None = LSN
    shard: ShardIndex = field(default_factory=ShardIndex.unsharded)
    token: str | None = None
    replica: bool = False

    def request(self) -> BasebackupRequest:
        return BasebackupRequest(
            url=self.url,
            tenant=self.tenant,
            timeline=self.timeline,
            lsn=int(self.lsn) if self.lsn is not None else None,
            replica=self.replica,
            shard=str(self.shard),
            token=self.token,
        )

    async def in_process(self, sink: ChunkSink) -> int:
        return await grpc_basebackup(
            self.url,
            TenantId(self.tenant),
            TimelineId(self.timeline),
            self.lsn,
            replica=self.replica,
            token=self.token,
            sink=sink,
            shard=self.shard,
        )


def call_for(server: GrpcStandIn, stored: Timeline, **changes: Any) -> Call:
    return replace(Call(server.url, stored.tenant_id, stored.timeline_id), **changes)


def child_pids() -> list[int]:
    """This process's live grpc_child children."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == os.getpid() and state != "Z" and grpc_child.MODULE.encode() in cmdline:
            found.append(int(entry.name))
    return found


async def the_child() -> int:
    await wait_until_async("a grpc_child process", lambda: len(child_pids()) == 1)
    (pid,) = child_pids()
    return pid


# --- the same stream, the same errors -----------------------------------------------------------


def test_frames_carry_the_stream_chunk_for_chunk(timeline: Timeline, frozen_mtime: None) -> None:
    async def scenario() -> None:
        async with stand_in(timeline_store(timeline)) as server:
            call = call_for(server, timeline, shard=ShardIndex(0, 4), replica=True)
            direct, via_child = Collect(), Collect()
            received = await call.in_process(direct)
            result = await basebackup_in_child(call.request(), via_child)
            assert via_child.chunks == direct.chunks
            assert len(via_child.chunks) > 32
            assert result.compressed_bytes == received == sum(map(len, direct.chunks))
            assert result.connect_micros > 0
            first, second = server.service.basebackup_requests
            assert (second.lsn, second.replica) == (first.lsn, first.replica) == (LSN, True)
            assert server.service.calls[1].headers == server.service.calls[0].headers
            assert server.service.calls[1].headers["neon-shard-id"] == "0004"
            assert child_pids() == []

    run(scenario)


def timeline_store(timeline: Timeline) -> TimelineStore:
    return TimelineStore(timeline.datadir.parents[4])


ERROR_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("not-found", {"faults": GrpcFaults(start_code=grpc.StatusCode.NOT_FOUND)}, {}),
    (
        "unavailable",
        {"faults": GrpcFaults(start_code=grpc.StatusCode.UNAVAILABLE, start_message="inactive")},
        {},
    ),
    ("internal-after-2-chunks", {"faults": GrpcFaults(internal_after_chunks=2)}, {}),
    ("lsn-too-old", {}, {"lsn": Lsn.parse("0/1000000")}),
    ("lsn-not-reached", {}, {"lsn": Lsn.parse("1/0")}),
    ("shard-one", {}, {"shard": ShardIndex(1, 4)}),
    ("unknown-timeline", {}, {"timeline": str(TimelineId.generate())}),
    ("no-token", {"public_key": "KEY"}, {}),
    ("other-tenant", {"public_key": "KEY"}, {"token": "OTHER-TENANT"}),
    ("refused", {"closed": True}, {"token": "secret-token"}),
    ("bad-url", {}, {"url": "grpc://h:port"}),
]


@pytest.mark.parametrize(("options", "changes"), [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])  # fmt: skip
def test_errors_are_the_in_process_clients(
    timeline: Timeline, jwt_keys: JwtKeys, options: dict[str, Any], changes: dict[str, Any]
) -> None:
    """Text, target and transient flag, field by field; the token in neither."""
    options = dict(options)
    closed = options.pop("closed", False)
    if options.get("public_key") == "KEY":
        options["public_key"] = jwt_keys.public_pem
    if changes.get("token") == "OTHER-TENANT":
        changes = {**changes, "token": jwt_keys.token(scope="tenant", tenant_id="0" * 32)}

    async def scenario() -> None:
        async with stand_in(timeline_store(timeline), **options) as server:
            call = call_for(server, timeline, **changes)
            if closed:
                with socket.socket() as unused:  # bound, never listening: refused
                    unused.bind(("127.0.0.1", 0))
                    port = unused.getsockname()[1]
                    call = replace(call, url=f"grpc://no_user:hunter2@127.0.0.1:{port}")
                    direct, via_child = await both_fail(call)
            else:
                direct, via_child = await both_fail(call)
            assert (str(via_child), via_child.target, via_child.transient) == (
                str(direct),
                direct.target,
                direct.transient,
            )
            for secret in (call.token, "hunter2"):
                if secret:
                    assert secret not in via_child.one_line()

    run(scenario)


async def both_fail(call: Call) -> tuple[StorageError, StorageError]:
    direct_sink, child_sink = Collect(), Collect()
    with pytest.raises(StorageError) as direct:
        await call.in_process(direct_sink)
    with pytest.raises(StorageError) as via_child:
        await basebackup_in_child(call.request(), child_sink)
    assert len(child_sink.chunks) == len(direct_sink.chunks)
    assert child_pids() == []
    return direct.value, via_child.value


def test_sink_errors_propagate_and_the_child_is_reaped(timeline: Timeline) -> None:
    class Full(Collect):
        def feed(self, chunk: bytes) -> None:
            raise OSError("No space left on device")

    async def scenario() -> None:
        async with stand_in(timeline_store(timeline)) as server:
            with pytest.raises(OSError, match="No space left"):
                await basebackup_in_child(call_for(server, timeline).request(), Full())
            assert child_pids() == []

    run(scenario)


# --- a child that dies, a parent that gives up ---------------------------------------------------


class KillAtFirstChunk(Collect):
    """Kills the child (SIGKILL) when the first chunk arrives, then keeps collecting."""

    def __init__(self, inner: ChunkSink | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.killed: int | None = None

    async def feed(self, chunk: bytes) -> None:  # type: ignore[override]
        if self.killed is None:
            self.killed = await the_child()
            os.kill(self.killed, signal.SIGKILL)
        self.chunks.append(chunk)
        if self.inner is not None:
            result = self.inner.feed(chunk)
            if result is not None:
                await result


def test_a_child_killed_mid_stream_is_a_transient_error(timeline: Timeline) -> None:
    async def scenario() -> None:
        async with stand_in(timeline_store(timeline)) as server:
            sink = KillAtFirstChunk()
            with pytest.raises(StorageError) as caught:
                await basebackup_in_child(call_for(server, timeline).request(), sink)
            assert str(caught.value) == (
                f"basebackup from pageserver {server.url} failed: the gRPC client process was "
                "killed by signal SIGKILL before the end of the stream"
            )
            assert caught.value.transient
            assert caught.value.target == server.url
            assert 0 < sum(map(len, sink.chunks)) < 8 * 1024 * 1024
            assert sink.killed is not None
            assert not running(sink.killed) and child_pids() == []

    run(scenario)


@dataclass
class FirstAttemptKilled:
    """The real gRPC client, whose first attempt's child is killed at its first chunk."""

    inner: PageserverClient
    attempts: int = 0

    @property
    def protocol(self) -> PageserverProtocol:
        return self.inner.protocol

    async def basebackup(self, lsn: Lsn | None, sink: ChunkSink) -> BasebackupStats:
        self.attempts += 1
        if self.attempts == 1:
            sink = KillAtFirstChunk(sink)
        return await self.inner.basebackup(lsn, sink)

    async def lease_lsn(self, url: str, shard: ShardIndex, lsn: Lsn) -> Any:
        raise NotImplementedError

    def started_ahead(self) -> AbstractAsyncContextManager[None]:
        return self.inner.started_ahead()


def test_a_killed_child_is_retried_with_a_new_one(
    timeline: Timeline, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir(mode=0o700)

    async def scenario() -> None:
        async with stand_in(timeline_store(timeline)) as server:
            pspec = parsed(timeline, "postgres://no_user@127.0.0.1:1", server.url, "grpc")
            client = FirstAttemptKilled(_GrpcClient(pspec))
            with caplog.at_level(logging.WARNING, logger="compute_ctl.storage.retry"):
                stats = await get_basebackup(client, None, pgdata, policy=FAST)
            assert client.attempts == 2
            assert len(server.service.basebackup_requests) == 2
            assert stats.compressed_bytes > 8 * 1024 * 1024
            assert (pgdata / "base" / "1" / "1259").stat().st_size == 8 * 1024 * 1024
            assert "killed by signal SIGKILL before the end of the stream" in caplog.text
            assert child_pids() == []

    run(scenario)


def test_the_child_started_ahead_serves_the_first_attempt(
    timeline: Timeline, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with stand_in(timeline_store(timeline)) as server:
            pspec = parsed(timeline, "postgres://no_user@127.0.0.1:1", server.url, "grpc")
            client = _GrpcClient(pspec)
            async with client.started_ahead():
                spare = await the_child()
                await get_basebackup(client, None, tmp_path, policy=FAST)
                # Used, not merely kept: it is reaped, and no other child is running.
                assert not Path(f"/proc/{spare}").exists()
                assert child_pids() == []
            assert len(server.service.basebackup_requests) == 1

    run(scenario)


@pytest.mark.parametrize("failing", [False, True], ids=["unused", "failed-before-the-lsn"])
def test_a_child_started_ahead_and_not_used_is_reaped(timeline: Timeline, failing: bool) -> None:
    async def scenario() -> None:
        pspec = parsed(timeline, "postgres://no_user@127.0.0.1:1", "grpc://127.0.0.1:1", "grpc")
        client = _GrpcClient(pspec)
        with contextlib.suppress(LookupError):
            async with client.started_ahead():
                spare = await the_child()
                if failing:
                    raise LookupError("the start failed before its basebackup")
        assert not Path(f"/proc/{spare}").exists()

    run(scenario)


def test_a_child_that_cannot_start_is_a_transient_error(
    timeline: Timeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No interpreter to run (a broken install, or no processes left): started ahead, a
    warning; at the attempt, a transient StorageError saying so."""
    monkeypatch.setattr(grpc_child, "child_argv", lambda: ["/nonexistent/python3"])

    async def scenario() -> None:
        pspec = parsed(timeline, "postgres://no_user@127.0.0.1:1", "grpc://127.0.0.1:1", "grpc")
        client = _GrpcClient(pspec)
        async with client.started_ahead():
            with pytest.raises(StorageError) as caught:
                await client.basebackup(None, Collect())
        assert caught.value.transient
        assert str(caught.value).startswith(
            "basebackup from pageserver grpc://127.0.0.1:1 failed: could not start the gRPC "
            "client process: "
        )
        assert "could not start the gRPC client process ahead" in caplog.text

    run(scenario)


def test_cancelling_the_attempt_kills_and_reaps_the_child(timeline: Timeline) -> None:
    async def scenario() -> None:
        async with stand_in(timeline_store(timeline)) as server:
            sink = Stall()
            task = asyncio.ensure_future(
                basebackup_in_child(call_for(server, timeline).request(), sink)
            )
            pid = await the_child()
            await wait_until_async("the first chunk", lambda: bool(sink.chunks))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not Path(f"/proc/{pid}").exists()  # killed and reaped: not even a zombie

    run(scenario)


def test_the_token_travels_on_stdin_only(timeline: Timeline, jwt_keys: JwtKeys) -> None:
    async def scenario() -> None:
        token = jwt_keys.token(scope="tenant", tenant_id=timeline.tenant_id)
        async with stand_in(timeline_store(timeline), public_key=jwt_keys.public_pem) as server:
            sink = Stall()
            task = asyncio.ensure_future(
                basebackup_in_child(call_for(server, timeline, token=token).request(), sink)
            )
            pid = await the_child()
            await wait_until_async("the first chunk", lambda: bool(sink.chunks))
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert cmdline.split(b"\0")[:-1] == [os.fsencode(a) for a in child_argv()]
            for shown in (cmdline, environ):
                assert token.encode() not in shown
                assert token.split(".")[2].encode() not in shown  # not even its signature
            sink.release.set()
            result = await task
            assert result.compressed_bytes > 0
            assert server.service.calls[0].authorized

    run(scenario)


# --- the child on its own -----------------------------------------------------------------------


def read_frames(data: bytes) -> list[tuple[bytes, bytes]]:
    """The whole frames of `data` (a child that stopped early may have cut the last one)."""
    frames = []
    while len(data) >= HEADER.size:
        kind, length = HEADER.unpack_from(data)
        if len(data) < HEADER.size + length:
            break
        frames.append((kind, data[HEADER.size : HEADER.size + length]))
        data = data[HEADER.size + length :]
    return frames


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"not json\n", "Expecting value"),
        (b"[]\n", "not a JSON object"),
        (b'{"url": "grpc://a:1"}\n', "field 'tenant' is missing or of the wrong type"),
        (b'{"url": "' + b"a" * (2 << 20) + b'"}\n', "the request is longer than 1048576 bytes"),
    ],
    ids=["not-json", "not-an-object", "no-tenant", "too-long"],
)
def test_a_bad_request_is_a_permanent_error_frame(line: bytes, problem: str) -> None:
    done = subprocess.run(child_argv(), input=line, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    ((kind, payload),) = read_frames(done.stdout)
    assert kind == b"E"
    error = json.loads(payload)
    assert error["transient"] is False
    assert "the gRPC client process got an invalid request" in error["message"]
    assert problem in error["message"]


def test_the_child_refuses_a_stdin_that_is_not_a_pipe(tmp_path: Path) -> None:
    """Started by hand with a file: it says why, in the compute's log format, and exits."""
    request = tmp_path / "request.json"
    request.write_bytes(b"{}\n")
    with request.open("rb") as stdin:
        done = subprocess.run(
            child_argv(), stdin=stdin, capture_output=True, timeout=60, check=False
        )
    assert (done.returncode, done.stdout) == (grpc_child.EXIT_USAGE, b"")
    (line,) = done.stderr.decode().splitlines()
    assert line.endswith(
        " ERROR compute_ctl.storage.grpc_child runs under compute_ctl only: "
        "stdin and stdout must be pipes"
    )


def test_the_child_ends_at_eof_on_stdin(timeline: Timeline) -> None:
    """Before its request, and in the middle of the stream: no final frame, exit status 3."""
    done = subprocess.run(child_argv(), input=b"", capture_output=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (grpc_child.EXIT_PARENT_GONE, b"")

    async def scenario() -> None:
        async with stand_in(timeline_store(timeline)) as server:
            process = await start_child()
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(call_for(server, timeline).request().encode())
            kind, length = HEADER.unpack(await process.stdout.readexactly(HEADER.size))
            assert kind == b"D"
            await process.stdout.readexactly(length)
            process.stdin.close()
            rest = await process.stdout.read()
            assert await process.wait() == grpc_child.EXIT_PARENT_GONE
            assert {kind for kind, _ in read_frames(rest)} <= {b"D"}  # no final frame

    run(scenario)


def test_the_child_dies_with_its_parent() -> None:
    """PR_SET_PDEATHSIG alone: the child's stdin stays open (this test holds its write end),
    and still the child dies when the process that started it is killed."""
    read_end, write_end = os.pipe()
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(sys.argv[1:], stdin=int(sys.stdin.readline()), "
        "stdout=subprocess.PIPE)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code, *child_argv()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        pass_fds=(read_end,),
        text=True,
    )
    try:
        assert parent.stdin is not None and parent.stdout is not None
        parent.stdin.write(f"{read_end}\n")
        parent.stdin.close()
        pid = int(parent.stdout.readline())
        # grpcio is loaded after the prctl call: once it is mapped, the child has asked.
        wait_until("the child loads grpcio", lambda: "cygrpc" in maps_of(pid))
        parent.kill()
        parent.wait()
        wait_until("the child dies", lambda: not running(pid))
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        assert parent.stdout is not None
        parent.stdout.close()
        os.close(read_end)
        os.close(write_end)


def maps_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""
