"""Failpoints: off without the testing switch, `FAILPOINTS` and `/failpoints` actions in the
`fail` crate's syntax, and what each task does at the place it is evaluated."""

from __future__ import annotations

import asyncio

import pytest

from compute_ctl.failpoints import (
    MIGRATION,
    FailpointError,
    FailpointPanicError,
    Failpoints,
    is_testing_build,
)

TESTING = {"COMPUTE_CTL_TESTING": "1"}


def run(points: Failpoints, name: str = MIGRATION) -> str | None:
    return asyncio.run(points.evaluate(name))


def test_off_without_the_testing_switch() -> None:
    assert not is_testing_build({})
    assert not is_testing_build({"COMPUTE_CTL_TESTING": "0"})
    points = Failpoints.from_environ({"FAILPOINTS": "compute-migration=return(3)"})
    assert not points.enabled
    assert run(points) is None
    # Even a FAILPOINTS that would not parse is ignored without the switch.
    assert not Failpoints.from_environ({"FAILPOINTS": "garbage"}).enabled


def test_failpoints_variable_with_the_switch() -> None:
    env = {**TESTING, "FAILPOINTS": "compute-migration=return(3);compute-prewarm=return"}
    points = Failpoints.from_environ(env)
    assert points.enabled
    assert run(points) == "3"
    assert run(points, "compute-prewarm") == ""
    assert run(points, "compute-promotion") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "compute-migration",
            "startup failpoints: missing action on the 1th failpoint; "
            "try `compute-migration=return`",
        ),
        ("a=return;b", "missing action on the 2th failpoint; try `b=return`"),
        ("a=frobnicate", "failed to apply failpoint a=frobnicate: unrecognized command"),
        ("a=sleep(x)", "failed to apply failpoint a=sleep(x): sleep needs a number"),
    ],
)
def test_bad_failpoints_variable(value: str, message: str) -> None:
    with pytest.raises(FailpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Failpoints.from_environ({**TESTING, "FAILPOINTS": value})


def test_counts_probability_and_chains() -> None:
    points = Failpoints(enabled=True)
    points.configure(MIGRATION, "2*return(5)->off")
    assert [run(points) for _ in range(3)] == ["5", "5", None]
    points.configure(MIGRATION, "0%return(1)->return(2)")
    assert run(points) == "2"
    points.configure(MIGRATION, "100%return(1)")
    assert run(points) == "1"
    points.configure(MIGRATION, "off")
    assert run(points) is None


def test_sleep_print_yield_and_panic() -> None:
    points = Failpoints(enabled=True)
    for actions in ("sleep(1)", "delay(1)", "print(hello)", "yield"):
        points.configure(MIGRATION, actions)
        assert run(points) is None
    points.configure(MIGRATION, "panic(boom)")
    with pytest.raises(FailpointPanicError, match="boom"):
        run(points)


def test_pause_waits_until_reconfigured() -> None:
    async def scenario() -> str | None:
        points = Failpoints(enabled=True)
        points.configure(MIGRATION, "pause")
        paused = asyncio.ensure_future(points.evaluate(MIGRATION))
        await asyncio.sleep(0)
        assert not paused.done()
        points.configure(MIGRATION, "off")
        return await asyncio.wait_for(paused, 5)

    assert asyncio.run(scenario()) is None
