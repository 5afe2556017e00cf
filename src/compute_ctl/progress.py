"""Progress lines for long work: a multi-GiB basebackup, a slow sync-safekeepers or catalog
apply should not be minutes of silence in the log.

Both helpers are context managers used inside the event loop; they schedule their lines with
`loop.call_later` (no task, nothing to cancel but a timer), and say nothing at all when the
work ends within the first interval, which is the usual case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

INTERVAL = 5.0
"""Seconds between two progress lines."""

MIB = 1 << 20


@contextlib.contextmanager
def _every(interval: float, tick: Callable[[float], None]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    handle: asyncio.TimerHandle | None = None

    def fire() -> None:
        nonlocal handle
        tick(time.monotonic() - started)
        handle = loop.call_later(interval, fire)

    handle = loop.call_later(interval, fire)
    try:
        yield
    finally:
        handle.cancel()


def still_running(
    logger: logging.Logger, what: str | Callable[[], str], interval: float | None = None
) -> contextlib.AbstractContextManager[None]:
    """Log `still <what> (<n> s)` every `interval` seconds while the block runs; `what` may be
    a function saying what is being done at that moment."""

    def tick(elapsed: float) -> None:
        logger.info("still %s (%.0f s)", what if isinstance(what, str) else what(), elapsed)

    return _every(INTERVAL if interval is None else interval, tick)


class Meter:
    """Counts the bytes of a transfer and logs the total and the rate every `interval` seconds
    from the first `add` until `stop` (storage code calls `add` per chunk: nothing else)."""

    def __init__(self, logger: logging.Logger, what: str, interval: float | None = None) -> None:
        self.logger = logger
        self.what = what
        self.interval = INTERVAL if interval is None else interval
        self.received = 0
        self._started = 0.0
        self._last = (0, 0.0)
        self._timer: asyncio.TimerHandle | None = None

    def add(self, count: int) -> None:
        if self._timer is None and self.received == 0:
            self._started = time.monotonic()
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)
        self.received += count

    def _tick(self) -> None:
        elapsed = time.monotonic() - self._started
        done, (before, then) = self.received, self._last
        rate = (done - before) / max(elapsed - then, 1e-9)
        self._last = (done, elapsed)
        self.logger.info(
            "%s: %.1f MiB received in %.0f s (%.1f MiB/s)",
            self.what,
            done / MIB,
            elapsed,
            rate / MIB,
        )
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
