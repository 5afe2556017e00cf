"""The postmaster as a child process: spawn, forward its log, wait until ready, stop.

Readiness is read from `postmaster.pid` (its last line becomes `ready` once Postgres accepts
connections), as upstream does, rather than by probing with a connection. Postgres' stderr is
forwarded to ours with the `PG:` prefix; lines of one multi-line entry are joined with U+200B so
each entry stays one line in the log pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from compute_ctl.errors import PostgresError
from compute_ctl.subprocesses import stop_child

log = logging.getLogger(__name__)

TIMESTAMP_RE = re.compile(rb"^\d+-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
ZERO_WIDTH_SPACE = "\u200b"
LOG_FLUSH_AFTER = 0.1  # seconds of silence that end a buffered multi-line entry
READY_POLL_INTERVAL = 0.002  # postmaster.pid is a tiny local file; polling it is cheap


class PostgresExitedError(PostgresError):
    def __init__(self, code: int) -> None:
        super().__init__(f"Postgres exited unexpectedly with code {code}")
        self.code = code


@dataclass
class PostgresProcess:
    """A running postmaster and the task forwarding its log."""

    process: asyncio.subprocess.Process
    pgdata: Path
    log_task: asyncio.Task[None] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def exited(self) -> bool:
        return self.process.returncode is not None

    def exit_code(self) -> int:
        """Upstream's convention: the code, or -1 when killed by a signal."""
        code = self.process.returncode
        if code is None:
            raise RuntimeError("postgres is still running")
        return code if code >= 0 else -1

    def send_signal(self, signum: int) -> None:
        """Send a signal if the postmaster is still there (fast stop is SIGINT, immediate
        SIGQUIT, smart SIGTERM)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    async def wait(self) -> int:
        """Wait for the postmaster to exit and its log to drain; return its exit status."""
        code = await self.process.wait()
        await self.log_task
        return code

    async def stop(self, signum: int = signal.SIGINT, timeout: float = 60.0) -> int:
        """Stop and reap, escalating to SIGKILL if it will not go in time (no orphans). A
        cancelled stop leaves the postmaster to finish the shutdown it was asked for."""
        return await stop_child(self.process, signum, timeout, wait=self.wait, kill_on_cancel=False)


async def forward_log(
    stream: asyncio.StreamReader, out: TextIO | None = None, prefix: str = "PG:"
) -> None:
    """Copy Postgres' stderr to ours, one `PG:` line per log entry.

    An entry ends when the next line starts with a timestamp, at EOF, or after
    `LOG_FLUSH_AFTER` seconds without output.
    """
    target = out if out is not None else sys.stderr
    buffered: list[bytes] = []

    def flush() -> None:
        if buffered:
            text = ZERO_WIDTH_SPACE.join(
                line.rstrip(b"\r\n").decode("utf-8", "replace") for line in buffered
            )
            target.write(f"{prefix}{text}\n")
            target.flush()
            buffered.clear()

    while True:
        try:
            if buffered:
                line = await asyncio.wait_for(stream.readline(), LOG_FLUSH_AFTER)
            else:
                line = await stream.readline()
        except TimeoutError:
            flush()
            continue
        except ValueError:  # a line longer than the stream limit: take what is there
            line = await stream.read(64 * 1024)
        if not line:
            flush()
            return
        if TIMESTAMP_RE.match(line):
            flush()
        buffered.append(line)


async def spawn_postgres(
    postgres: str | Path,
    pgdata: Path,
    *,
    env: Mapping[str, str],
    argv_prefix: tuple[str, ...] = (),
    log_out: TextIO | None = None,
) -> PostgresProcess:
    """Start `postgres -D PGDATA`; stdin/stdout are inherited, stderr is forwarded."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv_prefix,
            str(postgres),
            "-D",
            str(pgdata),
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise PostgresError(f"could not start {postgres}: {exc.strerror or exc}") from exc
    assert process.stderr is not None
    log_task = asyncio.create_task(forward_log(process.stderr, log_out), name="postgres-log")
    return PostgresProcess(process, pgdata, log_task)


def _pid_file_lines(pgdata: Path) -> list[str]:
    """The lines of `postmaster.pid` (its first is the postmaster's pid, its last says
    `ready` once Postgres accepts connections); raises OSError when it cannot be read."""
    return (pgdata / "postmaster.pid").read_text(errors="replace").rstrip("\n").split("\n")


def postmaster_ready(pgdata: Path) -> bool:
    """Whether `postmaster.pid`'s last line says `ready`."""
    try:
        lines = _pid_file_lines(pgdata)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return bool(lines) and lines[-1].strip() == "ready"


async def wait_until_ready(pg: PostgresProcess, timeout: float = 60.0) -> None:
    """Wait until Postgres accepts connections; fail if it exits first or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        if pg.exited:
            await pg.log_task
            raise PostgresExitedError(pg.exit_code())
        if postmaster_ready(pg.pgdata):
            return
        if time.monotonic() >= deadline:
            raise PostgresError("timed out while waiting for Postgres to start")
        await asyncio.sleep(READY_POLL_INTERVAL)


def signal_reload(pgdata: Path) -> None:
    """What `pg_ctl reload -D PGDATA` does, without a process of its own: SIGHUP to the
    postmaster named by the first line of `postmaster.pid`. Spawning pg_ctl took 2-7 ms, and a
    start reloads twice (docs/benchmarks.md, F1); like upstream, which runs pg_ctl and ignores
    its outcome, a failure does not fail the caller: it is logged."""
    try:
        first = _pid_file_lines(pgdata)[0]
        pid = int(first.strip())
        if pid <= 0:
            raise ValueError(first)
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        log.warning("cannot signal Postgres to reload its configuration: %s", exc)


def postgres_env(base: Mapping[str, str], token: str | None) -> dict[str, str]:
    """The environment Postgres runs with: ours minus FAILPOINTS, plus the storage token."""
    env = {k: v for k, v in base.items() if k != "FAILPOINTS"}
    if token is not None:
        env["NEON_AUTH_TOKEN"] = token
    return env


DATABRICKS_ENDPOINT_ID_ENV = "DATABRICKS_ENDPOINT_ID"
DATABRICKS_WORKSPACE_HOST_ENV = "DATABRICKS_WORKSPACE_HOST"


def databricks_env(
    *, instance_id: str | None, compute_id: str | None, workspace_host: str | None
) -> dict[str, str]:
    """What Postgres reads in lakebase mode: the endpoint id internal tokens are scoped to
    (`INSTANCE_ID`, else the part of the compute id before its first `/`), and the workspace
    host Databricks tokens are checked against (empty when the spec has none)."""
    if instance_id is not None:
        endpoint_id = instance_id
    elif compute_id is not None:
        endpoint_id = compute_id.split("/", 1)[0]
    else:
        raise ValueError("lakebase mode needs INSTANCE_ID or --compute-id")
    return {
        DATABRICKS_ENDPOINT_ID_ENV: endpoint_id,
        DATABRICKS_WORKSPACE_HOST_ENV: workspace_host or "",
    }


def default_env() -> dict[str, str]:
    return dict(os.environ)
