"""After the postmaster exits: the shutdown sync with the safekeepers, the end of a pending
termination, and the report of any core dump Postgres left."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from compute_ctl.compute.core_dumps import check_for_core_dumps, core_dump_dir
from compute_ctl.errors import chain_text
from compute_ctl.params import Params
from compute_ctl.state import ComputeState, ComputeStatus

log = logging.getLogger(__name__)


async def sync_safekeepers_after_exit(
    state: ComputeState, params: Params, *, neon_available: bool
) -> bool:
    """A primary syncs the safekeepers once (its LSN is what /terminate answers). False when
    the sync failed, which ends the process at once with exit code 1."""
    pspec = state.pspec
    if pspec is None or not pspec.spec.mode.is_primary:
        return True
    if not neon_available:
        log.info("shutdown sync with the safekeepers skipped: the neon extension is missing")
        return True
    from compute_ctl.storage.retry import NO_RETRY  # noqa: PLC0415
    from compute_ctl.storage.safekeepers import sync_safekeepers  # noqa: PLC0415

    started = time.monotonic()
    try:
        lsn = await sync_safekeepers(
            Path(params.pgbin),
            params.pgdata,
            pspec.storage_auth_token,
            policy=NO_RETRY,
            argv_prefix=params.cgroup_prefix,
        )
    except Exception as exc:
        log.error("shutdown sync with the safekeepers failed: %s", chain_text(exc))
        return False
    state.metrics.sync_safekeepers_ms = int((time.monotonic() - started) * 1000)
    state.terminate_flush_lsn = lsn
    log.info("safekeepers synced at %s after Postgres exited", lsn)
    return True


async def after_postgres_exit(
    state: ComputeState, params: Params, *, neon_available: bool
) -> tuple[bool, bool]:
    """The shutdown sync, then a pending termination completes and core dumps are reported.
    Returns (the sync succeeded, the exit is to be delayed: a fast termination lingers)."""
    if not await sync_safekeepers_after_exit(state, params, neon_available=neon_available):
        return False, False
    completed = await state.complete_termination()
    core_dir = core_dump_dir(params.pgdata, lakebase=params.lakebase_mode)
    await check_for_core_dumps(core_dir, params.pgbin)
    return True, completed is ComputeStatus.TERMINATION_PENDING_FAST
