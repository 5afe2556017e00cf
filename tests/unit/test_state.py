"""The compute state machine: the transition table, waiting, and the HTTP-visible spellings."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from compute_ctl.formats import rfc3339_offset, rfc3339_z
from compute_ctl.metrics import PromMetrics
from compute_ctl.state import (
    TRANSITIONS,
    ComputeState,
    ComputeStatus,
    IllegalTransitionError,
    WrongStateError,
)

S = ComputeStatus

# Every edge of the transition list, and nothing else.
EXPECTED = {
    (S.EMPTY, S.INIT),
    (S.EMPTY, S.CONFIGURATION_PENDING),
    (S.CONFIGURATION_PENDING, S.INIT),
    (S.INIT, S.RUNNING),
    (S.INIT, S.FAILED),
    (S.RUNNING, S.CONFIGURATION_PENDING),
    (S.CONFIGURATION_PENDING, S.CONFIGURATION),
    (S.CONFIGURATION, S.RUNNING),
    (S.CONFIGURATION, S.FAILED),
    (S.EMPTY, S.TERMINATION_PENDING_FAST),
    (S.EMPTY, S.TERMINATION_PENDING_IMMEDIATE),
    (S.RUNNING, S.TERMINATION_PENDING_FAST),
    (S.RUNNING, S.TERMINATION_PENDING_IMMEDIATE),
    (S.TERMINATION_PENDING_FAST, S.TERMINATED),
    (S.TERMINATION_PENDING_IMMEDIATE, S.TERMINATED),
    (S.RUNNING, S.REFRESH_CONFIGURATION_PENDING),
    (S.FAILED, S.REFRESH_CONFIGURATION_PENDING),
    (S.REFRESH_CONFIGURATION_PENDING, S.REFRESH_CONFIGURATION_PENDING),
    (S.REFRESH_CONFIGURATION_PENDING, S.REFRESH_CONFIGURATION),
    (S.REFRESH_CONFIGURATION, S.RUNNING),
    (S.REFRESH_CONFIGURATION, S.REFRESH_CONFIGURATION_PENDING),
}


def test_transition_table_is_exactly_the_reference() -> None:
    table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert table == EXPECTED
    assert set(TRANSITIONS) == set(ComputeStatus)


@pytest.mark.parametrize(
    ("current", "new"), [(a, b) for a in S for b in S if (a, b) not in EXPECTED]
)
def test_illegal_transitions_raise(current: ComputeStatus, new: ComputeStatus) -> None:
    async def go() -> None:
        state = ComputeState(status=current)
        with pytest.raises(IllegalTransitionError):
            await state.set_status(new)
        assert state.status is current

    asyncio.run(go())


def test_spellings() -> None:
    assert S.CONFIGURATION_PENDING.value == "configuration_pending"
    assert str(S.CONFIGURATION_PENDING) == "configuration-pending"
    assert str(S.TERMINATION_PENDING_IMMEDIATE) == "termination-pending-immediate"
    assert S.REFRESH_CONFIGURATION.variant == "RefreshConfiguration"
    assert str(WrongStateError(S.INIT)) == "invalid compute status: init"


def test_waiters_wake_on_the_change_they_wait_for() -> None:
    async def go() -> list[str]:
        state = ComputeState()
        seen: list[str] = []

        async def waiter() -> None:
            status = await state.wait_for(S.RUNNING, S.FAILED)
            seen.append(status.value)

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        await state.set_status(S.INIT)
        assert not task.done()
        await state.set_status(S.RUNNING)
        await task
        return seen

    assert asyncio.run(go()) == ["running"]


def test_transition_if_refuses_wrong_states() -> None:
    async def go() -> None:
        state = ComputeState(status=S.INIT)
        with pytest.raises(WrongStateError):
            await state.transition_if([S.EMPTY, S.RUNNING], S.TERMINATION_PENDING_FAST)
        state.status = S.RUNNING
        assert await state.transition_if([S.RUNNING], S.CONFIGURATION_PENDING) is S.RUNNING

    asyncio.run(go())


def test_status_metric_has_one_sample() -> None:
    prom = PromMetrics(build_tag="t")
    state = ComputeState(listeners=[prom.set_status])

    async def go() -> None:
        await state.set_status(S.INIT)
        await state.set_status(S.RUNNING)

    asyncio.run(go())
    text = prom.render().decode()
    assert text.count("compute_ctl_up{") == 1
    assert 'compute_ctl_up{build_tag="t",status="running"} 1' in text.splitlines()


@pytest.mark.parametrize(
    ("micros", "z", "offset"),
    [
        (0, "2026-03-25T09:27:03Z", "2026-03-25T09:27:03+00:00"),
        (512000, "2026-03-25T09:27:03.512Z", "2026-03-25T09:27:03.512+00:00"),
        (4312, "2026-03-25T09:27:03.004312Z", "2026-03-25T09:27:03.004312+00:00"),
    ],
)
def test_timestamp_forms(micros: int, z: str, offset: str) -> None:
    moment = datetime(2026, 3, 25, 9, 27, 3, micros, tzinfo=UTC)
    assert rfc3339_z(moment) == z
    assert rfc3339_offset(moment) == offset


@pytest.mark.parametrize(
    ("text", "debug"),
    [
        ("unknown error", '"unknown error"'),
        ('a "b" \\ c', '"a \\"b\\" \\\\ c"'),
        ("line\nnext\ttab", '"line\\nnext\\ttab"'),
        ("esc\x1b", '"esc\\u{1b}"'),
        ("é 😀", '"é 😀"'),
    ],
)
def test_rust_debug_quoting(text: str, debug: str) -> None:
    from compute_ctl.formats import rust_debug_str

    assert rust_debug_str(text) == debug
