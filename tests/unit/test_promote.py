"""Promotion without Postgres: the replay-LSN wait, single flight, and the preconditions."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from compute_ctl.compute.promote import PromoteError, Promotion, wait_for_replay
from compute_ctl.lfc import NO_SPEC, Lfc
from compute_ctl.metrics import PromMetrics
from compute_ctl.spec.load import load_compute_spec
from compute_ctl.spec.resolve import ParsedSpec, resolve
from compute_ctl.spec.responses import (
    LfcPrewarmCancelled,
    LfcPrewarmFailed,
    LfcPrewarmNotPrewarmed,
    LfcPrewarmPrewarming,
    LfcPrewarmSkipped,
    LfcPrewarmState,
    PromoteCompleted,
    PromoteFailed,
    PromoteState,
)
from compute_ctl.spec.types import Lsn
from compute_ctl.state import ComputeState
from tests.support.specs import storage_spec

CLOSED = "postgresql://cloud_admin@127.0.0.1:1/postgres"


def pspec(**fields: Any) -> ParsedSpec:
    return resolve(load_compute_spec(json.dumps(storage_spec(**fields))))


class Clock:
    """Fake sleeps: records them instead of waiting."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def test_replay_wait_gives_up_after_21_polls() -> None:
    clock = Clock()
    polls = 0

    async def read() -> Lsn:
        nonlocal polls
        polls += 1
        return Lsn.parse("0/100")

    with pytest.raises(PromoteError) as caught:
        asyncio.run(wait_for_replay(read, Lsn.parse("0/200"), sleep=clock.sleep))
    assert str(caught.value) == "didn't catch up with primary in 20 retries"
    assert polls == 21
    assert clock.sleeps == [1.0] * 21


def test_replay_wait_returns_once_caught_up() -> None:
    clock = Clock()
    positions = iter(["0/100", "0/1FF", "0/200", "0/300"])

    async def read() -> Lsn:
        return Lsn.parse(next(positions))

    reached = asyncio.run(wait_for_replay(read, Lsn.parse("0/200"), sleep=clock.sleep))
    assert reached == Lsn.parse("0/200")
    assert clock.sleeps == [1.0, 1.0]
    # Already there: no sleep at all.
    clock.sleeps.clear()
    reached = asyncio.run(wait_for_replay(read, Lsn.parse("0/200"), sleep=clock.sleep))
    assert clock.sleeps == []


def promotion_for(parsed: ParsedSpec | None, prewarm: LfcPrewarmState) -> Promotion:
    """A promotion of a compute whose spec is `parsed` and whose last prewarm is `prewarm`;
    its Postgres (at CLOSED) does not answer."""
    lfc = Lfc(CLOSED, lambda: parsed, PromMetrics())
    lfc.prewarm_state = prewarm

    async def reconfigure(pspec: ParsedSpec) -> None:
        raise AssertionError("no promotion gets as far as re-configuring here")

    return Promotion(ComputeState(pspec=parsed), lfc, CLOSED, reconfigure)


def test_single_flight() -> None:
    async def scenario() -> None:
        promotion = promotion_for(None, LfcPrewarmSkipped())
        release = asyncio.Event()
        calls: list[Lsn] = []

        async def promote(pspec: ParsedSpec, wal_flush_lsn: Lsn) -> PromoteCompleted:
            calls.append(wal_flush_lsn)
            await release.wait()
            return PromoteCompleted(lsn_wait_time_ms=1, pg_promote_time_ms=2, reconfigure_time_ms=3)

        promotion._promote = promote  # type: ignore[method-assign]
        parsed = pspec()
        first = asyncio.ensure_future(promotion.promote(parsed, Lsn(1)))
        second = asyncio.ensure_future(promotion.promote(parsed, Lsn(2)))
        await asyncio.sleep(0)
        first.cancel()  # the first client went away
        with pytest.raises(asyncio.CancelledError):
            await first
        release.set()
        outcome = await second
        assert isinstance(outcome, PromoteCompleted)
        later = await promotion.promote(pspec(), Lsn(3))
        assert later == outcome
        assert calls == [Lsn(1)]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("mode", "prewarm", "error"),
    [
        ("Primary", LfcPrewarmSkipped(), 'compute mode "primary" is not replica'),
        ({"Static": "0/16B5A50"}, LfcPrewarmSkipped(), 'compute mode "static" is not replica'),
        ("Replica", LfcPrewarmNotPrewarmed(), "compute NotPrewarmed"),
        ("Replica", LfcPrewarmPrewarming(), "compute Prewarming"),
    ],
)
def test_preconditions(mode: Any, prewarm: LfcPrewarmState, error: str) -> None:
    promotion = promotion_for(pspec(mode=mode), prewarm)
    outcome: PromoteState = asyncio.run(promotion.promote(pspec(), Lsn(0)))
    assert outcome == PromoteFailed(error=error)


def test_no_spec() -> None:
    promotion = promotion_for(None, LfcPrewarmSkipped())
    assert asyncio.run(promotion.promote(pspec(), Lsn(0))) == PromoteFailed(error=NO_SPEC)


@pytest.mark.parametrize("prewarm", [LfcPrewarmFailed(error="x"), LfcPrewarmCancelled()])
def test_other_prewarm_states_pass(prewarm: LfcPrewarmState) -> None:
    """A failed (or any ended) prewarm does not stop a promotion: here it goes on to
    connect, and there is no Postgres."""
    promotion = promotion_for(pspec(mode="Replica"), prewarm)
    outcome = asyncio.run(promotion.promote(pspec(), Lsn(0)))
    assert isinstance(outcome, PromoteFailed)
    assert outcome.error.startswith("connecting to postgres: ")
