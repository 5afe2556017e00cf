"""The compute monitor's activity rules (pure parts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from compute_ctl.compute.activity_monitor import backends_activity, later

NOW = datetime(2026, 3, 25, 9, 31, 10, tzinfo=UTC)
T1 = NOW - timedelta(minutes=5)
T2 = NOW - timedelta(minutes=1)


def test_a_busy_backend_means_now() -> None:
    assert backends_activity([("idle", T1), ("active", T2)], NOW) == NOW
    assert backends_activity([("idle in transaction", T1)], NOW) == NOW


def test_idle_backends_give_their_latest_state_change() -> None:
    assert backends_activity([("idle", T1), ("idle", T2)], NOW) == T2
    assert backends_activity([], NOW) is None
    assert backends_activity([(None, T2)], NOW) is None  # untracked backends are ignored
    assert backends_activity([("idle", None)], NOW) is None


def test_times_are_compared_in_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    found = backends_activity([("idle", T2.astimezone(plus2)), ("idle", T1)], NOW)
    assert found == T2
    assert found is not None and found.utcoffset() == timedelta(0)


def test_last_active_only_moves_forward() -> None:
    assert later(None, T1) == T1
    assert later(T2, T1) == T2
    assert later(T1, T2) == T2
    assert later(T1, None) == T1
    assert later(None, None) is None
