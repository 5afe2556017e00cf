"""The compute monitor: when was the compute last used, and is Postgres answering?

Started once the compute is `running`, it checks every 500 ms over one connection of its own
(reconnecting when it is lost) and stops when the compute is terminating, terminated or failed.
Activity, first rule that fires:

1. only with the `activity_monitor_experimental` feature: the summed `active_time` or
   `sessions` of the user databases changed since the previous sample ⇒ now;
2. a client backend (not ours, not `cloud_admin`) in a state other than `idle` ⇒ now; else the
   latest `state_change` of idle ones, if later than what the monitor saw before;
3. a walsender other than the walproposer, 4. a running logical subscription worker,
   5. an autovacuum worker ⇒ now.

The shared `last_active` only moves forward. Each check also says whether Postgres is up; while
it is down, `compute_pg_current_downtime_ms` grows and `compute_pg_downtime_ms_total` adds up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from compute_ctl.metrics import PromMetrics
from compute_ctl.postgres import lean_query
from compute_ctl.postgres.connect import connect, pg_error_text
from compute_ctl.state import ComputeState, ComputeStatus, utcnow

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

CHECK_INTERVAL = 0.5
APPLICATION_NAME = "compute_ctl:compute_monitor"
EXPERIMENTAL_FEATURE = "activity_monitor_experimental"

STOP_STATES = frozenset(
    {
        ComputeStatus.TERMINATED,
        ComputeStatus.TERMINATION_PENDING_FAST,
        ComputeStatus.TERMINATION_PENDING_IMMEDIATE,
        ComputeStatus.FAILED,
    }
)

DATABASE_STATS_QUERY = (
    "SELECT coalesce(sum(active_time), 0.0)::float8, coalesce(sum(sessions), 0)::bigint "
    "FROM pg_catalog.pg_stat_database "
    "WHERE datname NOT IN ('postgres', 'template0', 'template1')"
)
ACTIVITY_QUERY = (
    "SELECT a.state, a.state_change, w.busy FROM (SELECT "
    "(SELECT count(*) FROM pg_catalog.pg_stat_replication "
    "WHERE application_name <> 'walproposer') "
    "+ (SELECT count(*) FROM pg_catalog.pg_stat_subscription WHERE pid IS NOT NULL) "
    "+ (SELECT count(*) FROM pg_catalog.pg_stat_activity "
    "WHERE backend_type = 'autovacuum worker') AS busy) w "
    "LEFT JOIN (SELECT state, state_change FROM pg_catalog.pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_catalog.pg_backend_pid() "
    "AND usename <> 'cloud_admin') a ON true"
)
"""Rules 2-5 in one round trip (one statement, so one snapshot of the statistics): a row per
client backend (not ours, not `cloud_admin`; one row of NULLs when there is none), each with
the number of walsenders other than the walproposer, running subscription workers and
autovacuum workers. Four queries cost about four times the CPU at every check."""
ACTIVITY_QUERY_BYTES = ACTIVITY_QUERY.encode()
ACTIVITY_COLUMNS = (lean_query.TEXT_OID, lean_query.TIMESTAMPTZ_OID, lean_query.INT8_OID)

Backend = tuple[str | None, datetime | None]
ActivityRow = tuple[str | None, datetime | None, int]


def backends_activity(rows: Iterable[Backend], now: datetime) -> datetime | None:
    """Rule 2: `now` if a backend is busy, else the latest idle `state_change` (or None).
    Backends without a state (not tracked) are ignored."""
    latest: datetime | None = None
    for state, changed in rows:
        if state is None:
            continue
        if state != "idle":
            return now
        if changed is not None:
            at = changed.astimezone(UTC)
            if latest is None or at > latest:
                latest = at
    return latest


def later(current: datetime | None, candidate: datetime | None) -> datetime | None:
    """The later of two times; any time beats None."""
    if candidate is None:
        return current
    if current is None or candidate > current:
        return candidate
    return current


async def activity_rows(conn: psycopg.AsyncConnection[Any]) -> list[ActivityRow]:
    """ACTIVITY_QUERY's rows, read through libpq directly (postgres/lean_query.py: a check
    twice a second is most of an idle compute's CPU); an answer that path does not decode is
    asked again through psycopg's cursor, which raises its error as psycopg does."""
    raw = await lean_query.binary_rows(conn, ACTIVITY_QUERY_BYTES, ACTIVITY_COLUMNS)
    if raw is None:
        cur = await conn.execute(ACTIVITY_QUERY)
        return [(state, changed, int(busy)) for state, changed, busy in await cur.fetchall()]
    return [
        (
            lean_query.text(state),
            lean_query.timestamptz(changed),
            lean_query.int8(busy) or 0,
        )
        for state, changed, busy in raw
    ]


class ComputeMonitor:
    def __init__(
        self,
        state: ComputeState,
        connstr: str,
        prom: PromMetrics,
        *,
        experimental: bool,
        interval: float = CHECK_INTERVAL,
    ) -> None:
        self.state = state
        self.connstr = connstr
        self.prom = prom
        self.experimental = experimental
        self.interval = interval
        self.last_active: datetime | None = None
        self._prev_stats: tuple[float, int] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._last_up = time.monotonic()
        self._last_checked = time.monotonic()

    # --------------------------------------------------------------------------------------

    async def _stats_changed(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        cur = await conn.execute(DATABASE_STATS_QUERY)
        row = await cur.fetchone()
        sample = (float(row[0]), int(row[1])) if row else (0.0, 0)
        changed = self._prev_stats is not None and sample != self._prev_stats
        self._prev_stats = sample
        return changed

    async def activity(self, conn: psycopg.AsyncConnection[Any]) -> datetime | None:
        """The latest activity one check finds (None if none); raises psycopg.Error."""
        now = utcnow()
        if self.experimental and await self._stats_changed(conn):
            return now
        rows = await activity_rows(conn)
        found = backends_activity([(state, changed) for state, changed, _ in rows], now)
        if found == now or (rows and rows[0][2] > 0):
            return now
        if found is not None and (self.last_active is None or found > self.last_active):
            return found
        return None

    def publish(self, found: datetime | None) -> None:
        self.last_active = later(self.last_active, found)
        self.state.last_active = later(self.state.last_active, self.last_active)

    # --------------------------------------------------------------------------------------

    def _report(self, up: bool, now: float) -> tuple[int, int]:
        """Update the downtime metrics; returns (current downtime, this check's share) in ms."""
        if up:
            self._last_up = now
            self.prom.pg_current_downtime_ms.set(0)
            return 0, 0
        current = int((now - self._last_up) * 1000)
        share = max(0, int((now - self._last_checked) * 1000))
        self.prom.pg_current_downtime_ms.set(current)
        self.prom.pg_downtime_ms_total.inc(share)
        return current, share

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def check_once(self) -> bool:
        """One round: (re)connect if needed, check, publish, report. True when Postgres is up."""
        import psycopg  # noqa: PLC0415 - psycopg is heavy: off the start-up path

        problem: str | None = None
        found: datetime | None = None
        try:
            if self._conn is None or self._conn.closed:
                await self._close()
                self._conn = await connect(self.connstr, APPLICATION_NAME)
            found = await self.activity(self._conn)
        except (psycopg.Error, OSError) as exc:
            problem = pg_error_text(exc)
            await self._close()
        now = time.monotonic()
        current, share = self._report(problem is None, now)
        self._last_checked = now
        if problem is not None:
            log.error(
                "could not check Postgres: %s downtime_info: current_downtime_ms=%d "
                "added_downtime_ms=%d",
                problem,
                current,
                share,
            )
            return False
        self.publish(found)
        return True

    async def run(self) -> None:
        """Wait for `running`, then check every interval until the compute stops."""
        await self.state.wait_for(ComputeStatus.RUNNING)
        kind = "experimental activity monitor" if self.experimental else "activity monitor"
        log.info("starting %s", kind)
        self._last_up = self._last_checked = time.monotonic()
        try:
            while self.state.status not in STOP_STATES:
                await self.check_once()
                await asyncio.sleep(self.interval)
        finally:
            await self._close()
        log.info("activity monitor stopped (compute %s)", self.state.status)
