"""Finding the start LSN: `postgres --sync-safekeepers` driven through fake executables, and the
TIMELINE_STATUS fast path against small libpq servers that record what the client sent."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from compute_ctl.compute.prepare import PrepareOptions, basebackup_lsn
from compute_ctl.params import CGEXEC_PREFIX
from compute_ctl.spec.models import ComputeMode, ComputeSpec
from compute_ctl.spec.resolve import ParsedSpec, resolve
from compute_ctl.spec.types import Lsn, TenantId, TimelineId
from compute_ctl.state import ComputeMetrics
from compute_ctl.storage import safekeepers as sk
from compute_ctl.storage.retry import NO_RETRY, SYNC_SAFEKEEPERS_RETRY
from compute_ctl.storage.safekeepers import (
    PER_SAFEKEEPER_TIMEOUT,
    SyncSafekeepersError,
    TimelineStatus,
    check_already_synced,
    judge_timeline_statuses,
    quorum,
    sync_safekeepers,
    sync_safekeepers_argv,
)
from compute_dev.standins.pgwire import PgConnection, Query, QueryError, SqlState, handle_client
from compute_dev.standins.safekeeper import STATUS_COLUMNS

LOGGER = "compute_ctl.storage.safekeepers"
TENANT = TenantId("0123456789abcdef0123456789abcdef")
TIMELINE = TimelineId("fedcba9876543210fedcba9876543210")
TOKEN = "eyJ.secret-token.sig"


class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


# --------------------------------------------------------------------------------------------
# Fake `postgres` programs

PREAMBLE = """\
import json, os, signal, sys, time
from pathlib import Path
STATE = Path(os.environ["FAKE_STATE"])
if sys.argv[1:] != ["--sync-safekeepers"]:
    print("bad argv", sys.argv[1:], file=sys.stderr)
    sys.exit(64)
runs = len(list(STATE.glob("run-*"))) + 1
(STATE / f"run-{runs}").write_text(json.dumps({
    "PGDATA": os.environ.get("PGDATA"),
    "NEON_AUTH_TOKEN": os.environ.get("NEON_AUTH_TOKEN"),
}))
"""


@dataclass
class Fake:
    program: Path
    state: Path
    pgdata: Path

    @property
    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("AUTOSCALING", "NEON_AUTH_TOKEN")}
        env["FAKE_STATE"] = str(self.state)
        return env

    def runs(self) -> list[dict[str, str | None]]:
        files = sorted(self.state.glob("run-*"), key=lambda p: int(p.name.split("-")[1]))
        return [json.loads(p.read_text()) for p in files]


MakeFake = Callable[[str], Fake]


@pytest.fixture
def make_fake(tmp_path: Path) -> Iterator[MakeFake]:
    def make(body: str) -> Fake:
        bindir = tmp_path / "bin"
        bindir.mkdir(exist_ok=True)
        program = bindir / "postgres"
        program.write_text(f"#!{sys.executable}\n{PREAMBLE}{textwrap.dedent(body)}")
        program.chmod(0o755)
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        pgdata = tmp_path / "pgdata"
        pgdata.mkdir(exist_ok=True)
        return Fake(program, state, pgdata)

    yield make


def _run(fake: Fake, token: str | None = None, **kw: object) -> Lsn:
    return asyncio.run(
        sync_safekeepers(fake.program, fake.pgdata, token, environ=fake.environ, **kw)  # type: ignore[arg-type]
    )


PRINT_LSN = 'print("0/16B5A50")\n'
FAIL_UNTIL = """\
if runs <= {n}:
    print("no quorum yet")
    print("FATAL: could not reach safekeepers", file=sys.stderr)
    sys.exit(1)
print("0/16B5A50")
"""
HANG = """\
def on_term(signum, frame):
    (STATE / "got-sigterm").write_text(str(signum))
    sys.exit(1)
signal.signal(signal.SIGTERM, on_term)
print(f"ready {os.getpid()}", file=sys.stderr, flush=True)
while True:
    signal.pause()
"""
IGNORE_TERM = """\
def on_term(signum, frame):
    (STATE / "got-sigterm").write_text(str(signum))
signal.signal(signal.SIGTERM, on_term)
print(f"ready {os.getpid()}", file=sys.stderr, flush=True)
while True:
    signal.pause()
"""


def test_prints_lsn_and_gets_pgdata_and_token(
    make_fake: MakeFake, caplog: pytest.LogCaptureFixture
) -> None:
    fake = make_fake('print("LOG: electing", file=sys.stderr)\n' + PRINT_LSN)
    caplog.set_level(logging.INFO, LOGGER)
    sleep = FakeSleep()
    assert _run(fake, TOKEN, sleep=sleep) == Lsn.parse("0/16B5A50")
    assert fake.runs() == [{"PGDATA": str(fake.pgdata), "NEON_AUTH_TOKEN": TOKEN}]
    assert sleep.waits == []
    assert "sync-safekeepers: LOG: electing" in caplog.text
    assert TOKEN not in caplog.text


def test_long_stderr_lines_are_logged_in_pieces(
    make_fake: MakeFake, caplog: pytest.LogCaptureFixture
) -> None:
    fake = make_fake('sys.stderr.write("x" * 200000 + "\\nlast line")\n' + PRINT_LSN)
    caplog.set_level(logging.INFO, LOGGER)
    assert _run(fake, sleep=FakeSleep()) == Lsn.parse("0/16B5A50")
    pieces = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sync-")]
    assert "sync-safekeepers: last line" in pieces
    assert sum(m.count("x") for m in pieces) == 200000


def test_without_token_no_token_variable(make_fake: MakeFake) -> None:
    fake = make_fake(PRINT_LSN)
    _run(fake, None, sleep=FakeSleep())
    assert fake.runs()[0]["NEON_AUTH_TOKEN"] is None


def test_zero_lsn_is_returned_as_is(make_fake: MakeFake) -> None:
    fake = make_fake('print(" 0/0 ")\n')
    assert _run(fake, sleep=FakeSleep()) == Lsn(0)


def test_retries_non_zero_exit_then_succeeds(make_fake: MakeFake) -> None:
    fake = make_fake(FAIL_UNTIL.format(n=5))
    sleep = FakeSleep()
    assert _run(fake, TOKEN, sleep=sleep) == Lsn.parse("0/16B5A50")
    assert len(fake.runs()) == 6
    assert sleep.waits == pytest.approx([0.0, 1.1, 1.21, 1.331, 1.4641])


def test_gives_up_after_six_runs(make_fake: MakeFake) -> None:
    fake = make_fake(FAIL_UNTIL.format(n=100))
    sleep = FakeSleep()
    with pytest.raises(SyncSafekeepersError) as info:
        _run(fake, sleep=sleep)
    assert len(fake.runs()) == SYNC_SAFEKEEPERS_RETRY.max_attempts == 6
    assert len(sleep.waits) == 5
    error = info.value
    assert error.transient
    assert error.exit_status == 1
    assert "exited with non-zero status: exit status: 1. stdout: " in str(error)
    assert "no quorum yet" in str(error)


def test_garbage_stdout_is_retried_then_fails(make_fake: MakeFake) -> None:
    fake = make_fake('print("elected with zero propTermStartLsn")\n')
    with pytest.raises(SyncSafekeepersError, match=r"printed no LSN.*propTermStartLsn"):
        _run(fake, sleep=FakeSleep())
    assert len(fake.runs()) == 6


def test_non_utf8_stdout_is_a_parse_failure(make_fake: MakeFake) -> None:
    fake = make_fake('sys.stdout.buffer.write(b"0/1\\xff\\n")\n')
    with pytest.raises(SyncSafekeepersError, match="printed no LSN"):
        _run(fake, policy=NO_RETRY)


def test_killed_by_signal(make_fake: MakeFake) -> None:
    fake = make_fake("os.kill(os.getpid(), signal.SIGKILL)\n")
    with pytest.raises(SyncSafekeepersError, match=r"status: signal: 9 \(SIGKILL\)") as info:
        _run(fake, policy=NO_RETRY)
    assert info.value.exit_status == -9


def test_shutdown_policy_runs_once(make_fake: MakeFake) -> None:
    fake = make_fake(FAIL_UNTIL.format(n=1))
    with pytest.raises(SyncSafekeepersError):
        _run(fake, policy=NO_RETRY)
    assert len(fake.runs()) == 1


def test_token_printed_by_child_is_redacted(
    make_fake: MakeFake, caplog: pytest.LogCaptureFixture
) -> None:
    fake = make_fake(
        'tok = os.environ["NEON_AUTH_TOKEN"]\n'
        'print("leaking", tok, file=sys.stderr)\n'
        'print("garbage", tok)\n'
        "sys.exit(3)\n"
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SyncSafekeepersError) as info:
        _run(fake, TOKEN, policy=NO_RETRY)
    assert TOKEN not in str(info.value)
    assert TOKEN not in (info.value.stdout or "")
    assert TOKEN not in caplog.text
    assert "<redacted>" in caplog.text


def test_spawn_failure_is_permanent(tmp_path: Path) -> None:
    sleep = FakeSleep()
    with pytest.raises(SyncSafekeepersError, match="could not start") as info:
        asyncio.run(
            sync_safekeepers(tmp_path / "missing" / "postgres", tmp_path, TOKEN, sleep=sleep)
        )
    assert not info.value.transient
    assert sleep.waits == []
    assert TOKEN not in str(info.value)


def test_autoscaling_runs_under_cgexec() -> None:
    program = Path("bin") / "postgres"
    assert sync_safekeepers_argv(program) == [str(program), "--sync-safekeepers"]
    assert sync_safekeepers_argv(program, CGEXEC_PREFIX) == [
        "cgexec",
        "-g",
        "memory:neon-postgres",
        str(program),
        "--sync-safekeepers",
    ]


class _ReadyWaiter(logging.Handler):
    """Fires when the fake says it is ready (its SIGTERM handler is installed)."""

    def __init__(self) -> None:
        super().__init__()
        self.event = asyncio.Event()
        self.pid = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("sync-safekeepers: ready "):
            self.pid = int(message.rsplit(" ", 1)[1])
            self.event.set()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def _start_and_wait_ready(fake: Fake, **kw: object) -> tuple[asyncio.Task[Lsn], int]:
    waiter = _ReadyWaiter()
    logger = logging.getLogger(LOGGER)
    logger.addHandler(waiter)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        task = asyncio.create_task(
            sync_safekeepers(fake.program, fake.pgdata, None, environ=fake.environ, **kw)  # type: ignore[arg-type]
        )
        await asyncio.wait_for(waiter.event.wait(), 60)
    finally:
        logger.removeHandler(waiter)
        logger.setLevel(old_level)
    return task, waiter.pid


def test_cancellation_sends_sigterm_and_reaps_the_child(make_fake: MakeFake) -> None:
    fake = make_fake(HANG)

    async def main() -> int:
        task, pid = await _start_and_wait_ready(fake, sleep=FakeSleep())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pid

    pid = asyncio.run(main())
    assert (fake.state / "got-sigterm").read_text() == str(int(signal.SIGTERM))
    assert _gone(pid)
    assert len(fake.runs()) == 1  # cancellation is not retried


def test_child_ignoring_sigterm_is_killed_after_the_grace(make_fake: MakeFake) -> None:
    fake = make_fake(IGNORE_TERM)

    async def main() -> int:
        task, pid = await _start_and_wait_ready(fake, sleep=FakeSleep(), term_grace=0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pid

    pid = asyncio.run(main())
    assert (fake.state / "got-sigterm").exists()
    assert _gone(pid)


DRIVER = """\
import asyncio, logging, signal, sys
from pathlib import Path
from compute_ctl.storage.safekeepers import sync_safekeepers

class Ready(logging.Handler):
    def emit(self, record):
        message = record.getMessage()
        if message.startswith("sync-safekeepers: ready "):
            print(message.rsplit(" ", 1)[1], flush=True)

logger = logging.getLogger("compute_ctl.storage.safekeepers")
logger.addHandler(Ready())
logger.setLevel(logging.INFO)

async def main():
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    await sync_safekeepers(Path(sys.argv[1]), Path(sys.argv[2]), None)

try:
    asyncio.run(main())
except asyncio.CancelledError:
    sys.exit(1)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_supervisor_is_forwarded_and_no_orphan_survives(
    make_fake: MakeFake, signum: signal.Signals
) -> None:
    """The pattern compute_ctl uses: its signal handler cancels the task; the child gets
    SIGTERM, is reaped, and the supervisor exits with status 1."""
    fake = make_fake(HANG)
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(fake.program), str(fake.pgdata)],
        stdout=subprocess.PIPE,
        env=fake.environ,
    )
    try:
        assert driver.stdout is not None
        readable, _, _ = select.select([driver.stdout], [], [], 60)
        assert readable, "the fake never became ready"
        child = int(driver.stdout.readline())
        driver.send_signal(signum)
        assert driver.wait(timeout=60) == 1
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        if driver.stdout is not None:
            driver.stdout.close()
    assert (fake.state / "got-sigterm").read_text() == str(int(signal.SIGTERM))
    assert _gone(child)


# --------------------------------------------------------------------------------------------
# The fast path: pure quorum logic


def _st(flush: str, commit: str) -> TimelineStatus:
    return TimelineStatus(Lsn.parse(flush), Lsn.parse(commit))


def test_quorum_is_a_strict_majority() -> None:
    assert [quorum(n) for n in range(7)] == [1, 1, 2, 2, 3, 3, 4]
    assert PER_SAFEKEEPER_TIMEOUT == 0.1


@pytest.mark.parametrize(
    ("replies", "total", "expected"),
    [
        ([_st("0/10", "0/10")] * 3, 3, "0/10"),
        ([_st("0/10", "0/10")] * 2, 3, "0/10"),
        ([_st("0/10", "0/10")], 3, None),  # fewer than a quorum
        ([], 0, None),
        ([_st("0/10", "0/10"), None], 3, None),  # a collected no-row
        ([_st("0/10", "0/10"), _st("0/10", "0/F")], 3, None),  # commits differ
        ([_st("0/10", "0/F"), _st("0/11", "0/F")], 3, None),  # flushes differ
        ([_st("0/11", "0/10")] * 3, 3, None),  # flush != commit
        ([_st("0/0", "0/0")] * 2, 3, "0/0"),  # empty timeline: synced at 0/0
        ([_st("1/0", "1/0")], 1, "1/0"),
    ],
)
def test_judge(replies: list[TimelineStatus | None], total: int, expected: str | None) -> None:
    result = judge_timeline_statuses(replies, total)
    assert result == (None if expected is None else Lsn.parse(expected))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5454", ("127.0.0.1", 5454)),
        ("sk-1.local:6500", ("sk-1.local", 6500)),
        ("sk-1.local", ("sk-1.local", None)),
        ("[::1]:5454", ("::1", 5454)),
        ("[::1]", ("::1", None)),
    ],
)
def test_host_port(text: str, expected: tuple[str, int | None]) -> None:
    assert sk._host_port(text) == expected


@pytest.mark.parametrize("text", ["", ":5454", "h:port", "h:0", "h:70000", "[::1", "[::1]x"])
def test_host_port_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="safekeeper address"):
        sk._host_port(text)


# --------------------------------------------------------------------------------------------
# The fast path against libpq servers


@dataclass
class FakeSafekeeper:
    """Just enough of a safekeeper's libpq side: startup (optionally a cleartext password),
    and TIMELINE_STATUS answered as configured. Records what the client sent. The wire protocol
    is the stand-ins' own (compute_dev.standins.pgwire), written once for all of them."""

    row: tuple[str | None, str | None] | None = ("0/16B5A50", "0/16B5A50")
    error: str | None = None
    delay: float = 0.0
    password: str | None = None
    startups: list[dict[str, str]] = field(default_factory=list)
    queries: list[tuple[bytes, bytes]] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def start(self) -> FakeSafekeeper:
        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await handle_client(reader, writer, self._session)

        self.server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        return self

    async def _session(self, conn: PgConnection) -> None:
        params = await conn.read_startup()
        if params is None:
            return
        self.startups.append(params)
        if self.password is not None and await conn.read_password() != self.password:
            # Written here, not raised: only the client's report may reach the test's log.
            conn.error("password authentication failed", "28P01")
            return
        conn.authentication_ok([("client_encoding", "UTF8")])
        await conn.serve_queries(self._query)

    async def _query(self, conn: PgConnection, query: Query) -> None:
        # Recorded as the message that carried it: Q (simple) or E (Execute, extended).
        self.queries.append((b"E" if query.extended else b"Q", query.text.encode()))
        if query.extended:
            raise QueryError("only simple queries here", SqlState.PROTOCOL_VIOLATION, close=True)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise QueryError(self.error)
        conn.row_description(STATUS_COLUMNS)
        if self.row is not None:
            conn.data_row(self.row)
        conn.command_complete("TIMELINE_STATUS")

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def _check(
    fakes: list[FakeSafekeeper], token: str | None = None, timeout: float = 5.0
) -> Lsn | None:
    for fake in fakes:
        await fake.start()
    try:
        return await check_already_synced(
            [f.address for f in fakes], TENANT, TIMELINE, token, per_sk_timeout=timeout
        )
    finally:
        for fake in fakes:
            await fake.close()


def test_fast_path_sends_what_upstream_sends() -> None:
    fake = FakeSafekeeper(password=TOKEN)
    assert asyncio.run(_check([fake], TOKEN)) == Lsn.parse("0/16B5A50")
    (startup,) = fake.startups
    assert startup["user"] == "no_user"
    assert startup["options"] == f"-c timeline_id={TIMELINE} tenant_id={TENANT}"
    assert "application_name" not in startup
    assert fake.queries == [(b"Q", b"TIMELINE_STATUS")]  # the simple query protocol


def test_fast_path_all_agree() -> None:
    fakes = [FakeSafekeeper() for _ in range(3)]
    assert asyncio.run(_check(fakes)) == Lsn.parse("0/16B5A50")


def test_fast_path_empty_timeline_is_zero() -> None:
    fakes = [FakeSafekeeper(row=("0/0", "0/0")) for _ in range(3)]
    assert asyncio.run(_check(fakes)) == Lsn(0)


def test_fast_path_no_row_means_not_synced() -> None:
    assert asyncio.run(_check([FakeSafekeeper(row=None)])) is None


def test_fast_path_flush_not_commit_means_not_synced() -> None:
    assert asyncio.run(_check([FakeSafekeeper(row=("0/20", "0/10"))])) is None


def test_fast_path_unequal_replies_mean_not_synced() -> None:
    fakes = [FakeSafekeeper(row=("0/10", "0/10")), FakeSafekeeper(row=("0/20", "0/20"))]
    assert asyncio.run(_check(fakes)) is None  # two of two are needed and collected


def test_fast_path_null_counts_as_failure() -> None:
    fakes = [FakeSafekeeper(row=(None, "0/10")), FakeSafekeeper()]
    assert asyncio.run(_check(fakes)) is None


def test_fast_path_quorum_despite_a_slow_safekeeper() -> None:
    fakes = [FakeSafekeeper(), FakeSafekeeper(), FakeSafekeeper(delay=60)]
    assert asyncio.run(_check(fakes, timeout=2.0)) == Lsn.parse("0/16B5A50")


def test_fast_path_quorum_despite_an_error() -> None:
    fakes = [FakeSafekeeper(), FakeSafekeeper(), FakeSafekeeper(error="timeline is broken")]
    assert asyncio.run(_check(fakes)) == Lsn.parse("0/16B5A50")


def test_fast_path_timeouts_break_the_quorum() -> None:
    fakes = [FakeSafekeeper(), FakeSafekeeper(delay=60), FakeSafekeeper(delay=60)]
    assert asyncio.run(_check(fakes, timeout=0.5)) is None


def test_fast_path_errors_break_the_quorum() -> None:
    fakes = [FakeSafekeeper(error="no"), FakeSafekeeper(error="no"), FakeSafekeeper()]
    assert asyncio.run(_check(fakes)) is None


def test_fast_path_auth_failure_is_a_failure_and_the_token_stays_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeSafekeeper(password="another-token")
    assert asyncio.run(_check([fake], TOKEN)) is None
    assert "password authentication failed" in caplog.text
    assert TOKEN not in caplog.text


def test_fast_path_unreachable_and_empty() -> None:
    async def main() -> tuple[Lsn | None, Lsn | None]:
        # A port nobody listens on: bind, learn the port, close.
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        unreachable = await check_already_synced(
            [f"127.0.0.1:{port}"], TENANT, TIMELINE, None, per_sk_timeout=5.0
        )
        empty = await check_already_synced([], TENANT, TIMELINE, None)
        return unreachable, empty

    assert asyncio.run(main()) == (None, None)


# The same checks against the project's safekeeper stand-in (compute_dev.standins.safekeeper),
# which answers from a timeline store.


def _standin_store(lsn: Lsn) -> object:
    from compute_dev.standins.timelines import Timeline, TimelineStore

    class OneTimeline(TimelineStore):
        """A store holding just TENANT/TIMELINE at `lsn`, without running initdb."""

        def get(self, tenant_id: TenantId, timeline_id: TimelineId) -> Timeline | None:
            if (tenant_id, timeline_id) != (TENANT, TIMELINE):
                return None
            return Timeline(tenant_id, timeline_id, lsn, Path("unused"))

    return OneTimeline(Path("unused"))


async def _check_standins(
    faults: list[object],
    *,
    token: str | None = None,
    public_key: bytes | None = None,
    timeline: TimelineId = TIMELINE,
    timeout: float = 5.0,
) -> Lsn | None:
    from compute_dev.standins.safekeeper import SafekeeperFaults, serve_safekeeper
    from compute_dev.standins.timelines import TimelineStore

    store = _standin_store(Lsn.parse("0/16B5A50"))
    assert isinstance(store, TimelineStore)
    servers = []
    for fault in faults:
        assert isinstance(fault, SafekeeperFaults)
        servers.append(
            await serve_safekeeper(store, "127.0.0.1", 0, public_key=public_key, faults=fault)
        )
    try:
        addresses = [f"127.0.0.1:{s.sockets[0].getsockname()[1]}" for s in servers]
        return await check_already_synced(addresses, TENANT, timeline, token, timeout)
    finally:
        for server in servers:
            server.close()


def _faults(**kw: object) -> object:
    from compute_dev.standins.safekeeper import SafekeeperFaults

    return SafekeeperFaults(**kw)  # type: ignore[arg-type]


def test_standin_synced_and_unknown_timeline() -> None:
    three = [_faults() for _ in range(3)]
    assert asyncio.run(_check_standins(three)) == Lsn.parse("0/16B5A50")
    other = TimelineId("00000000000000000000000000000001")
    assert asyncio.run(_check_standins(three, timeline=other)) is None


def test_standin_faults() -> None:
    ok = [_faults(), _faults()]
    assert asyncio.run(_check_standins([*ok, _faults(error="boom")])) == Lsn.parse("0/16B5A50")
    slow = [_faults(), _faults(delay=60.0), _faults(delay=60.0)]
    assert asyncio.run(_check_standins(slow, timeout=0.5)) is None
    uneven = [_faults(flush_lsn=Lsn.parse("0/16B5A51"))]
    assert asyncio.run(_check_standins(uneven)) is None
    assert asyncio.run(_check_standins([_faults(no_row=True)])) is None
    assert asyncio.run(_check_standins([_faults(reject_auth=True)], token=TOKEN)) is None


def test_standin_jwt(caplog: pytest.LogCaptureFixture) -> None:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    good = jwt.encode({"scope": "tenant", "tenant_id": str(TENANT)}, key, algorithm="EdDSA")
    other = jwt.encode(
        {"scope": "tenant", "tenant_id": "00000000000000000000000000000002"},
        key,
        algorithm="EdDSA",
    )
    caplog.set_level(logging.DEBUG)
    synced = asyncio.run(_check_standins([_faults()], token=good, public_key=public))
    assert synced == Lsn.parse("0/16B5A50")
    assert asyncio.run(_check_standins([_faults()], token=other, public_key=public)) is None
    assert asyncio.run(_check_standins([_faults()], token=None, public_key=public)) is None
    assert good not in caplog.text
    assert other not in caplog.text


# --------------------------------------------------------------------------------------------
# The mode matrix, through the start-up path's own function (compute/prepare.basebackup_lsn)

UNSET = -1  # a metric never written keeps this value


def _pspec(mode: ComputeMode, safekeepers: list[str]) -> ParsedSpec:
    spec = ComputeSpec.model_validate(
        {
            "format_version": 1.0,
            "suspend_timeout_seconds": -1,
            "cluster": {"roles": [], "databases": []},
            "tenant_id": str(TENANT),
            "timeline_id": str(TIMELINE),
            "mode": mode.to_json(),
            "safekeeper_connstrings": safekeepers,
            "pageserver_connstring": "postgres://no_user@127.0.0.1:1",
        }
    )
    return resolve(spec)


def _mode_run(
    mode: ComputeMode,
    fake: Fake | None,
    sks: list[FakeSafekeeper],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Lsn | None, ComputeMetrics]:
    if fake is not None:
        for name, value in fake.environ.items():
            monkeypatch.setenv(name, value)
    for name in ("AUTOSCALING", "NEON_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    metrics = ComputeMetrics(sync_sk_check_ms=UNSET, sync_safekeepers_ms=UNSET)

    async def main() -> Lsn | None:
        for s in sks:
            await s.start()
        try:
            # The safekeepers' addresses exist once they listen: a replica or static spec
            # lists one that is never asked.
            addresses = [s.address for s in sks] or ["127.0.0.1:1"]
            opts = PrepareOptions(
                pgdata=fake.pgdata if fake else Path("no-such-pgdata"),
                postgres=fake.program if fake else Path("no-such-postgres"),
                privileged_role_name="neon_superuser",
                internal_http_port=3081,
                tls=None,
                neon_available=True,
            )
            pspec = _pspec(mode, addresses)
            return await basebackup_lsn(pspec, opts, metrics, per_sk_timeout=5.0)
        finally:
            for s in sks:
                await s.close()

    return asyncio.run(main()), metrics


def test_mode_replica_is_latest_without_safekeepers(monkeypatch: pytest.MonkeyPatch) -> None:
    lsn, metrics = _mode_run(ComputeMode.replica(), None, [], monkeypatch)
    assert lsn is None
    assert (metrics.sync_sk_check_ms, metrics.sync_safekeepers_ms) == (UNSET, UNSET)


def test_mode_static_uses_its_lsn(monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = Lsn.parse("0/16B5A50")
    lsn, metrics = _mode_run(ComputeMode.static(pinned), None, [], monkeypatch)
    assert lsn == pinned
    assert (metrics.sync_sk_check_ms, metrics.sync_safekeepers_ms) == (UNSET, UNSET)


def test_mode_primary_fast_path_skips_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    sks = [FakeSafekeeper(row=("0/AB", "0/AB"))]
    lsn, metrics = _mode_run(ComputeMode.primary(), None, sks, monkeypatch)
    assert lsn == Lsn.parse("0/AB")
    assert metrics.sync_sk_check_ms >= 0
    assert metrics.sync_safekeepers_ms == UNSET


def test_mode_primary_fast_path_zero_means_latest(monkeypatch: pytest.MonkeyPatch) -> None:
    sks = [FakeSafekeeper(row=("0/0", "0/0"))]
    lsn, metrics = _mode_run(ComputeMode.primary(), None, sks, monkeypatch)
    assert lsn is None
    assert metrics.sync_safekeepers_ms == UNSET


def test_mode_primary_falls_back_to_sync(
    make_fake: MakeFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = make_fake(PRINT_LSN)
    lsn, metrics = _mode_run(ComputeMode.primary(), fake, [FakeSafekeeper(row=None)], monkeypatch)
    assert lsn == Lsn.parse("0/16B5A50")
    assert metrics.sync_sk_check_ms >= 0
    assert metrics.sync_safekeepers_ms >= 0
    assert len(fake.runs()) == 1


def test_mode_primary_sync_zero_means_latest(
    make_fake: MakeFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = make_fake('print("0/0")\n')
    lsn, metrics = _mode_run(ComputeMode.primary(), fake, [FakeSafekeeper(row=None)], monkeypatch)
    assert lsn is None
    assert metrics.sync_sk_check_ms >= 0
    assert metrics.sync_safekeepers_ms >= 0


def test_fast_path_a_slow_safekeeper_costs_at_most_the_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The deadline covers the whole probe: no waiting for a server-side query cancel, and
    no psycopg warnings about the abandoned query."""
    caplog.set_level(logging.DEBUG)

    async def main() -> tuple[Lsn | None, float, Lsn | None, float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        slow = await _check([FakeSafekeeper(delay=60)], timeout=0.3)
        slow_time = loop.time() - start
        start = loop.time()
        quorum_ok = await _check(
            [FakeSafekeeper(), FakeSafekeeper(), FakeSafekeeper(delay=60)], timeout=30.0
        )
        return slow, slow_time, quorum_ok, loop.time() - start

    slow, slow_time, quorum_ok, quorum_time = asyncio.run(main())
    assert slow is None
    assert slow_time < 3.0  # psycopg alone would wait 5 s for a cancelled query
    assert quorum_ok == Lsn.parse("0/16B5A50")
    assert quorum_time < 10.0  # collection stops at a quorum, long before the 30 s budget
    assert "timed out" in caplog.text
    assert not [r for r in caplog.records if r.name.startswith("psycopg") and r.levelno >= 30]
