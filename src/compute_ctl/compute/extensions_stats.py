"""Installed-extensions statistics: which extensions, in which versions, in how many databases.

A scan connects to every database that accepts connections and is not invalid (at most 500),
reads `pg_extension`, and groups the rows by (name, version, owned by the bootstrap superuser).
The result sets the `compute_installed_extensions` gauge (one sample per group, value = number
of databases) and is logged as `[NEON_EXT_STAT] <json>`, the line upstream's log pipeline reads.
One scan runs right after a primary starts; a periodic task repeats it, first after twice the
collection interval, then every max(previous sleep, 2 × current interval) seconds. The interval
starts at `--installed-extensions-collection-interval` and follows `suspend_timeout_seconds`
whenever the SQL apply runs. A failed scan is logged and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from compute_ctl.metrics import PromMetrics
from compute_ctl.postgres.connect import connect, pg_error_text

log = logging.getLogger(__name__)

APPLICATION_NAME = "compute_ctl:get_installed_extensions"
DEFAULT_COLLECTION_INTERVAL = 3600
MAX_DATABASES = 500
BOOTSTRAP_SUPERUSER_OID = 10
MIN_SLEEP = 1

LIST_DATABASES = (
    "SELECT datname FROM pg_catalog.pg_database"
    " WHERE datallowconn AND datconnlimit OPERATOR(pg_catalog.<>) -2"
    " LIMIT 500"  # MAX_DATABASES
)
LIST_EXTENSIONS = (
    "SELECT extname, extversion, extowner::pg_catalog.int8 FROM pg_catalog.pg_extension"
)


@dataclass(frozen=True)
class InstalledExtension:
    extname: str
    version: str
    n_databases: int
    owned_by_superuser: str  # "1" or "0", as the metric label

    def to_json(self) -> dict[str, object]:
        return {
            "extname": self.extname,
            "version": self.version,
            "n_databases": self.n_databases,
            "owned_by_superuser": self.owned_by_superuser,
        }


def aggregate(per_database: Iterable[Iterable[tuple[str, str, int]]]) -> list[InstalledExtension]:
    """Group `(extname, extversion, extowner)` rows of every database; the count is the number
    of databases holding that (name, version, superuser-owned) combination. Sorted by key."""
    counts: dict[tuple[str, str, str], int] = {}
    for rows in per_database:
        for extname, version, owner in rows:
            key = (extname, version, "1" if owner == BOOTSTRAP_SUPERUSER_OID else "0")
            counts[key] = counts.get(key, 0) + 1
    return [
        InstalledExtension(extname=name, version=version, n_databases=n, owned_by_superuser=su)
        for (name, version, su), n in sorted(counts.items())
    ]


def stat_line(extensions: Iterable[InstalledExtension]) -> str:
    """The log line, with the JSON upstream serializes (compact, fields in its order)."""
    document = {"extensions": [ext.to_json() for ext in extensions]}
    return "[NEON_EXT_STAT] " + json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def interval_from_suspend_timeout(suspend_timeout_seconds: int) -> int:
    """The collection interval a spec implies: its suspend timeout, or the default when the
    compute never suspends (-1) or uses the default timeout (0). Other negative values (which
    upstream would wrap to a huge unsigned number) also give the default."""
    if suspend_timeout_seconds <= 0:
        return DEFAULT_COLLECTION_INTERVAL
    return suspend_timeout_seconds


def next_sleep(previous: int, interval: int) -> int:
    """The periodic task's next sleep: never shorter than the previous one (nor than 1 s, so
    an interval of 0 does not make a busy loop)."""
    return max(previous, 2 * interval, MIN_SLEEP)


async def get_installed_extensions(connstr: str) -> list[InstalledExtension]:
    """One scan; raises on the first connection or query error, as upstream does."""
    conn = await connect(connstr, APPLICATION_NAME)
    async with conn:
        cur = await conn.execute(LIST_DATABASES)
        databases = [str(row[0]) for row in await cur.fetchall()]
    per_database: list[list[tuple[str, str, int]]] = []
    for dbname in databases:
        conn = await connect(connstr, APPLICATION_NAME, dbname)
        async with conn:
            cur = await conn.execute(LIST_EXTENSIONS)
            rows = await cur.fetchall()
        per_database.append([(str(r[0]), str(r[1]), int(r[2])) for r in rows])
    return aggregate(per_database)


class ExtensionStats:
    """The scans of one compute: the post-start one and the periodic task."""

    def __init__(self, connstr: str, prom: PromMetrics, interval: int) -> None:
        self.connstr = connstr
        self.prom = prom
        self.interval = interval
        self._tasks: set[asyncio.Task[None]] = set()
        self._periodic: asyncio.Task[None] | None = None

    def update_interval(self, suspend_timeout_seconds: int) -> None:
        """The SQL apply ran with a spec: the interval follows its suspend timeout."""
        self.interval = interval_from_suspend_timeout(suspend_timeout_seconds)

    def publish(self, extensions: list[InstalledExtension]) -> None:
        gauge = self.prom.installed_extensions
        gauge.clear()
        for ext in extensions:
            gauge.labels(
                extension_name=ext.extname,
                version=ext.version,
                owned_by_superuser=ext.owned_by_superuser,
            ).set(ext.n_databases)
        log.info("%s", stat_line(extensions))

    async def scan(self) -> None:
        """One scan; errors are logged, never raised."""
        try:
            extensions = await get_installed_extensions(self.connstr)
        except Exception as exc:
            log.error("could not get installed extensions: %s", pg_error_text(exc))
            return
        self.publish(extensions)

    def scan_in_background(self) -> None:
        task = asyncio.ensure_future(self.scan())
        task.set_name("installed-extensions-scan")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start_periodic(self) -> None:
        """(Re)start the periodic task; the first scan comes after 2 × the current interval."""
        if self._periodic is not None:
            self._periodic.cancel()
        self._periodic = asyncio.ensure_future(self._run_periodic())
        self._periodic.set_name("installed-extensions")

    async def _run_periodic(self) -> None:
        sleep = max(2 * self.interval, MIN_SLEEP)
        log.info(
            "[NEON_EXT_SPAWN] Spawning background installed extensions worker with Timeout: %d",
            sleep,
        )
        while True:
            log.info("[NEON_EXT_INT_SLEEP]: Interval: %d", sleep)
            await asyncio.sleep(sleep)
            await self.scan()
            sleep = next_sleep(sleep, self.interval)

    async def stop(self) -> None:
        """Postgres has exited: cancel the periodic task and any scan under way."""
        tasks = list(self._tasks)
        if self._periodic is not None:
            tasks.append(self._periodic)
            self._periodic = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
