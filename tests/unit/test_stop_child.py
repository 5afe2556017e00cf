"""Stopping a long-running child (the postmaster, sync-safekeepers): a polite signal, a grace
period, then SIGKILL, and never an orphan. Real child processes, which say when their signal
handlers are in place before they are signalled."""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from compute_ctl.postgres.process import spawn_postgres
from compute_ctl.subprocesses import stop_child

# A child that records and ignores the signals it is sent, after saying it is ready.
STUBBORN = textwrap.dedent(
    """\
    import signal, sys
    def note(signum, frame):
        print(f"got {signum}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, note)
    signal.signal(signal.SIGINT, note)
    print("ready", file=sys.stderr, flush=True)
    while True:
        signal.pause()
    """
)
POLITE = textwrap.dedent(
    """\
    import signal, sys
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(3))
    print("ready", file=sys.stderr, flush=True)
    while True:
        signal.pause()
    """
)


async def _spawn(body: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", body, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    assert await process.stderr.readline() == b"ready\n"
    return process


def test_a_child_that_obeys_is_reaped_with_its_status() -> None:
    async def main() -> int:
        process = await _spawn(POLITE)
        return await stop_child(process, signal.SIGTERM, 30.0)

    assert asyncio.run(main()) == 3


def test_a_child_that_ignores_the_signal_is_killed_after_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)

    async def main() -> tuple[int, bytes]:
        process = await _spawn(STUBBORN)
        status = await stop_child(process, signal.SIGTERM, 0.3, name="stubborn")
        assert process.stderr is not None
        return status, await process.stderr.read()

    status, said = asyncio.run(main())
    assert status == -signal.SIGKILL
    assert said == f"got {int(signal.SIGTERM)}\n".encode()
    assert "stubborn (pid " in caplog.text
    assert "ignored SIGTERM for 0.3 s; killing" in caplog.text


def test_a_cancelled_stop_kills_the_child_unless_told_otherwise() -> None:
    async def main(kill_on_cancel: bool) -> int | None:
        process = await _spawn(STUBBORN)
        stopping = asyncio.create_task(
            stop_child(process, signal.SIGTERM, 60.0, kill_on_cancel=kill_on_cancel)
        )
        assert process.stderr is not None
        await process.stderr.readline()  # the signal arrived: the stop is waiting now
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
        if kill_on_cancel:
            return await process.wait()
        alive = process.returncode
        process.kill()
        await process.wait()
        return alive

    assert asyncio.run(main(True)) == -signal.SIGKILL
    assert asyncio.run(main(False)) is None


def test_the_postmaster_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    """PostgresProcess.stop: the fast-stop signal, then SIGKILL when the time is up; the log
    is drained before it returns."""
    program = tmp_path / "postgres"
    program.write_text(f"#!{sys.executable}\n{STUBBORN}")
    program.chmod(0o755)
    log = io.StringIO()

    async def main() -> int:
        pg = await spawn_postgres(program, tmp_path, env={}, log_out=log)

        async def ready() -> None:
            while "ready" not in log.getvalue():  # forwarded once the entry is complete
                await asyncio.sleep(0.01)

        await asyncio.wait_for(ready(), 30)
        return await pg.stop(signal.SIGINT, 0.3)

    assert asyncio.run(main()) == -signal.SIGKILL
    assert f"PG:got {int(signal.SIGINT)}\n" in log.getvalue()
