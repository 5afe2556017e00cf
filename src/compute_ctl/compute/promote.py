"""Promotion of a replica to primary (`POST /promote`).

Called by the control plane on a replica once the old primary is gone. One promotion per
compute: the first request starts it, concurrent and later requests wait for and get the same
outcome, and a client that disconnects does not stop it. A failure is final as well.

Steps: the compute must be a replica whose LFC prewarm has ended (a failed prewarm only warns);
wait until Postgres has replayed WAL up to the old primary's `wal_flush_lsn` (21 polls, 1 s
apart); point the walproposer at the safekeepers (`ALTER SYSTEM`, reload); `pg_promote()`;
check the session is no longer read-only; store the new spec and re-configure without
changing the compute's status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from compute_ctl.errors import ComputeError
from compute_ctl.failpoints import PROMOTION, Failpoints
from compute_ctl.lfc import NO_SPEC, LfcError, maintenance_client, prewarm_display
from compute_ctl.spec.responses import (
    LfcPrewarmFailed,
    LfcPrewarmNotPrewarmed,
    LfcPrewarmPrewarming,
    PromoteCompleted,
    PromoteFailed,
    PromoteState,
)
from compute_ctl.spec.types import Lsn

if TYPE_CHECKING:
    from compute_ctl.lfc import Lfc
    from compute_ctl.spec.resolve import ParsedSpec
    from compute_ctl.state import ComputeState

log = logging.getLogger(__name__)

RETRIES = 20
POLL_INTERVAL = 1.0

Sleep = Callable[[float], Awaitable[None]]
Reconfigure = Callable[["ParsedSpec"], Awaitable[None]]


class PromoteError(ComputeError):
    """A promotion step failed; the text is the `error` of the failed PromoteState."""


async def wait_for_replay(
    read_lsn: Callable[[], Awaitable[Lsn]],
    target: Lsn,
    *,
    retries: int = RETRIES,
    interval: float = POLL_INTERVAL,
    sleep: Sleep = asyncio.sleep,
) -> Lsn:
    """Poll the replay LSN until it reaches `target`: `retries + 1` polls, with a pause of
    `interval` after each one that falls short (also after the last, as upstream)."""
    replayed = Lsn(0)
    for attempt in range(retries + 1):
        replayed = await read_lsn()
        if replayed >= target:
            return replayed
        log.info(
            "catching up with the primary: replayed %s of %s, try %d", replayed, target, attempt
        )
        await sleep(interval)
    raise PromoteError(f"didn't catch up with primary in {retries} retries")


def _describe(exc: BaseException) -> str:
    """An unexpected error and its causes on one line (`a: b`), as upstream's `{:#}`."""
    parts = [str(exc) or type(exc).__name__]
    cause = exc.__cause__
    while cause is not None:
        parts.append(str(cause) or type(cause).__name__)
        cause = cause.__cause__
    return ": ".join(parts)


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Promotion:
    """The one promotion of a compute (`promote` is what the route calls)."""

    def __init__(
        self,
        state: ComputeState,
        lfc: Lfc,
        connstr: str,
        reconfigure: Reconfigure,
        failpoints: Failpoints | None = None,
        *,
        retries: int = RETRIES,
        interval: float = POLL_INTERVAL,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.state = state
        self.lfc = lfc
        self.connstr = connstr
        self.reconfigure = reconfigure
        self.failpoints = failpoints
        self.retries = retries
        self.interval = interval
        self.sleep = sleep
        self._task: asyncio.Task[PromoteState] | None = None

    async def promote(self, pspec: ParsedSpec, wal_flush_lsn: Lsn) -> PromoteState:
        """Start the promotion with these arguments unless one was started before (then
        these are ignored), and wait for its outcome. Cancelling the caller (a client that
        went away) does not cancel the promotion."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run(pspec, wal_flush_lsn))
            self._task.set_name("promote")
        return await asyncio.shield(self._task)

    async def _run(self, pspec: ParsedSpec, wal_flush_lsn: Lsn) -> PromoteState:
        log.info("promoting the replica (wal_flush_lsn %s)", wal_flush_lsn)
        try:
            state: PromoteState = await self._promote(pspec, wal_flush_lsn)
        except Exception as exc:
            error = exc.one_line() if isinstance(exc, ComputeError) else _describe(exc)
            log.error("promoting replica: %s", error)
            return PromoteFailed(error=error)
        log.info("promotion completed")
        return state

    def _check_preconditions(self) -> None:
        current = self.state.pspec
        if current is None:
            raise PromoteError(NO_SPEC)
        mode = current.spec.mode
        if mode.kind != "replica":
            raise PromoteError(f'compute mode "{mode.type_str()}" is not replica')
        prewarm = self.lfc.prewarm_state
        if isinstance(prewarm, LfcPrewarmNotPrewarmed | LfcPrewarmPrewarming):
            raise PromoteError(f"compute {prewarm_display(prewarm)}")
        if isinstance(prewarm, LfcPrewarmFailed):
            log.warning("compute prewarm failed: %s", prewarm.error)

    async def _promote(self, pspec: ParsedSpec, wal_flush_lsn: Lsn) -> PromoteCompleted:
        import psycopg  # noqa: PLC0415 - off the start-up path

        from compute_ctl.postgres.connect import pg_error_text  # noqa: PLC0415

        self._check_preconditions()

        async def run(what: str, sql: str) -> Any:
            try:
                cursor = await conn.execute(sql.encode())
                return await cursor.fetchone() if cursor.description else None
            except psycopg.Error as exc:
                raise PromoteError(f"{what}: {pg_error_text(exc)}") from None

        try:
            conn = await maintenance_client(self.connstr)
        except LfcError as exc:
            raise PromoteError(str(exc)) from None
        async with conn:
            started = time.monotonic()

            async def replay_lsn() -> Lsn:
                row = await run(
                    "getting last replay lsn", "SELECT pg_catalog.pg_last_wal_replay_lsn()"
                )
                if row is None or row[0] is None:
                    raise PromoteError("getting last replay lsn: Postgres is not in recovery")
                return Lsn.parse(str(row[0]))

            await wait_for_replay(
                replay_lsn,
                wal_flush_lsn,
                retries=self.retries,
                interval=self.interval,
                sleep=self.sleep,
            )
            lsn_wait_ms = int((time.monotonic() - started) * 1000)
            started = time.monotonic()

            safekeepers = ",".join(pspec.spec.safekeeper_connstrings)
            await run(
                "setting safekeepers",
                f"ALTER SYSTEM SET neon.safekeepers={_sql_literal(safekeepers)}",
            )
            await run(
                "setting synchronous_standby_names",
                "ALTER SYSTEM SET synchronous_standby_names=walproposer",
            )
            await run("reloading postgres config", "SELECT pg_catalog.pg_reload_conf()")
            if self.failpoints is not None and await self.failpoints.hit(PROMOTION):
                raise PromoteError("compute-promotion failpoint")
            row = await run("pg_promote", "SELECT * FROM pg_catalog.pg_promote()")
            if row is None or row[0] is not True:
                raise PromoteError("pg_promote() failed")
            pg_promote_ms = int((time.monotonic() - started) * 1000)
            started = time.monotonic()

            row = await run("getting transaction_read_only", "SHOW transaction_read_only")
            if row is not None and row[0] == "on":
                raise PromoteError("replica in read only mode after promotion")

        self.state.pspec = pspec
        log.info("applied the new spec, reconfiguring as primary")
        await self.reconfigure(pspec)
        reconfigure_ms = int((time.monotonic() - started) * 1000)
        return PromoteCompleted(
            lsn_wait_time_ms=lsn_wait_ms,
            pg_promote_time_ms=pg_promote_ms,
            reconfigure_time_ms=reconfigure_ms,
        )
