"""Running a helper program with a time limit, never leaving it behind.

compute_ctl runs short-lived programs at several points (pg_config, initdb for the VM prewarm,
the NeonVM helpers, a debugger on a core file). None of them may hang the compute, and none may
outlive the wait for it: when the limit passes, or the waiting task is cancelled (shutdown),
the program is killed and reaped before the error goes up.

Long-running children (the postmaster, `postgres --sync-safekeepers`) are stopped the same way
by `stop_child`: a polite signal, a grace period, then SIGKILL and the reaping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

PIPE = asyncio.subprocess.PIPE
DEVNULL = asyncio.subprocess.DEVNULL


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: bytes
    stderr: bytes


async def run_bounded(
    argv: Sequence[str],
    timeout: float,
    *,
    stdout: int | None = None,
    stderr: int | None = None,
    start_new_session: bool = False,
) -> Finished:
    """Run `argv` with stdin from /dev/null and wait at most `timeout` seconds.

    `stdout` / `stderr`: PIPE to capture (returned), DEVNULL to discard, None to share ours.
    Raises FileNotFoundError/OSError when it cannot be started, TimeoutError (after killing and
    reaping it) when it does not finish in time.
    """
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=start_new_session,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except BaseException:  # the time limit, or our caller cancelled: never leave it running
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Finished(process.returncode, out or b"", err or b"")


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


async def stop_child(
    process: asyncio.subprocess.Process,
    signum: int,
    grace: float,
    *,
    wait: Callable[[], Awaitable[int]] | None = None,
    kill_on_cancel: bool = True,
    name: str | None = None,
) -> int:
    """Send `signum`, wait up to `grace` seconds, then SIGKILL and wait again: the child never
    outlives the stop. Returns what `wait` returns (default: the exit status once reaped).

    `wait` says what "gone" means (the postmaster's also drains its log). When the waiting
    task is cancelled the cancellation goes on, and the child is killed first unless
    `kill_on_cancel` is off (it then finishes its own stop, reaped by the event loop). With
    `name`, having to kill is logged as a warning naming the child."""
    waiter = wait if wait is not None else process.wait
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
    try:
        return await asyncio.wait_for(asyncio.shield(waiter()), grace)
    except TimeoutError:
        pass
    except asyncio.CancelledError:
        if kill_on_cancel:
            _kill(process)  # still reaped by the event loop's child watcher
        raise
    if name is not None:
        shown = signal.Signals(signum).name if signum in signal.valid_signals() else signum
        log.warning("%s (pid %d) ignored %s for %.1f s; killing", name, process.pid, shown, grace)
    _kill(process)
    return await waiter()
