"""The retry schedules are the documented ones, and the loop retries exactly what it should."""

from __future__ import annotations

import asyncio

import pytest

from compute_ctl.errors import StorageError
from compute_ctl.storage.retry import (
    BASEBACKUP_RETRIES_ENV,
    BASEBACKUP_RETRY,
    NO_RETRY,
    SYNC_SAFEKEEPERS_RETRY,
    RetryPolicy,
    basebackup_retry_policy,
    retry,
)


class FakeSleep:
    """Records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _transient(exc: Exception) -> bool:
    return isinstance(exc, StorageError) and exc.transient


def test_basebackup_schedule_is_upstreams() -> None:
    """11 tries; 500 ms ×1.5 truncated to whole ms; about 56.7 s in all."""
    assert BASEBACKUP_RETRY.max_attempts == 11
    millis = [round(d * 1000) for d in BASEBACKUP_RETRY.delays()]
    assert millis == [500, 750, 1125, 1687, 2531, 3796, 5695, 8542, 12814, 19221]
    assert sum(millis) == 56661


def test_sync_safekeepers_schedule_is_upstreams() -> None:
    """6 runs; waits 0, 1.1, 1.21, 1.331, 1.4641 s."""
    assert SYNC_SAFEKEEPERS_RETRY.max_attempts == 6
    assert SYNC_SAFEKEEPERS_RETRY.delays() == pytest.approx([0.0, 1.1, 1.21, 1.331, 1.4641])


def test_cap_applies() -> None:
    policy = RetryPolicy(max_retries=15, max_delay=3.0)
    assert max(policy.delays()) == 3.0
    assert SYNC_SAFEKEEPERS_RETRY.with_retries(20).delays()[-1] == 3.0


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="shrink"):
        RetryPolicy(multiplier=0.5)
    with pytest.raises(ValueError, match="retry numbers"):
        BASEBACKUP_RETRY.delay(-1)


def test_env_override_counts_retries() -> None:
    assert basebackup_retry_policy({}) is BASEBACKUP_RETRY
    policy = basebackup_retry_policy({BASEBACKUP_RETRIES_ENV: "2"})
    assert policy.max_attempts == 3
    assert policy.delays() == [0.5, 0.75]
    assert basebackup_retry_policy({BASEBACKUP_RETRIES_ENV: "0"}).max_attempts == 1
    with pytest.raises(ValueError, match=BASEBACKUP_RETRIES_ENV):
        basebackup_retry_policy({BASEBACKUP_RETRIES_ENV: "many"})


def test_succeeds_after_transient_failures() -> None:
    sleep = FakeSleep()
    calls = 0
    retries: list[int] = []

    async def op() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise StorageError("pageserver", f"refused {calls}", transient=True)
        return "ok"

    result = asyncio.run(
        retry(
            op,
            BASEBACKUP_RETRY,
            _transient,
            sleep=sleep,
            on_retry=lambda attempt, exc, delay: retries.append(attempt),
        )
    )
    assert result == "ok"
    assert calls == 4
    assert sleep.waits == [0.5, 0.75, 1.125]
    assert retries == [1, 2, 3]


def test_gives_up_with_the_last_error_and_its_cause() -> None:
    sleep = FakeSleep()
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        try:
            raise ConnectionRefusedError(f"attempt {calls}")
        except ConnectionRefusedError as exc:
            raise StorageError("pageserver", f"connect failed {calls}", transient=True) from exc

    with pytest.raises(StorageError, match="connect failed 11") as info:
        asyncio.run(retry(op, BASEBACKUP_RETRY, _transient, what="basebackup", sleep=sleep))
    assert calls == 11
    assert len(sleep.waits) == 10
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert str(info.value.__cause__) == "attempt 11"
    assert "basebackup: gave up after 11 tries" in (info.value.__notes__ or [])


def test_permanent_error_is_not_retried() -> None:
    sleep = FakeSleep()
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise StorageError("sync-safekeepers", "cannot start", transient=False)

    with pytest.raises(StorageError, match="cannot start"):
        asyncio.run(retry(op, BASEBACKUP_RETRY, _transient, sleep=sleep))
    assert calls == 1
    assert sleep.waits == []


def test_no_retry_policy_tries_once() -> None:
    sleep = FakeSleep()
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise StorageError("x", "boom", transient=True)

    with pytest.raises(StorageError):
        asyncio.run(retry(op, NO_RETRY, _transient, sleep=sleep))
    assert calls == 1
    assert sleep.waits == []


def test_cancellation_is_not_retried() -> None:
    """Cancelling the task during a wait ends the loop at once (nothing swallows it)."""
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise StorageError("x", "boom", transient=True)

    async def main() -> None:
        gate = asyncio.Event()

        async def blocking_sleep(seconds: float) -> None:
            gate.set()
            await asyncio.Event().wait()  # forever, until cancelled

        task = asyncio.create_task(retry(op, BASEBACKUP_RETRY, _transient, sleep=blocking_sleep))
        await gate.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert calls == 1


def test_default_sleep_is_asyncio_sleep() -> None:
    """With the default sleep and zero delays the loop still yields to the event loop."""
    policy = RetryPolicy(max_retries=3, initial_delay=0.0)
    ticks = 0
    calls = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def op() -> int:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise StorageError("x", "again", transient=True)
        return calls

    async def main() -> int:
        tick_task = asyncio.create_task(ticker())
        try:
            return await retry(op, policy, _transient)
        finally:
            tick_task.cancel()

    assert asyncio.run(main()) == 4
    assert ticks >= 3
