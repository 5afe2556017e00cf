"""The commit LSN a compute starts from: ask the safekeepers, or make them agree.

A primary must start exactly where the safekeepers' WAL ends, or it would fork history. The
cheap way asks every safekeeper for `TIMELINE_STATUS` in parallel,
with 100 ms each, and trusts the answer only if a quorum replied and every collected reply
agrees (flush == commit, all equal). Otherwise `postgres --sync-safekeepers` runs the
walproposer election in a child process and prints the agreed LSN. Replicas and static
computes never touch the safekeepers (the start-up path, `compute/prepare.basebackup_lsn`,
decides by mode).

The child must never outlive us: it is started in our process group and sent SIGTERM (then
SIGKILL after a grace period) when the awaiting task is cancelled, which is what compute_ctl's
SIGTERM/SIGINT handler does. The storage token reaches the child only through its
environment and the safekeepers only as a password; it never appears in logs or errors.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg
from psycopg.conninfo import make_conninfo

from compute_ctl.errors import StorageError
from compute_ctl.spec.types import Lsn, TenantId, TimelineId
from compute_ctl.storage.retry import SYNC_SAFEKEEPERS_RETRY, RetryPolicy, retry
from compute_ctl.subprocesses import stop_child

__all__ = [
    "DEFAULT_TERM_GRACE",
    "PER_SAFEKEEPER_TIMEOUT",
    "SyncSafekeepersError",
    "TimelineStatus",
    "check_already_synced",
    "fetch_timeline_status",
    "judge_timeline_statuses",
    "quorum",
    "sync_safekeepers",
    "sync_safekeepers_argv",
    "sync_safekeepers_env",
    "sync_safekeepers_once",
]

log = logging.getLogger(__name__)

PER_SAFEKEEPER_TIMEOUT: Final = 0.1
"""Connect + startup + auth + query, per safekeeper."""

DEFAULT_TERM_GRACE: Final = 10.0
"""Seconds a signalled sync-safekeepers child gets to exit before it is killed."""

_TARGET: Final = "sync-safekeepers"
_SHOWN_OUTPUT: Final = 200
_STOP_ROUNDS: Final = 100
_STDERR_PIECE: Final = 64 * 1024


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "<redacted>") if token else text


def _shorten(text: str) -> str:
    return text if len(text) <= _SHOWN_OUTPUT else text[:_SHOWN_OUTPUT] + "…"


# --------------------------------------------------------------------------------------------
# The fast path


@dataclass(frozen=True)
class TimelineStatus:
    """One safekeeper's answer to TIMELINE_STATUS for a timeline it has."""

    flush_lsn: Lsn
    commit_lsn: Lsn


def quorum(count: int) -> int:
    """Replies needed out of `count` safekeepers: a strict majority (`n/2 + 1`)."""
    return count // 2 + 1


def _host_port(connstring: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port`, or a bare host, as compute_ctl's `postgresql://…@<it>` reads."""
    if connstring.startswith("["):
        host, sep, rest = connstring[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid safekeeper address {connstring!r}")
        port_text = rest[1:] if rest else ""
    elif connstring.count(":") == 1:
        host, _, port_text = connstring.partition(":")
    else:
        host, port_text = connstring, ""
    if not host:
        raise ValueError(f"invalid safekeeper address {connstring!r}")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port in safekeeper address {connstring!r}")
    return host, int(port_text)


def _status_options(tenant_id: TenantId, timeline_id: TimelineId) -> str:
    """One `-c` and two `k=v` tokens: the safekeeper takes every `k=v` token it knows."""
    return f"-c timeline_id={timeline_id} tenant_id={tenant_id}"


async def fetch_timeline_status(
    connstring: str, tenant_id: TenantId, timeline_id: TimelineId, token: str | None
) -> TimelineStatus | None:
    """Ask one safekeeper; None when it does not have the timeline (no row).

    Raises on any connection, authentication or query error, and on a NULL or malformed LSN.
    """
    host, port = _host_port(connstring)
    params: dict[str, str | int] = {
        "host": host,
        "user": "no_user",
        "options": _status_options(tenant_id, timeline_id),
        "sslmode": "disable",
        "gssencmode": "disable",
    }
    if port is not None:
        params["port"] = port
    if token:
        params["password"] = token
    conninfo = make_conninfo("", **params)  # holds the token: never log it
    conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    async with conn:
        # No parameters, text results: psycopg sends a simple Query message.
        cur = await conn.execute("TIMELINE_STATUS", prepare=False)
        row = await cur.fetchone()
    if row is None:
        return None
    if len(row) < 2 or row[0] is None or row[1] is None:
        raise ValueError(f"unexpected TIMELINE_STATUS row {row!r}")
    flush, commit = row[0], row[1]
    if not isinstance(flush, str) or not isinstance(commit, str):
        raise ValueError(f"unexpected TIMELINE_STATUS row {row!r}")
    return TimelineStatus(flush_lsn=Lsn.parse(flush), commit_lsn=Lsn.parse(commit))


def judge_timeline_statuses(replies: Sequence[TimelineStatus | None], total: int) -> Lsn | None:
    """The synced LSN given the collected successful replies of `total` safekeepers, or None.

    Synced only if at least a quorum replied, none lacks the timeline, all commit LSNs are
    equal, all flush LSNs are equal, and commit == flush. The LSN may be 0/0 (an empty
    timeline), which means "basebackup at latest".
    """
    if len(replies) < quorum(total):
        return None
    statuses: list[TimelineStatus] = []
    for reply in replies:
        if reply is None:
            return None
        statuses.append(reply)
    commits = {s.commit_lsn for s in statuses}
    flushes = {s.flush_lsn for s in statuses}
    if len(commits) != 1 or len(flushes) != 1:
        return None
    commit, flush = commits.pop(), flushes.pop()
    return commit if commit == flush else None


async def check_already_synced(
    connstrings: Sequence[str],
    tenant_id: TenantId,
    timeline_id: TimelineId,
    token: str | None,
    per_sk_timeout: float = PER_SAFEKEEPER_TIMEOUT,
) -> Lsn | None:
    """The commit LSN if a quorum of safekeepers already agrees on it, else None. Never raises
    for a safekeeper's failure: errors and timeouts only count against the quorum.

    Replies are collected in completion order until a quorum of successes or a quorum of
    failures has arrived. Every probe starts at once and shares one deadline, `per_sk_timeout`
    after the start, covering connect, startup, authentication and the query; a probe still
    running at the deadline is a failure. The remaining probes are then stopped at once.
    """
    total = len(connstrings)
    needed = quorum(total)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + per_sk_timeout
    _quiet_psycopg_in_probes()
    tasks = [
        asyncio.create_task(_probe(cs, tenant_id, timeline_id, token), name=f"timeline-status {cs}")
        for cs in connstrings
    ]
    where = {task: cs for task, cs in zip(tasks, connstrings, strict=True)}
    successes: list[TimelineStatus | None] = []
    failures = 0
    try:
        pending: set[asyncio.Task[TimelineStatus | None]] = set(tasks)
        while pending and len(successes) < needed and failures < needed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                for task in pending:
                    log.info("safekeeper %s: TIMELINE_STATUS timed out", where[task])
                failures += len(pending)
                break
            done, pending = await asyncio.wait(
                pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if len(successes) >= needed or failures >= needed:
                    break  # the rest arrived too late to be collected
                try:
                    reply = task.result()
                except Exception as exc:
                    failures += 1
                    log.info(
                        "safekeeper %s: TIMELINE_STATUS failed: %s",
                        where[task],
                        _redact(str(exc), token) or type(exc).__name__,
                    )
                    continue
                successes.append(reply)
                log.info("safekeeper %s: TIMELINE_STATUS %s", where[task], _describe(reply))
    finally:
        await _stop_now(tasks)

    if len(successes) < needed:
        log.info(
            "safekeepers not known to be synced: %d of %d replied (quorum %d)",
            len(successes),
            total,
            needed,
        )
        return None
    lsn = judge_timeline_statuses(successes, total)
    if lsn is None:
        log.info("safekeepers are not synced; sync-safekeepers will run")
    else:
        log.info("safekeepers are already synced at %s", lsn)
    return lsn


async def _probe(
    connstring: str, tenant_id: TenantId, timeline_id: TimelineId, token: str | None
) -> TimelineStatus | None:
    _in_probe.set(True)  # this task's own context: marks psycopg's log records as ours
    return await fetch_timeline_status(connstring, tenant_id, timeline_id, token)


_in_probe: ContextVar[bool] = ContextVar("in_timeline_status_probe", default=False)


class _QuietProbeStop(logging.Filter):
    """Drops psycopg's warnings about the abandoned query of a stopped probe.

    Stopping a probe (see `_stop_now`) makes psycopg warn that the query could not be cancelled
    on the server (safekeepers send no cancel key) and that it closed the connection. That is
    the intended outcome, already logged by us as a timeout, so within probe tasks (and only
    there) those records are dropped; errors still pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING or not _in_probe.get()


_QUIET_FILTER: Final = _QuietProbeStop()


def _quiet_psycopg_in_probes() -> None:
    psycopg_log = logging.getLogger("psycopg")
    if _QUIET_FILTER not in psycopg_log.filters:
        psycopg_log.addFilter(_QUIET_FILTER)


async def _stop_now(tasks: Sequence[asyncio.Task[TimelineStatus | None]]) -> None:
    """Cancel the probes and wait until they are gone, without the grace psycopg would take.

    psycopg answers the cancellation of a running query by sending the server a cancel
    request and waiting up to 5 s for the query to end; cancelled again meanwhile, it closes
    the connection at once. A safekeeper that missed its 100 ms deserves no such courtesy, so
    the probes are cancelled until they are done (a few rounds at most).
    """
    for _ in range(_STOP_ROUNDS):
        alive = [task for task in tasks if not task.done()]
        if not alive:
            break
        for task in alive:
            task.cancel()
        await asyncio.sleep(0)
    else:
        log.warning("%d TIMELINE_STATUS probes did not stop", sum(not t.done() for t in tasks))
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a late failure is not worth a warning


def _describe(reply: TimelineStatus | None) -> str:
    if reply is None:
        return "timeline not found"
    return f"flush_lsn={reply.flush_lsn} commit_lsn={reply.commit_lsn}"


# --------------------------------------------------------------------------------------------
# The slow path: postgres --sync-safekeepers


class SyncSafekeepersError(StorageError):
    """A `postgres --sync-safekeepers` run failed: how it exited and what it printed."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        exit_status: int | None = None,
        stdout: str | None = None,
    ) -> None:
        super().__init__(_TARGET, message, transient=transient)
        self.exit_status = exit_status
        self.stdout = stdout


def sync_safekeepers_argv(pg_bin_postgres: Path, argv_prefix: Sequence[str] = ()) -> list[str]:
    """`<postgres> --sync-safekeepers`, after `argv_prefix` (`Params.cgroup_prefix`: in an
    autoscaling VM it runs under `cgexec`, in Postgres' memory cgroup)."""
    return [*argv_prefix, str(pg_bin_postgres), "--sync-safekeepers"]


def sync_safekeepers_env(
    pgdata: Path, token: str | None, environ: Mapping[str, str]
) -> dict[str, str]:
    """Our environment plus PGDATA (`-D` does not work in this mode) and NEON_AUTH_TOKEN."""
    env = dict(environ)
    env["PGDATA"] = str(pgdata)
    if token:
        env["NEON_AUTH_TOKEN"] = token
    return env


async def _forward_stderr(stream: asyncio.StreamReader, token: str | None) -> None:
    """Log the child's stderr line by line (over-long lines in pieces, never an error)."""

    def emit(line: bytes) -> None:
        text = line.decode("utf-8", "backslashreplace").rstrip("\r")
        log.info("sync-safekeepers: %s", _redact(text, token))

    pending = b""
    while chunk := await stream.read(_STDERR_PIECE):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            emit(line)
        if len(pending) >= _STDERR_PIECE:
            emit(pending)
            pending = b""
    if pending:
        emit(pending)


async def sync_safekeepers_once(
    pg_bin_postgres: Path,
    pgdata: Path,
    token: str | None,
    *,
    environ: Mapping[str, str] | None = None,
    argv_prefix: Sequence[str] = (),
    term_grace: float = DEFAULT_TERM_GRACE,
) -> Lsn:
    """One run of `postgres --sync-safekeepers`: the LSN it printed (0/0 for a new timeline).

    Exit 0 with a parseable `X/X` on stdout is success; a non-zero exit or unparseable output
    is a transient SyncSafekeepersError; failing to start the program is a permanent one.
    There is no timeout (it may wait for a quorum forever); cancel the task to stop it.
    """
    base = os.environ if environ is None else environ
    argv = sync_safekeepers_argv(pg_bin_postgres, argv_prefix)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=sync_safekeepers_env(pgdata, token, base),
        )
    except OSError as exc:
        raise SyncSafekeepersError(
            f"could not start {argv[0]!r}: {exc.strerror or exc}", transient=False
        ) from exc
    log.info("sync-safekeepers started (pid %d)", proc.pid)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        raw, _ = await asyncio.gather(proc.stdout.read(), _forward_stderr(proc.stderr, token))
        status = await proc.wait()
    except BaseException:
        await stop_child(proc, signal.SIGTERM, term_grace, name="sync-safekeepers")
        raise

    stdout = _redact(raw.decode("utf-8", "backslashreplace"), token)
    if status != 0:
        # Upstream's text, with the status as Rust prints an ExitStatus.
        if status < 0:
            name = signal.Signals(-status).name if -status in signal.valid_signals() else "?"
            how = f"signal: {-status} ({name})"
        else:
            how = f"exit status: {status}"
        raise SyncSafekeepersError(
            f"postgres --sync-safekeepers exited with non-zero status: {how}. "
            f"stdout: {_shorten(stdout.strip())}",
            transient=True,
            exit_status=status,
            stdout=stdout,
        )
    try:
        lsn = Lsn.parse(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SyncSafekeepersError(
            f"postgres --sync-safekeepers printed no LSN: {_shorten(stdout.strip())!r}",
            transient=True,
            exit_status=status,
            stdout=stdout,
        ) from exc
    log.info("sync-safekeepers returned %s", lsn)
    return lsn


def _is_transient(exc: Exception) -> bool:
    return isinstance(exc, StorageError) and exc.transient


async def sync_safekeepers(
    pg_bin_postgres: Path,
    pgdata: Path,
    token: str | None,
    *,
    policy: RetryPolicy = SYNC_SAFEKEEPERS_RETRY,
    environ: Mapping[str, str] | None = None,
    argv_prefix: Sequence[str] = (),
    term_grace: float = DEFAULT_TERM_GRACE,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> Lsn:
    """Run sync-safekeepers until it succeeds, per `policy` (startup: 6 runs; at shutdown pass
    `NO_RETRY`). Returns the agreed LSN; `0/0` means a fresh timeline (basebackup at latest)."""
    return await retry(
        lambda: sync_safekeepers_once(
            pg_bin_postgres,
            pgdata,
            token,
            environ=environ,
            argv_prefix=argv_prefix,
            term_grace=term_grace,
        ),
        policy,
        _is_transient,
        what="sync-safekeepers",
        sleep=sleep,
    )
