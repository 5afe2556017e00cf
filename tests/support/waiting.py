"""The one way the tests wait: for a real condition, with a deadline, never a bare sleep.

`wait_until` polls a check from blocking code (a test driving processes or threads);
`wait_until_async` is the same wait for a coroutine, polling between turns of its event loop so
the tasks it waits on keep running. Both fail the test with the name of what never happened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

DEADLINE = 60.0
"""The default bound of a wait: generous, since only a failure ever waits that long."""

_POLL = 0.02
_ASYNC_POLL = 0.005


class _Deadline:
    def __init__(self, what: str, timeout: float) -> None:
        self.what = what
        self.end = time.monotonic() + timeout

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise AssertionError(f"timed out waiting for {self.what}")


def wait_until(what: str, check: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Return once `check()` is true; fail after `timeout` seconds."""
    deadline = _Deadline(what, timeout)
    while not check():
        deadline.check()
        time.sleep(_POLL)


async def wait_until_async(what: str, check: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """`wait_until` inside an event loop: `check()` runs on the loop, between its other tasks."""
    deadline = _Deadline(what, timeout)
    while not check():
        deadline.check()
        await asyncio.sleep(_ASYNC_POLL)
