"""The compute monitor with real sessions: `last_active` and the downtime metrics."""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres


def last_active(compute: Compute) -> datetime | None:
    value = compute.status()["last_active"]
    return datetime.fromisoformat(value) if value is not None else None


def monitor_rounds(compute: Compute, rounds: int = 3) -> None:
    """Wait until the monitor has run `rounds` more checks, seen from Postgres: each check
    moves its session's `state_change`."""
    seen: set[str] = set()

    def moved() -> bool:
        value = compute.sql(
            "SELECT state_change::text FROM pg_stat_activity "
            "WHERE application_name = 'compute_ctl:compute_monitor'"
        )
        if value is not None:
            seen.add(value)
        return len(seen) > rounds

    wait_until(f"{rounds} monitor rounds", moved)


def start(compute: Compute, make_spec: SpecFactory, *features: str) -> None:
    spec = make_spec(features=list(features))
    # Autovacuum workers count as activity; keep them out of an idle compute.
    spec["cluster"]["settings"].append({"name": "autovacuum", "value": "off", "vartype": "bool"})
    compute.start("-S", str(compute.write("spec.json", spec)))
    compute.wait_status("running")


def test_last_active_follows_a_user_session(compute: Compute, make_spec: SpecFactory) -> None:
    start(compute, make_spec)
    compute.execute("CREATE ROLE alice LOGIN PASSWORD 'alice-pw'")
    monitor_rounds(compute)
    assert last_active(compute) is None  # cloud_admin (the test's own sessions) is not a user

    url = f"postgresql://alice:alice-pw@127.0.0.1:{compute.pg_port}/postgres"
    with psycopg.connect(url, autocommit=True) as alice:
        # A new session that did nothing yet already counts (its state changed to idle).
        wait_until("last_active", lambda: last_active(compute) is not None)
        first = last_active(compute)
        assert first is not None
        monitor_rounds(compute)
        assert last_active(compute) == first  # idle: stays put

        alice.execute("SELECT 1")
        wait_until("last_active moves", lambda: (last_active(compute) or first) > first)
        second = last_active(compute)
        assert second is not None
        monitor_rounds(compute)
        assert last_active(compute) == second

        # An open transaction is not idle: last_active keeps moving while it lasts.
        alice.autocommit = False
        alice.execute("SELECT 1")
        wait_until("moves again", lambda: (last_active(compute) or second) > second)
        third = last_active(compute)
        assert third is not None
        wait_until("and again", lambda: (last_active(compute) or third) > third)
        alice.rollback()
        alice.autocommit = True
        settled = last_active(compute)
        monitor_rounds(compute)
        moved_after = last_active(compute)
        assert moved_after is not None and settled is not None
        monitor_rounds(compute)
        assert last_active(compute) == moved_after
    value = compute.status()["last_active"]
    assert value.endswith("+00:00")


def test_experimental_activity_counts_database_statistics(
    compute: Compute, make_spec: SpecFactory
) -> None:
    start(compute, make_spec, "activity_monitor_experimental")
    assert "starting experimental activity monitor" in compute.log()
    compute.execute("CREATE DATABASE userdb")
    monitor_rounds(compute)
    assert last_active(compute) is None
    # cloud_admin is ignored by the backend rule, but its session in a user database changes
    # that database's statistics.
    compute.execute("SELECT 1", dbname="userdb")
    wait_until("last_active", lambda: last_active(compute) is not None)


def test_downtime_metrics_when_checks_fail(compute: Compute, make_spec: SpecFactory) -> None:
    start(compute, make_spec)
    monitor_rounds(compute, 1)
    assert compute.metric("compute_pg_current_downtime_ms") == 0
    assert compute.metric("compute_pg_downtime_ms_total") == 0
    compute.execute("DROP DATABASE postgres WITH (FORCE)", dbname="template1")
    wait_until(
        "downtime counted",
        lambda: (
            (compute.metric("compute_pg_current_downtime_ms") or 0) > 0
            and (compute.metric("compute_pg_downtime_ms_total") or 0) > 0
        ),
    )
    assert "downtime_info" in compute.log()
    assert compute.status()["status"] == "running"
