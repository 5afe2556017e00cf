"""The lease renewal schedule: `max(valid - 60 s, valid / 2)`."""

from __future__ import annotations

import datetime

import pytest

from compute_ctl.compute.lease import renew_after

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("valid_seconds", "sleep"),
    [(600, 540), (120, 60), (100, 50), (30, 15), (0, 0), (-10, 0)],
)
def test_renew_after(valid_seconds: int, sleep: float) -> None:
    valid_until = NOW + datetime.timedelta(seconds=valid_seconds)
    assert renew_after(valid_until, NOW) == sleep
