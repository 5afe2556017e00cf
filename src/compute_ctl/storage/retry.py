"""Retry policies as data, and one async loop that applies them.

Why data: the schedules are part of the observable contract (the
basebackup makes 11 tries, sleeping 500 ms ×1.5 truncated to whole milliseconds;
sync-safekeepers makes 6 runs sleeping 0 s, then 1.1ⁿ s capped at 3 s), so tests compare the
exact delays instead of timing a loop. Why an injectable sleep: tests check the schedule without
waiting a minute, and production sleeps with `asyncio.sleep` so the event loop keeps serving
HTTP while storage is being retried. Which errors are worth retrying is the caller's decision
(`is_transient`); cancellation is never retried.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Final, TypeVar

__all__ = [
    "BASEBACKUP_RETRIES_ENV",
    "BASEBACKUP_RETRY",
    "NO_RETRY",
    "SYNC_SAFEKEEPERS_RETRY",
    "RetryPolicy",
    "basebackup_retry_policy",
    "retry",
]

T = TypeVar("T")

log = logging.getLogger(__name__)

BASEBACKUP_RETRIES_ENV: Final = "NEON_COMPUTE_TESTING_BASEBACKUP_RETRIES"


@dataclass(frozen=True)
class RetryPolicy:
    """How often to retry and how long to wait before each retry.

    The wait before retry `n` (0-based) is `initial_delay * multiplier**n`, capped at
    `max_delay`; with `first_retry_immediate` the first retry does not wait and the later ones
    use `n` as is (upstream's `exponential_backoff`: 0, 1.1, 1.21, …). With `whole_ms` the
    waits are truncated to whole milliseconds, as upstream's basebackup loop does.
    """

    max_retries: int = 10
    initial_delay: float = 0.5
    multiplier: float = 1.5
    max_delay: float | None = None
    first_retry_immediate: bool = False
    whole_ms: bool = True

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if self.initial_delay < 0 or self.multiplier < 1:
            raise ValueError("delays must not be negative or shrink")
        if self.max_delay is not None and self.max_delay < 0:
            raise ValueError("max_delay must not be negative")

    @property
    def max_attempts(self) -> int:
        """Total tries: the first one plus the retries."""
        return self.max_retries + 1

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0 is the first retry)."""
        if retry < 0:
            raise ValueError("retry numbers start at 0")
        if self.first_retry_immediate and retry == 0:
            return 0.0
        seconds = self.initial_delay * self.multiplier**retry
        if self.max_delay is not None:
            seconds = min(seconds, self.max_delay)
        if self.whole_ms:
            seconds = math.floor(seconds * 1000 + 1e-9) / 1000
        return seconds

    def delays(self) -> list[float]:
        """Every wait of a run that exhausts the policy, in order."""
        return [self.delay(n) for n in range(self.max_retries)]

    def with_retries(self, max_retries: int) -> RetryPolicy:
        return replace(self, max_retries=max_retries)


BASEBACKUP_RETRY: Final = RetryPolicy()
"""10 retries (11 tries), 500 ms ×1.5 truncated to ms, no cap (about 56.7 s in all)."""

SYNC_SAFEKEEPERS_RETRY: Final = RetryPolicy(
    max_retries=5,
    initial_delay=1.0,
    multiplier=1.1,
    max_delay=3.0,
    first_retry_immediate=True,
    whole_ms=False,
)
"""6 runs at startup, waits 0, 1.1, 1.21, 1.331, 1.4641 s (1.1ⁿ capped at 3 s)."""

NO_RETRY: Final = RetryPolicy(max_retries=0)
"""One try (the shutdown-time sync-safekeepers run)."""


def basebackup_retry_policy(environ: Mapping[str, str] | None = None) -> RetryPolicy:
    """The basebackup policy, with the retry count replaced by the testing variable if set.

    Upstream reads `NEON_COMPUTE_TESTING_BASEBACKUP_RETRIES` (a number of retries, so N+1 tries)
    in test builds; tests of the whole process use it to fail fast. A malformed value is an
    error rather than silently ignored.
    """
    env = os.environ if environ is None else environ
    raw = env.get(BASEBACKUP_RETRIES_ENV)
    if raw is None:
        return BASEBACKUP_RETRY
    try:
        count = int(raw.strip())
        if count < 0:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{BASEBACKUP_RETRIES_ENV} must be a non-negative integer, got {raw!r}"
        ) from None
    return BASEBACKUP_RETRY.with_retries(count)


async def retry(
    op: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    is_transient: Callable[[Exception], bool],
    *,
    what: str = "operation",
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    on_retry: Callable[[int, Exception, float], None] | None = None,
) -> T:
    """Run `op` until it succeeds, retrying transient errors as `policy` says.

    The last error is raised unchanged (its `__cause__` chain intact), with a note saying how
    many tries were made. A non-transient error is raised at once. `CancelledError` and other
    BaseExceptions are never caught. `on_retry(attempt, error, delay)` is called before each
    wait (attempt counts from 1). Error texts are logged: callers must keep secrets out of
    their exceptions.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await op()
        except Exception as exc:
            if not is_transient(exc):
                if attempt > 1:
                    exc.add_note(f"{what}: not retried after try {attempt} (not transient)")
                raise
            if attempt >= policy.max_attempts:
                exc.add_note(f"{what}: gave up after {attempt} tries")
                raise
            delay = policy.delay(attempt - 1)
            log.warning(
                "%s failed (try %d of %d), retrying in %.3f s: %s",
                what,
                attempt,
                policy.max_attempts,
                delay,
                exc,
            )
            if on_retry is not None:
                on_retry(attempt, exc, delay)
        await sleep(delay)
