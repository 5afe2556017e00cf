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
from collections.abc import Awaitable, Callable

from compute_ctl.errors import ComputeError
from compute_ctl.spec.models import PageserverConnectionInfo, PageserverProtocol
from compute_ctl.spec.resolve import ParsedSpec
from compute_ctl.spec.types import Lsn, ShardIndex, TenantShardId, effective_shard_count
from compute_ctl.state import ComputeState

log = logging.getLogger(__name__)

RETRY_INITIAL = 0.5
RETRY_MULTIPLIER = 1.5
RETRY_MAX = 60.0
RENEW_MARGIN = datetime.timedelta(seconds=60)

LeaseCall = Callable[[str, ParsedSpec, ShardIndex, Lsn], Awaitable[datetime.datetime | None]]


class LeaseRefusedError(Exception):
    """A pageserver will not lease this LSN (behind the GC cutoff): permanent."""


async def _lease_libpq(
    url: str, pspec: ParsedSpec, shard: ShardIndex, lsn: Lsn
) -> datetime.datetime | None:
    from compute_ctl.storage.libpq import libpq_lease_lsn  # noqa: PLC0415 - static computes only

    return await libpq_lease_lsn(
        url,
        TenantShardId(pspec.tenant_id, shard),
        pspec.timeline_id,
        lsn,
        token=pspec.storage_auth_token,
    )


async def _lease_grpc(
    url: str, pspec: ParsedSpec, shard: ShardIndex, lsn: Lsn
) -> datetime.datetime | None:
    from compute_ctl.storage.grpc import grpc_lease_lsn  # noqa: PLC0415 - static computes only

    return await grpc_lease_lsn(
        url, pspec.tenant_id, pspec.timeline_id, shard, lsn, token=pspec.storage_auth_token
    )


async def acquire_leases(pspec: ParsedSpec, lsn: Lsn) -> datetime.datetime:
    """Lease `lsn` on every shard from every listed pageserver; the earliest expiry.

    Raises LeaseRefusedError when any of them refuses, and StorageError (or SpecError for a
    shard without a URL) for anything worth retrying."""
    conninfo = pspec.pageserver_conninfo
    protocol = conninfo.prefer_protocol
    call: LeaseCall = _lease_grpc if protocol is PageserverProtocol.GRPC else _lease_libpq
    expiries: list[datetime.datetime] = []
    for number in range(effective_shard_count(conninfo.shard_count)):
        shard = ShardIndex(number, conninfo.shard_count)
        info = conninfo.shards.get(shard)
        pageservers = info.pageservers if info is not None else []
        for pageserver in pageservers:
            url = (
                pageserver.grpc_url if protocol is PageserverProtocol.GRPC else pageserver.libpq_url
            )
            if url is None:
                raise ComputeError(f"no {protocol.value}_url for shard {shard}")
            expires = await call(url, pspec, shard, lsn)
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
