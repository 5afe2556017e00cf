"""Running a helper program with a time limit, never leaving it behind.

compute_ctl runs short-lived programs at several points (pg_config, initdb for the VM prewarm,
the NeonVM helpers, a debugger on a core file). None of them may hang the compute, and none may
outlive the wait for it: when the limit passes, or the waiting task is cancelled (shutdown),
the program is killed and reaped before the error goes up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

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
