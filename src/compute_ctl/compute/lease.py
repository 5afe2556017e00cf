"""LSN leases for a static compute: keep the pageservers from collecting the pinned LSN.

A static compute reads at a fixed LSN; the pageserver may garbage-collect history below its
cutoff unless someone holds a lease. This task takes a lease on every shard from every listed
pageserver, sleeps until shortly before the earliest one expires, and renews. Errors are retried
forever with backoff (500 ms ×1.5, at most 60 s); a pageserver saying "not granted" (the LSN is
already behind the GC cutoff) ends the task for good. The spec is re-read before every attempt,
and every sleep ends early when the pageserver connection info changes.
"""

from __future__ import annotations

import datetime
import logging

from compute_ctl.errors import ComputeError
from compute_ctl.spec.models import PageserverConnectionInfo
from compute_ctl.spec.resolve import ParsedSpec
from compute_ctl.spec.types import Lsn
from compute_ctl.state import ComputeState
from compute_ctl.storage.pageserver import pageserver_client

log = logging.getLogger(__name__)

RETRY_INITIAL = 0.5
RETRY_MULTIPLIER = 1.5
RETRY_MAX = 60.0
RENEW_MARGIN = datetime.timedelta(seconds=60)


class LeaseRefusedError(Exception):
    """A pageserver will not lease this LSN (behind the GC cutoff): permanent."""


async def acquire_leases(pspec: ParsedSpec, lsn: Lsn) -> datetime.datetime:
    """Lease `lsn` on every shard from every listed pageserver; the earliest expiry.

    Raises LeaseRefusedError when any of them refuses, and StorageError (or SpecError for a
    pageserver without a URL for the preferred protocol) for anything worth retrying."""
    client = pageserver_client(pspec)
    expiries: list[datetime.datetime] = []
    for shard, url in pspec.lease_targets():
        expires = await client.lease_lsn(url, shard, lsn)
        if expires is None:
            raise LeaseRefusedError(f"shard {shard}")
        expiries.append(expires)
    if not expiries:
        raise LeaseRefusedError("no pageserver to lease from")
    return min(expiries)


def renew_after(valid_until: datetime.datetime, now: datetime.datetime) -> float:
    """Seconds to sleep before renewing: `max(valid - 60 s, valid / 2)`."""
    valid = max(valid_until - now, datetime.timedelta(0))
    return max(valid - RENEW_MARGIN, valid / 2).total_seconds()


async def _sleep_unless_conninfo_changes(
    state: ComputeState, seconds: float, conninfo: PageserverConnectionInfo
) -> None:
    """Sleep, but wake as soon as a re-configure changes the pageserver connection info."""

    def changed() -> bool:
        return state.pspec is None or state.pspec.pageserver_conninfo != conninfo

    await state.wait_for_change(changed, seconds)


async def lease_loop(state: ComputeState, lsn: Lsn) -> None:
    """Keep `lsn` leased until cancelled or refused for good."""
    backoff = RETRY_INITIAL
    while True:
        pspec = state.pspec
        if pspec is None:
            return
        conninfo = pspec.pageserver_conninfo
        try:
            valid_until = await acquire_leases(pspec, lsn)
        except LeaseRefusedError as exc:
            log.error(
                "Permanent error: lease could not be obtained, LSN is behind the GC cutoff (%s)",
                exc,
            )
            return
        except Exception as exc:
            text = exc.one_line() if isinstance(exc, ComputeError) else repr(exc)
            log.warning("lsn lease at %s failed, retrying in %.1f s: %s", lsn, backoff, text)
            await _sleep_unless_conninfo_changes(state, backoff, conninfo)
            backoff = min(backoff * RETRY_MULTIPLIER, RETRY_MAX)
            continue
        backoff = RETRY_INITIAL
        now = datetime.datetime.now(datetime.UTC)
        delay = renew_after(valid_until, now)
        log.info("lsn lease at %s valid until %s; renewing in %.0f s", lsn, valid_until, delay)
        await _sleep_unless_conninfo_changes(state, delay, conninfo)
