"""The one pageserver client: basebackup and LSN leases, over libpq or gRPC, chosen once.

`prefer_protocol` decides how compute_ctl talks to its pageservers, for the basebackup of a
start and for the LSN leases of a static compute alike. `pageserver_client` makes that choice
from a `ParsedSpec`; callers (`compute/prepare.py`, `compute/lease.py`) only see the
`PageserverClient` interface. The URLs come from the spec's shard map as resolution walked it
(`ParsedSpec.basebackup_url`, `ParsedSpec.lease_targets`).

Each protocol's module is imported when first used: psycopg and grpc are heavy, and a compute
waiting for its spec, or a libpq start, never needs grpc. A gRPC basebackup runs in a child
process (`storage/grpc_child.py`), so that grpcio is not left resident in compute_ctl after
it; the LSN leases of a static compute are taken in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from compute_ctl.spec.models import PageserverProtocol
from compute_ctl.spec.resolve import ParsedSpec
from compute_ctl.spec.types import Lsn, ShardIndex, TenantShardId
from compute_ctl.storage.sink import BasebackupStats, ChunkSink

log = logging.getLogger(__name__)


class PageserverClient(Protocol):
    """What compute_ctl asks of its pageservers."""

    @property
    def protocol(self) -> PageserverProtocol: ...

    async def basebackup(self, lsn: Lsn | None, sink: ChunkSink) -> BasebackupStats:
        """Stream shard 0's gzip basebackup at `lsn` (None: latest) into `sink`."""
        ...

    async def lease_lsn(self, url: str, shard: ShardIndex, lsn: Lsn) -> datetime.datetime | None:
        """Lease `lsn` on one shard from the pageserver at `url`: the expiry, or None when it
        is not granted (behind the GC cutoff, permanent)."""
        ...

    def started_ahead(self) -> AbstractAsyncContextManager[None]:
        """While inside, what the first `basebackup` needs is readied in the background
        (gRPC: its child process starts and loads grpcio while the LSN is found); whatever
        was not used is stopped on the way out."""
        ...


@dataclass(frozen=True)
class _LibpqClient:
    pspec: ParsedSpec

    @property
    def protocol(self) -> PageserverProtocol:
        return PageserverProtocol.LIBPQ

    async def basebackup(self, lsn: Lsn | None, sink: ChunkSink) -> BasebackupStats:
        from compute_ctl.storage.libpq import libpq_basebackup  # noqa: PLC0415 - see module

        pspec = self.pspec
        return await libpq_basebackup(
            pspec.shard_url(0, self.protocol),
            pspec.tenant_id,
            pspec.timeline_id,
            lsn,
            mode_type=pspec.spec.mode.type_str(),
            token=pspec.storage_auth_token,
            sink=sink,
        )

    @contextlib.asynccontextmanager
    async def started_ahead(self) -> AsyncIterator[None]:
        from compute_ctl.storage.grpc_child import discard_spare  # noqa: PLC0415 - see module

        await discard_spare()  # a gRPC child kept ready while empty is not needed
        yield

    async def lease_lsn(self, url: str, shard: ShardIndex, lsn: Lsn) -> datetime.datetime | None:
        from compute_ctl.storage.libpq import libpq_lease_lsn  # noqa: PLC0415 - see module

        pspec = self.pspec
        return await libpq_lease_lsn(
            url,
            TenantShardId(pspec.tenant_id, shard),
            pspec.timeline_id,
            lsn,
            token=pspec.storage_auth_token,
        )


@dataclass(frozen=True)
class _GrpcClient:
    pspec: ParsedSpec
    _spare: list[asyncio.subprocess.Process] = field(
        default_factory=list, compare=False, repr=False
    )
    """A child process started ahead (`started_ahead`), waiting for its request."""

    @property
    def protocol(self) -> PageserverProtocol:
        return PageserverProtocol.GRPC

    @contextlib.asynccontextmanager
    async def started_ahead(self) -> AsyncIterator[None]:
        from compute_ctl.storage.grpc_child import (  # noqa: PLC0415 - see module
            discard_child,
            start_child,
            take_spare,
        )

        try:
            ready = await take_spare()
            if ready is not None:
                log.info(
                    "the gRPC client process kept ready while empty (pid %d) is used", ready.pid
                )
            self._spare.append(ready or await start_child())
        except OSError as exc:  # the attempt starts its own, and reports why it cannot
            log.warning("could not start the gRPC client process ahead: %s", exc)
        try:
            yield
        finally:
            while self._spare:
                await discard_child(self._spare.pop())

    async def basebackup(self, lsn: Lsn | None, sink: ChunkSink) -> BasebackupStats:
        # In a child process: grpcio never loads into compute_ctl for it (see grpc_child).
        from compute_ctl.storage.grpc_child import (  # noqa: PLC0415 - see module
            BasebackupRequest,
            basebackup_in_child,
        )

        pspec = self.pspec
        started = time.monotonic_ns()
        request = BasebackupRequest(
            url=pspec.shard_url(0, self.protocol),
            tenant=str(pspec.tenant_id),
            timeline=str(pspec.timeline_id),
            lsn=int(lsn) if lsn is not None else None,
            replica=not pspec.spec.mode.is_primary,
            shard=str(ShardIndex(0, pspec.pageserver_conninfo.shard_count)),
            token=pspec.storage_auth_token,
        )
        spare = self._spare.pop() if self._spare else None
        result = await basebackup_in_child(request, sink, child=spare)
        return BasebackupStats(
            connect_micros=result.connect_micros,
            compressed_bytes=result.compressed_bytes,
            duration_ms=(time.monotonic_ns() - started) // 1_000_000,
        )

    async def lease_lsn(self, url: str, shard: ShardIndex, lsn: Lsn) -> datetime.datetime | None:
        from compute_ctl.storage.grpc import grpc_lease_lsn  # noqa: PLC0415 - see module

        pspec = self.pspec
        return await grpc_lease_lsn(
            url, pspec.tenant_id, pspec.timeline_id, shard, lsn, token=pspec.storage_auth_token
        )


def pageserver_client(pspec: ParsedSpec) -> PageserverClient:
    """The client for the protocol the spec prefers."""
    if pspec.protocol is PageserverProtocol.GRPC:
        return _GrpcClient(pspec)
    return _LibpqClient(pspec)
