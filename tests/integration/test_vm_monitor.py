"""The vm-monitor over a real websocket, with the test playing the autoscaler-agent.

Each test runs the monitor and its agents on one event loop (`asyncio.run`). Memory pressure
comes from a directory laid out like a cgroup v2 hierarchy whose `memory.stat` the test
rewrites; the monitor's clock is a fake the test advances, so rate limits and staleness are
decided by the test, not by waiting. Waits are on real conditions with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from compute_ctl.vm_monitor import MonitorSettings, VmMonitor, run_vm_monitor
from compute_ctl.vm_monitor.cgroup import MemorySampler
from compute_ctl.vm_monitor.protocol import (
    AgentHealthCheck,
    AgentInternalError,
    AgentInvalidMessage,
    Allocation,
    DownscaleRequest,
    DownscaleResult,
    ErrorContent,
    Granted,
    HealthCheck,
    InternalError,
    NoContent,
    OutboundMessage,
    Target,
    UpscaleConfirmation,
    UpscaleNotification,
    UpscaleRequest,
    decode_outbound,
    encode,
)
from compute_ctl.vm_monitor.server import bind
from compute_ctl.vm_monitor.session import NOT_ENOUGH_SAMPLES, NOTHING_MANAGED
from compute_ctl.vm_monitor.units import MiB
from tests.support.pgserver import PgServer, start_server
from tests.support.waiting import wait_until_async

DEADLINE = 20.0
GiB = 1 << 30
T = TypeVar("T")

# --------------------------------------------------------------------------------------------
# Test doubles and helpers


class FakeClock:
    """The monitor's monotonic clock, moved only by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CgroupStandIn:
    """A directory laid out like `/sys/fs/cgroup` with one `neon-postgres` cgroup."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "cgroup.controllers").write_text("cpu io memory pids\n")
        (root / "neon-postgres").mkdir()
        self.set_usage(0)

    def set_usage(self, non_reclaimable: int) -> None:
        active = non_reclaimable // 2
        stat = self.root / "neon-postgres" / "memory.stat"
        tmp = stat.with_suffix(".tmp")
        tmp.write_text(
            f"anon {non_reclaimable}\nfile {4 * GiB}\nactive_anon {active}\n"
            f"inactive_anon {non_reclaimable - active}\nactive_file 0\ninactive_file 0\n"
        )
        os.replace(tmp, stat)


def run(scenario: Awaitable[T]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(4 * DEADLINE):
            return await scenario

    return asyncio.run(bounded())


@dataclass
class Running:
    monitor: VmMonitor
    url: str
    stop: asyncio.Event
    task: asyncio.Task[None]

    def sampler(self) -> MemorySampler:
        session = self.monitor.current
        assert session is not None and session.sampler is not None
        return session.sampler

    async def samples(self, count: int) -> None:
        """Wait until `count` more samples have been taken."""
        target = self.sampler().samples_taken + count
        await wait_until_async(f"{count} samples", lambda: self.sampler().samples_taken >= target)


@contextlib.asynccontextmanager
async def serving(
    *,
    cgroup: str | None = None,
    filecache_connstr: str | None = None,
    settings: MonitorSettings | None = None,
) -> AsyncIterator[Running]:
    sock = bind("127.0.0.1:0")
    port = sock.getsockname()[1]
    monitor = VmMonitor(cgroup=cgroup, filecache_connstr=filecache_connstr, settings=settings)
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.serve(sock, stop))
    try:
        yield Running(monitor, f"ws://127.0.0.1:{port}/monitor", stop, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE)


@dataclass
class Agent:
    """The autoscaler-agent's side of one connection."""

    ws: ClientConnection
    next_id: int = 2
    received: list[OutboundMessage] = field(default_factory=list)

    @classmethod
    async def connect(cls, url: str) -> Agent:
        return cls(await connect(url, open_timeout=DEADLINE, ping_interval=None, proxy=None))

    async def handshake(self, low: int = 1, high: int = 1) -> Any:
        await self.ws.send(f'{{"min": {low}, "max": {high}}}')
        return _json(await self.recv_text())

    async def ready(self) -> Agent:
        assert await self.handshake() == {"version": 1}
        await self.health()  # answered only once set-up is complete
        return self

    def fresh_id(self) -> int:
        self.next_id += 2
        return self.next_id

    async def recv_text(self) -> str:
        frame = await asyncio.wait_for(self.ws.recv(), DEADLINE)
        assert isinstance(frame, str)
        return frame

    async def recv(self) -> OutboundMessage:
        return decode_outbound(await self.recv_text())

    async def send(self, message: BaseModel) -> None:
        await self.ws.send(encode(message))

    async def health(self) -> None:
        mid = self.fresh_id()
        await self.send(AgentHealthCheck(content=NoContent(), id=mid))
        assert await self.recv() == HealthCheck(id=mid)

    async def downscale(self, mem: int) -> OutboundMessage:
        mid = self.fresh_id()
        await self.send(
            DownscaleRequest(content=Target(target=Allocation(cpu=0.25, mem=mem)), id=mid)
        )
        reply = await self.recv()
        assert reply.id == mid
        return reply

    async def upscale(self, mem: int) -> OutboundMessage:
        mid = self.fresh_id()
        await self.send(
            UpscaleNotification(content=Granted(granted=Allocation(cpu=2, mem=mem)), id=mid)
        )
        reply = await self.recv()
        assert reply.id == mid
        return reply

    async def closed(self) -> tuple[int | None, str | None]:
        """Wait for the monitor to close the connection; its close code and reason."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.wait_for(self.ws.recv(), DEADLINE)
        return self.ws.close_code, self.ws.close_reason

    async def close(self) -> None:
        await self.ws.close()


def _json(text: str) -> Any:
    return json.loads(text)


def cgroup_settings(root: Path, clock: FakeClock, **overrides: Any) -> MonitorSettings:
    values: dict[str, Any] = {
        "cgroup_root": root,
        "total_memory": lambda: GiB,
        "sample_interval": 0.005,
        "clock": clock,
    }
    values.update(overrides)
    return MonitorSettings(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------------------------
# Handshake


def test_handshake_agrees_on_v1() -> None:
    async def scenario() -> None:
        async with serving() as running:
            agent = await Agent.connect(running.url)
            assert await agent.handshake() == {"version": 1}
            await agent.health()
            await agent.close()
            other = await Agent.connect(running.url)
            assert await other.handshake(0, 9) == {"version": 1}
            await other.close()

    run(scenario())


@pytest.mark.parametrize(
    ("low", "high", "error"),
    [
        (
            2,
            3,
            "Received protocol version range <unknown: 2> to <unknown: 3> "
            "which does not overlap with v1.0",
        ),
        (0, 0, "Received protocol version range <invalid: zero> which does not overlap with v1.0"),
    ],
)
def test_handshake_without_a_common_version(low: int, high: int, error: str) -> None:
    async def scenario() -> None:
        async with serving() as running:
            agent = await Agent.connect(running.url)
            assert await agent.handshake(low, high) == {"error": error}
            code, _ = await agent.closed()
            assert code == 1008

    run(scenario())


@pytest.mark.parametrize("first", ['{"min": 2, "max": 1}', '{"versions": [1]}', "hello", b"\x01"])
def test_bad_handshake_ends_the_session_without_an_answer(first: str | bytes) -> None:
    async def scenario() -> None:
        async with serving() as running:
            agent = await Agent.connect(running.url)
            await agent.ws.send(first)
            code, _ = await agent.closed()
            assert code == 1008

    run(scenario())


def test_setup_must_finish_in_time() -> None:
    async def scenario() -> None:
        async with serving(settings=MonitorSettings(setup_timeout=0.2)) as running:
            agent = await Agent.connect(running.url)  # and never says anything
            assert await agent.closed() == (1011, "monitor setup timed out")

    run(scenario())


# --------------------------------------------------------------------------------------------
# Requests without anything to manage


def test_health_checks_echo_their_ids() -> None:
    async def scenario() -> None:
        async with serving() as running:
            agent = await Agent.connect(running.url)
            await agent.handshake()
            for mid in (2, 4, 1000, 2**64 - 2):
                await agent.send(AgentHealthCheck(content=NoContent(), id=mid))
                assert await agent.recv_text() == f'{{"type":"HealthCheck","id":{mid}}}'

    run(scenario())


def test_upscale_is_confirmed_and_downscale_accepted_when_nothing_is_managed() -> None:
    async def scenario() -> None:
        async with serving() as running:
            agent = await (await Agent.connect(running.url)).ready()
            await agent.send(
                UpscaleNotification(content=Granted(granted=Allocation(cpu=2.0, mem=8 * GiB)), id=4)
            )
            assert await agent.recv_text() == '{"type":"UpscaleConfirmation","id":4}'
            await agent.send(
                DownscaleRequest(content=Target(target=Allocation(cpu=0.5, mem=GiB)), id=6)
            )
            assert await agent.recv_text() == (
                '{"type":"DownscaleResult","Ok":true,'
                '"Status":"monitor is not managing cgroup or file cache","id":6}'
            )

    run(scenario())


def test_agent_errors_are_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="compute_ctl.vm_monitor")

    async def scenario() -> None:
        async with serving() as running:
            agent = await (await Agent.connect(running.url)).ready()
            await agent.send(AgentInvalidMessage(content=ErrorContent(error="what?"), id=4))
            await agent.send(AgentInternalError(content=ErrorContent(error="oops"), id=6))
            await agent.health()  # the next frame is the health check's: nothing came before

    run(scenario())
    assert "invalid message we sent (id 4): what?" in caplog.text
    assert "agent experienced an internal error (id 6): oops" in caplog.text


def test_binary_frames_are_ignored() -> None:
    async def scenario() -> None:
        async with serving() as running:
            agent = await (await Agent.connect(running.url)).ready()
            await agent.ws.send(b'{"type":"HealthCheck","content":{},"id":4}')
            await agent.health()

    run(scenario())


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        '{"type":"Bogus","content":{},"id":4}',
        '{"type":"HealthCheck","id":4}',
        '{"type":"DownscaleRequest","content":{"target":{"cpu":1,"mem":"1"}},"id":4}',
    ],
)
def test_undecodable_json_ends_the_session(frame: str) -> None:
    async def scenario() -> None:
        async with serving() as running:
            agent = await (await Agent.connect(running.url)).ready()
            await agent.ws.send(frame)
            code, reason = await agent.closed()
            assert code == 1008
            assert reason is not None
            assert reason.startswith("failed to deserialize text message")
            await wait_until_async("the session to end", lambda: running.monitor.current is None)
            # the monitor itself goes on: the next agent is served
            await (await Agent.connect(running.url)).ready()

    run(scenario())


# --------------------------------------------------------------------------------------------
# One agent at a time


def test_a_new_agent_displaces_the_old_one() -> None:
    async def scenario() -> None:
        async with serving() as running:
            first = await (await Agent.connect(running.url)).ready()
            second = await Agent.connect(running.url)
            assert await first.closed() == (1000, "replaced by a new connection")
            assert await second.handshake() == {"version": 1}
            await second.health()
            assert running.monitor.sessions_started == 2
            # even a newcomer that fails its handshake displaces the current agent
            third = await Agent.connect(running.url)
            assert await second.closed() == (1000, "replaced by a new connection")
            await third.ws.send("nonsense")
            assert (await third.closed())[0] == 1008

    run(scenario())


def test_stopping_closes_the_session_and_the_listener() -> None:
    async def scenario() -> None:
        async with serving() as running:
            agent = await (await Agent.connect(running.url)).ready()
            running.stop.set()
            assert await agent.closed() == (1001, "vm-monitor is stopping")
            await asyncio.wait_for(running.task, DEADLINE)
            with pytest.raises(OSError):
                await connect(running.url, open_timeout=DEADLINE, proxy=None)

    run(scenario())


def test_run_vm_monitor_is_cancelled_with_the_compute() -> None:
    async def scenario() -> None:
        port = free_port()
        task = asyncio.create_task(
            run_vm_monitor(
                f"127.0.0.1:{port}",
                None,
                "host=127.0.0.1 port=1 connect_timeout=1",
                disable_lfc_resizing=True,
            )
        )
        agent = await _connect_when_listening(f"ws://127.0.0.1:{port}/monitor")
        await agent.ready()
        # resizing disabled: no Postgres connection is attempted (port 1 would fail set-up)
        reply = await agent.downscale(GiB)
        assert reply == DownscaleResult(ok=True, status=NOTHING_MANAGED, id=reply.id)
        task.cancel()
        assert await agent.closed() == (1001, "vm-monitor is stopping")
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, DEADLINE)

    run(scenario())


def test_listen_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="compute_ctl.vm_monitor")

    async def scenario() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            await asyncio.wait_for(
                run_vm_monitor(f"127.0.0.1:{port}", None, "", disable_lfc_resizing=True),
                DEADLINE,
            )

    run(scenario())
    assert "vm-monitor: failed to bind to 127.0.0.1:" in caplog.text


async def _connect_when_listening(url: str) -> Agent:
    async with asyncio.timeout(DEADLINE):
        while True:
            try:
                return await Agent.connect(url)
            except OSError:
                await asyncio.sleep(0.01)


# --------------------------------------------------------------------------------------------
# cgroup: memory pressure and downscale decisions


@pytest.fixture
def cgroup_root(tmp_path: Path) -> CgroupStandIn:
    return CgroupStandIn(_mkdir(tmp_path / "cgroup"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_memory_pressure_requests_upscale_at_most_once_a_second(
    cgroup_root: CgroupStandIn, clock: FakeClock
) -> None:
    async def scenario() -> None:
        settings = cgroup_settings(cgroup_root.root, clock)
        cgroup_root.set_usage(100 * MiB)
        async with serving(cgroup="neon-postgres", settings=settings) as running:
            agent = await (await Agent.connect(running.url)).ready()
            await running.samples(10)
            await agent.health()  # below the threshold (870.4 MiB of 1 GiB): nothing was asked

            cgroup_root.set_usage(900 * MiB)
            assert await agent.recv_text() == '{"type":"UpscaleRequest","id":3}'

            # Still under pressure, but less than a second later (the clock stands still)
            await running.samples(20)
            await agent.health()
            clock.advance(0.75)
            await running.samples(20)
            await agent.health()

            clock.advance(0.25)
            assert await agent.recv() == UpscaleRequest(id=5)

            # The agent grants memory: the threshold moves to 85 % of (2 GiB - 100 MiB)
            assert await agent.upscale(2 * GiB) == UpscaleConfirmation(id=agent.next_id)
            clock.advance(5)
            await running.samples(20)
            await agent.health()

            # Pressure against the new threshold asks again, with the next odd id
            cgroup_root.set_usage(1700 * MiB)
            assert await agent.recv() == UpscaleRequest(id=7)

    run(scenario())


def test_downscale_waits_for_enough_samples(cgroup_root: CgroupStandIn, clock: FakeClock) -> None:
    async def scenario() -> None:
        # One sample at once, the next an hour later
        settings = cgroup_settings(cgroup_root.root, clock, sample_interval=3600.0)
        async with serving(cgroup="neon-postgres", settings=settings) as running:
            agent = await (await Agent.connect(running.url)).ready()
            reply = await agent.downscale(GiB)
            assert reply == DownscaleResult(ok=False, status=NOT_ENOUGH_SAMPLES, id=reply.id)
            assert encode(reply) == (
                '{"type":"DownscaleResult","Ok":false,'
                f'"Status":"haven\'t received enough cgroup memory stats yet","id":{reply.id}}}'
            )

            # No sample for more than 5 s: that is an error, not a refusal
            clock.advance(5.5)
            reply = await agent.downscale(GiB)
            assert reply == InternalError(error="failed to downscale", id=reply.id)
            await agent.health()  # the session goes on

    run(scenario())


def test_downscale_refused_when_the_threshold_would_be_too_low(
    cgroup_root: CgroupStandIn, clock: FakeClock
) -> None:
    async def scenario() -> None:
        cgroup_root.set_usage(800 * MiB)
        settings = cgroup_settings(cgroup_root.root, clock)
        async with serving(cgroup="neon-postgres", settings=settings) as running:
            agent = await (await Agent.connect(running.url)).ready()
            await running.samples(5)
            reply = await agent.downscale(GiB)
            assert reply == DownscaleResult(
                ok=False,
                status="calculated memory threshold too low: 785.4 MiB (new threshold) "
                "< 800 (current usage) + 100 (downscale buffer)",
                id=reply.id,
            )

    run(scenario())


def test_downscale_accepted_lowers_the_threshold(
    cgroup_root: CgroupStandIn, clock: FakeClock
) -> None:
    async def scenario() -> None:
        cgroup_root.set_usage(200 * MiB)
        settings = cgroup_settings(cgroup_root.root, clock)
        async with serving(cgroup="neon-postgres", settings=settings) as running:
            agent = await (await Agent.connect(running.url)).ready()
            await running.samples(5)
            reply = await agent.downscale(GiB)
            assert reply == DownscaleResult(
                ok=True,
                status="set cgroup memory threshold from 870.4 MiB to 785.4 MiB, "
                "of new total 924 MiB",
                id=reply.id,
            )
            assert await agent.upscale(2 * GiB) == UpscaleConfirmation(id=agent.next_id)
            reply = await agent.downscale(GiB)
            assert isinstance(reply, DownscaleResult)
            assert reply.status == (
                "set cgroup memory threshold from 1655.8 MiB to 785.4 MiB, of new total 924 MiB"
            )

    run(scenario())


def test_no_cgroup_v2_is_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="compute_ctl.vm_monitor")
    v1_root = _mkdir(tmp_path / "v1")
    _mkdir(v1_root / "memory")

    async def scenario() -> None:
        settings = MonitorSettings(cgroup_root=v1_root)
        async with serving(cgroup="neon-postgres", settings=settings) as running:
            for _ in range(2):
                agent = await (await Agent.connect(running.url)).ready()
                reply = await agent.downscale(GiB)
                assert reply == DownscaleResult(ok=True, status=NOTHING_MANAGED, id=reply.id)
                await agent.close()
                await wait_until_async(
                    "the session to end", lambda: running.monitor.current is None
                )

    run(scenario())
    lines = [
        r.getMessage()
        for r in caplog.records
        if "memory pressure is not monitored" in r.getMessage()
    ]
    assert lines == [
        "memory pressure is not monitored (no upscale will be requested): "
        f"cgroup v2 is not available: {v1_root} is not a unified cgroup hierarchy"
    ]


# --------------------------------------------------------------------------------------------
# The file cache, through a real Postgres


NEON_SETTINGS = {"neon.max_file_cache_size": "8GB", "neon.file_cache_size_limit": "128MB"}


@pytest.fixture
def neon_like_pg() -> Iterator[PgServer]:
    """Stock Postgres with the file cache settings as placeholders (what `neon` defines)."""
    server = start_server(settings=NEON_SETTINGS)
    try:
        yield server
    finally:
        server.stop()


def lfc_limit(server: PgServer) -> str:
    """The limit as written by ALTER SYSTEM (read from the files, so no reload race)."""
    with psycopg.connect(server.connstr(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT setting FROM pg_file_settings "
            "WHERE name = 'neon.file_cache_size_limit' ORDER BY seqno DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    return str(row[0])


def filecache_connstr(server: PgServer) -> str:
    return f"{server.connstr()}?application_name=vm-monitor"


@pytest.mark.postgres
def test_file_cache_follows_the_memory(neon_like_pg: PgServer) -> None:
    async def scenario() -> None:
        settings = MonitorSettings(total_memory=lambda: 4 * GiB)
        async with serving(
            filecache_connstr=filecache_connstr(neon_like_pg), settings=settings
        ) as running:
            agent = await (await Agent.connect(running.url)).ready()
            assert lfc_limit(neon_like_pg) == "3072"  # 0.75 × 4 GiB, at session start

            assert await agent.upscale(2 * GiB) == UpscaleConfirmation(id=agent.next_id)
            assert lfc_limit(neon_like_pg) == "1461"  # 0.75 × (2 GiB - 100 MiB)

            reply = await agent.downscale(GiB)
            assert reply == DownscaleResult(
                ok=True, status="set file cache size to 607 MiB", id=reply.id
            )
            assert lfc_limit(neon_like_pg) == "607"  # (1 GiB - 100 MiB - 256 MiB) / 1.1

    run(scenario())


@pytest.mark.postgres
def test_file_cache_and_cgroup_together(
    neon_like_pg: PgServer, cgroup_root: CgroupStandIn, clock: FakeClock
) -> None:
    async def scenario() -> None:
        cgroup_root.set_usage(200 * MiB)
        settings = cgroup_settings(cgroup_root.root, clock)
        async with serving(
            cgroup="neon-postgres",
            filecache_connstr=filecache_connstr(neon_like_pg),
            settings=settings,
        ) as running:
            agent = await (await Agent.connect(running.url)).ready()
            await running.samples(5)
            reply = await agent.downscale(GiB)
            assert isinstance(reply, DownscaleResult)
            assert reply.status == (
                "set file cache size to 607 MiB; set cgroup memory threshold from 870.4 MiB "
                "to 785.4 MiB, of new total 924 MiB"
            )

    run(scenario())


@pytest.mark.postgres
def test_file_cache_is_capped_by_its_maximum() -> None:
    server = start_server(settings={**NEON_SETTINGS, "neon.max_file_cache_size": "1GB"})
    try:

        async def scenario() -> None:
            settings = MonitorSettings(total_memory=lambda: 4 * GiB)
            async with serving(
                filecache_connstr=filecache_connstr(server), settings=settings
            ) as running:
                agent = await (await Agent.connect(running.url)).ready()
                assert lfc_limit(server) == "1024"
                assert await agent.upscale(8 * GiB) == UpscaleConfirmation(id=agent.next_id)
                assert lfc_limit(server) == "1024"

        run(scenario())
    finally:
        server.stop()


@pytest.mark.postgres
def test_file_cache_reads_survive_one_lost_connection(neon_like_pg: PgServer) -> None:
    async def scenario() -> None:
        settings = MonitorSettings(total_memory=lambda: 4 * GiB)
        async with serving(
            filecache_connstr=filecache_connstr(neon_like_pg), settings=settings
        ) as running:
            agent = await (await Agent.connect(running.url)).ready()
            with psycopg.connect(neon_like_pg.connstr(), autocommit=True) as conn:
                killed = conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'vm-monitor'"
                ).fetchone()
            assert killed == (1,)
            assert await agent.upscale(2 * GiB) == UpscaleConfirmation(id=agent.next_id)
            assert lfc_limit(neon_like_pg) == "1461"

            neon_like_pg.stop()  # now every attempt fails: the agent is told
            reply = await agent.upscale(4 * GiB)
            assert reply == InternalError(error="failed to handle upscale", id=reply.id)
            reply = await agent.downscale(GiB)
            assert reply == InternalError(error="failed to downscale", id=reply.id)
            await agent.health()

    run(scenario())


@pytest.mark.postgres
def test_stock_postgres_has_no_file_cache(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="compute_ctl.vm_monitor")
    server = start_server()
    try:

        async def scenario() -> None:
            async with serving(filecache_connstr=server.connstr()) as running:
                for _ in range(2):
                    agent = await (await Agent.connect(running.url)).ready()
                    assert await agent.upscale(2 * GiB) == UpscaleConfirmation(id=agent.next_id)
                    reply = await agent.downscale(GiB)
                    assert reply == DownscaleResult(ok=True, status=NOTHING_MANAGED, id=reply.id)
                    await agent.close()
                    await wait_until_async(
                        "the session to end", lambda: running.monitor.current is None
                    )

        run(scenario())
    finally:
        server.stop()
    notices = [
        r.getMessage() for r in caplog.records if "file cache is not managed" in r.getMessage()
    ]
    assert notices == [
        "the file cache is not managed: "
        "Postgres has no neon.max_file_cache_size setting (no neon extension)"
    ]


def test_unreachable_postgres_fails_the_session_setup() -> None:
    async def scenario() -> None:
        connstr = f"host=127.0.0.1 port={free_port()} user=cloud_admin dbname=postgres"
        async with serving(filecache_connstr=connstr) as running:
            agent = await Agent.connect(running.url)
            assert await agent.handshake() == {"version": 1}
            assert await agent.closed() == (1011, "monitor setup failed")

    run(scenario())


def test_an_agent_silent_in_its_handshake_is_displaced_at_once() -> None:
    async def scenario() -> None:
        async with serving() as running:  # set-up may take 4 s: displacement must not wait
            silent = await Agent.connect(running.url)
            await wait_until_async("the first session", lambda: running.monitor.current is not None)
            second = await Agent.connect(running.url)
            # closed for the newcomer, not by its own set-up timeout
            assert await silent.closed() == (1000, "replaced by a new connection")
            await second.ready()

    run(scenario())
