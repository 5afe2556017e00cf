"""What the lifecycle does in lakebase mode only: the start-up watchdog and `pg_cctl_attached`.

`--pg-init-timeout` as upstream means it in lakebase mode: a compute that is not `running` that
long after its start began (after the spec arrived) most likely talks to the wrong pageserver
or safekeepers; upstream then ends the process (exit 1) so that it is restarted with the latest
spec. The clock starts when the start-up does, so an `empty` compute waiting for `/configure`
is never ended. Outside lakebase mode the flag bounds the wait for Postgres' readiness instead
(docs/compatibility.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from compute_ctl.state import ComputeState, ComputeStatus, utcnow

if TYPE_CHECKING:
    from compute_ctl.metrics import PromMetrics
    from compute_ctl.params import Params

log = logging.getLogger(__name__)

DEFAULT_INIT_TIMEOUT = 60.0
POLL_SECONDS = 5.0


async def init_watchdog(
    state: ComputeState, timeout: float | None, exit_now: Callable[[int], Awaitable[None]]
) -> None:
    """Return once the compute is `running`; end the process (exit 1) if it is not in time."""
    limit = timeout if timeout is not None else DEFAULT_INIT_TIMEOUT

    def running() -> bool:
        return state.status is ComputeStatus.RUNNING

    while not running():
        wait = POLL_SECONDS
        started = state.pg_start_time
        if started is not None:
            elapsed = (utcnow() - started).total_seconds()
            if elapsed > limit:
                log.error("compute did not enter Running state in %d seconds, exiting", limit)
                await exit_now(1)
                return
            wait = min(wait, limit - elapsed + 0.01)
        await state.wait_for_change(running, wait)


def track_attached(state: ComputeState, params: Params, prom: PromMetrics) -> None:
    """Keep `pg_cctl_attached` on the spec in force: one sample labelled with the compute,
    the instance (`INSTANCE_ID`, without which there is none), the tenant and the timeline.
    A new spec always arrives with a status change."""
    instance_id = params.instance_id
    if instance_id is None:
        return

    def update(_status: ComputeStatus | None = None) -> None:
        pspec = state.pspec
        if pspec is not None:
            prom.set_attached(
                params.compute_id or "", instance_id, str(pspec.tenant_id), str(pspec.timeline_id)
            )

    state.listeners.append(update)
    update()
