"""Sizing Neon's local file cache (LFC) to the memory the VM currently has.

The cache lives in Postgres (the `neon` extension); its size limit is the GUC
`neon.file_cache_size_limit` (MiB), capped by `neon.max_file_cache_size`, and is changed with
`ALTER SYSTEM` plus a reload over a connection of the monitor's own (`--filecache-connstr`).

Stock PostgreSQL has neither setting. Then there is no cache to manage: `FileCache.open`
raises `FileCacheUnavailableError` and the monitor goes on without one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from compute_ctl.vm_monitor.units import MiB

log = logging.getLogger(__name__)

PROBE_QUERY = "SELECT current_setting('neon.max_file_cache_size', true);"
SIZE_QUERY = "SELECT pg_size_bytes(current_setting('neon.file_cache_size_limit'));"
MAX_SIZE_QUERY = "SELECT pg_size_bytes(current_setting('neon.max_file_cache_size'));"
SET_SIZE = sql.SQL("ALTER SYSTEM SET neon.file_cache_size_limit = {};")
RELOAD = "SELECT pg_reload_conf();"


@dataclass(frozen=True)
class FileCacheConfig:
    """How much of the memory the cache gets.

    `resource_multiplier`: at most this fraction of the total. `min_remaining_after_cache`: at
    least this much stays outside the cache (overcommitting is safe: the kernel drops page cache
    first). `spread_factor`: above that minimum, each byte of cache reserves this many bytes
    for everything else until the multiplier's share is reached.
    """

    resource_multiplier: float = 0.75
    min_remaining_after_cache: int = 256 * MiB
    spread_factor: float = 0.1

    def calculate_cache_size(self, total: int) -> int:
        """The cache size (bytes, whole MiB, rounded down) for `total` bytes of memory."""
        available = max(total - self.min_remaining_after_cache, 0)
        if available == 0:
            return 0
        size_from_spread = max(0, int(available / (1.0 + self.spread_factor)))
        size_from_normal = int(total * self.resource_multiplier)
        return min(size_from_spread, size_from_normal) // MiB * MiB


class FileCacheUnavailableError(Exception):
    """Postgres has no file cache to size (no `neon.max_file_cache_size`)."""


async def _connect(connstr: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(connstr, autocommit=True)


async def _query_bytes(conn: psycopg.AsyncConnection[Any], query: str) -> int:
    cursor = await conn.execute(query)
    row = await cursor.fetchone()
    if row is None or row[0] is None:
        raise RuntimeError(f"query returned no value: {query}")
    return int(row[0])


class FileCache:
    """One connection to Postgres, used to read and set the cache size."""

    def __init__(
        self, connstr: str, conn: psycopg.AsyncConnection[Any], config: FileCacheConfig
    ) -> None:
        self.connstr = connstr
        self.conn = conn
        self.config = config

    @classmethod
    async def open(cls, connstr: str, config: FileCacheConfig | None = None) -> FileCache:
        """Connect and check there is a cache; connection errors propagate."""
        log.info("connecting to Postgres to manage the file cache")
        conn = await _connect(connstr)
        try:
            cursor = await conn.execute(PROBE_QUERY)
            row = await cursor.fetchone()
        except BaseException:
            await conn.close()
            raise
        if row is None or row[0] is None:
            await conn.close()
            raise FileCacheUnavailableError(
                "Postgres has no neon.max_file_cache_size setting (no neon extension)"
            )
        return cls(connstr, conn, config or FileCacheConfig())

    async def close(self) -> None:
        await self.conn.close()

    async def _read_with_retry(self, query: str) -> int:
        """Reads survive one broken connection: reconnect and ask again."""
        try:
            return await _query_bytes(self.conn, query)
        except psycopg.Error as exc:
            log.error("postgres error, reconnecting and retrying: %s", exc)
            await self.conn.close()
            self.conn = await _connect(self.connstr)
            log.info("reconnected to Postgres")
            return await _query_bytes(self.conn, query)

    async def get_file_cache_size(self) -> int:
        """The current limit, in bytes."""
        return await self._read_with_retry(SIZE_QUERY)

    async def set_file_cache_size(self, num_bytes: int) -> int:
        """Set the limit to `num_bytes` (capped by the maximum, in whole MiB); returns the size
        actually set. The ALTER SYSTEM and the reload are not retried."""
        max_bytes = await self._read_with_retry(MAX_SIZE_QUERY)
        num_mb = min(num_bytes, max_bytes) // MiB
        capped = " (capped by maximum size)" if num_bytes > max_bytes else ""
        log.info(
            "updating file cache size to %d MiB (max %d MiB)%s", num_mb, max_bytes // MiB, capped
        )
        await self.conn.execute(SET_SIZE.format(sql.Literal(num_mb)))
        await self.conn.execute(RELOAD)
        return num_mb * MiB
