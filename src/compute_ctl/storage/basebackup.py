"""Fetching the basebackup into PGDATA: retries, extraction, measurements.

The pageserver client (`storage/pageserver.py`, libpq or gRPC as the spec prefers) pushes the
gzip stream into the streaming extractor, which unpacks in a worker thread while the next bytes
arrive so the event loop keeps serving HTTP. Transient failures (connection problems, a stream
cut short) are retried by the basebackup retry policy (`storage/retry.py`); a hostile archive or
a refusal that a retry would only repeat fails at once. A spec without a URL for the preferred
protocol never gets here: resolution refuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from compute_ctl import progress
from compute_ctl.archive import CorruptArchiveError, TarballSink
from compute_ctl.errors import ComputeError, StorageError
from compute_ctl.spec.types import Lsn
from compute_ctl.storage.pageserver import PageserverClient
from compute_ctl.storage.retry import BASEBACKUP_RETRY, RetryPolicy, retry
from compute_ctl.storage.sink import BasebackupStats

log = logging.getLogger(__name__)

BATCH_BYTES = 1 << 20
KEEP_ON_RETRY = frozenset({"postgresql.conf"})


class ThreadedSink:
    """An async `feed` in front of `TarballSink`: chunks are batched and unpacked in a worker
    thread, at most one batch in flight while the next one is received."""

    def __init__(self, pgdata: Path, *, batch_bytes: int = BATCH_BYTES) -> None:
        self._sink = TarballSink(pgdata)
        self._batch_bytes = batch_bytes
        self._batch: list[bytes] = []
        self._batched = 0
        self._pending: asyncio.Future[None] | None = None
        self.meter = progress.Meter(log, "basebackup")

    async def feed(self, chunk: bytes) -> None:
        self.meter.add(len(chunk))
        self._batch.append(chunk)
        self._batched += len(chunk)
        if self._batched >= self._batch_bytes:
            await self._flush()

    @property
    def compressed_bytes(self) -> int:
        """Bytes unpacked so far (the gzip stream), as the tar reader counts them."""
        return self._sink.compressed_bytes

    async def _flush(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending
        if self._batch:
            data = b"".join(self._batch)
            self._batch, self._batched = [], 0
            self._pending = asyncio.ensure_future(asyncio.to_thread(self._sink.feed, data))

    async def finish(self) -> None:
        await self._flush()
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending
        await asyncio.to_thread(self._sink.finish)

    async def close(self) -> None:
        self.meter.stop()
        if self._pending is not None:
            # A worker cannot be interrupted: let it end before the sink is closed under it.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._pending)
        self._sink.close()


def clear_for_retry(pgdata: Path) -> None:
    """Remove what a failed attempt unpacked, keeping the configuration written before it."""
    for entry in os.scandir(pgdata):
        if entry.name in KEEP_ON_RETRY:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def is_transient(exc: Exception) -> bool:
    """Worth another try: storage said so, or the stream was cut or corrupted in transit."""
    if isinstance(exc, StorageError):
        return exc.transient
    return isinstance(exc, CorruptArchiveError)


async def _attempt(client: PageserverClient, lsn: Lsn | None, pgdata: Path) -> BasebackupStats:
    started = time.monotonic_ns()
    sink = ThreadedSink(pgdata)
    try:
        stats = await client.basebackup(lsn, sink)
        await sink.finish()
    finally:
        await sink.close()
    return replace(stats, duration_ms=(time.monotonic_ns() - started) // 1_000_000)


async def get_basebackup(
    client: PageserverClient,
    lsn: Lsn | None,
    pgdata: Path,
    *,
    policy: RetryPolicy = BASEBACKUP_RETRY,
) -> BasebackupStats:
    """Fetch shard 0's basebackup at `lsn` (None: latest) into `pgdata`.

    Raises `ComputeError("failed to get basebackup@<lsn>")` with the last failure as its cause.
    """
    tries = 0

    async def attempt() -> BasebackupStats:
        nonlocal tries
        tries += 1
        if tries > 1:
            await asyncio.to_thread(clear_for_retry, pgdata)
        return await _attempt(client, lsn, pgdata)

    try:
        stats = await retry(attempt, policy, is_transient, what="basebackup")
    except ComputeError as exc:
        raise ComputeError(f"failed to get basebackup@{lsn or Lsn(0)}") from exc
    log.info(
        "basebackup over %s: %d bytes in %d ms (connect %d us)",
        client.protocol.value,
        stats.compressed_bytes,
        stats.duration_ms,
        stats.connect_micros,
    )
    return stats


__all__ = ["BasebackupStats", "ThreadedSink", "clear_for_retry", "get_basebackup", "is_transient"]
