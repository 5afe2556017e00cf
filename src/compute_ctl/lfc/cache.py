"""LFC prewarm and offload: the local file cache's state, kept in endpoint storage.

Offload asks Postgres for the cache's state (`neon.get_local_cache_state()`), compresses it
with zstd and PUTs it to `http://<endpoint_storage_addr>/<tenant>/<timeline>/<endpoint>/lfc_state`
with `Authorization: Bearer <endpoint_storage_token>`. Prewarm GETs that object (from this
endpoint, or from another one named by `from_endpoint`), decompresses it and hands it to
`neon.prewarm_local_cache($1)`, then reads the counts from `neon.get_prewarm_info()`.

Each has a state (`LfcPrewarmState`, `LfcOffloadState`) that the HTTP API shows. One request
runs at a time: a second one while the first is running is refused (the route answers 429).
Prewarm can be cancelled through a cancellation token: cancelling stops the download or the
decompression, or sends Postgres a cancel request for the running `prewarm_local_cache`.
Like upstream, the token is replaced only when a prewarm ends `cancelled`, so cancelling while
no prewarm runs makes the *next* one end `cancelled`.

Everything runs on compute_ctl's event loop, so reading and replacing a state is atomic. The
endpoint-storage requests use the standard library's client in worker threads: a cancelled
request is abandoned (it ends by itself, bounded by `REQUEST_TIMEOUT`). zstd and psycopg are
imported where they are used, off the start-up path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from compute_ctl.control_plane import status_line
from compute_ctl.errors import ComputeError
from compute_ctl.failpoints import PREWARM, Failpoints
from compute_ctl.lfc.cancel import CancelToken, TokenCancelledError, unless_cancelled
from compute_ctl.lfc.endpoint_storage import (
    request_object,
    state_object,
    transport_error,
)
from compute_ctl.lfc.errors import LfcError, error_with_context
from compute_ctl.lfc.zstd import compress, decompress
from compute_ctl.spec.responses import (
    LfcOffloadCompleted,
    LfcOffloadFailed,
    LfcOffloadNotOffloaded,
    LfcOffloadOffloading,
    LfcOffloadSkipped,
    LfcOffloadState,
    LfcPrewarmCancelled,
    LfcPrewarmCompleted,
    LfcPrewarmFailed,
    LfcPrewarmNotPrewarmed,
    LfcPrewarmPrewarming,
    LfcPrewarmSkipped,
    LfcPrewarmState,
)

if TYPE_CHECKING:
    from compute_ctl.metrics import PromMetrics
    from compute_ctl.spec.resolve import ParsedSpec

log = logging.getLogger(__name__)

APPLICATION_NAME = "compute_ctl:apply_config"
PREWARM_QUERY = "select neon.prewarm_local_cache(%s)"
PREWARM_INFO_QUERY = "select * from neon.get_prewarm_info()"
OFFLOAD_QUERY = "select neon.get_local_cache_state()"


async def maintenance_client(connstr: str) -> Any:
    """Upstream's "maintenance client" (`compute_ctl:apply_config`), as spec application
    uses it; a failure is `connecting to postgres: <cause>`."""
    import psycopg  # noqa: PLC0415 - off the start-up path

    from compute_ctl.catalog.connect import connect_maintenance  # noqa: PLC0415

    try:
        return await connect_maintenance(connstr, application_name=APPLICATION_NAME)
    except ComputeError as exc:
        raise LfcError(f"connecting to postgres: {exc}") from None
    except psycopg.Error as exc:
        raise error_with_context("connecting to postgres", exc) from None


def prewarm_display(state: LfcPrewarmState) -> str:
    """Upstream's display form of a prewarm state (used in promote's refusal)."""
    if isinstance(state, LfcPrewarmFailed):
        return f"Error({state.error})"
    return "".join(part.capitalize() for part in state.status.split("_"))


# --------------------------------------------------------------------------------------------
# Endpoint storage


class Lfc:
    """Prewarm and offload of one compute's LFC; `pspec` reads the compute's current spec."""

    def __init__(
        self,
        connstr: str,
        pspec: Callable[[], ParsedSpec | None],
        prom: PromMetrics,
        failpoints: Failpoints | None = None,
    ) -> None:
        self.connstr = connstr
        self.failpoints = failpoints
        self.pspec = pspec
        self.prom = prom
        # Constants, built without validation: no model is built on the start-up path.
        self.prewarm_state: LfcPrewarmState = LfcPrewarmNotPrewarmed.model_construct()
        self.offload_state: LfcOffloadState = LfcOffloadNotOffloaded.model_construct()
        self.token = CancelToken()
        self._tasks: set[asyncio.Task[None]] = set()
        self._offload_task: asyncio.Task[None] | None = None

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self) -> Any:
        return await maintenance_client(self.connstr)

    # ---- prewarm

    def prewarm(self, from_endpoint: str | None) -> bool:
        """Start a prewarm in the background; False (nothing started) if one is running."""
        if isinstance(self.prewarm_state, LfcPrewarmPrewarming):
            return False
        token = self.token
        self.prewarm_state = LfcPrewarmPrewarming()
        self.prom.lfc_prewarms.inc()
        self._spawn(self._prewarm_task(from_endpoint, token), "lfc-prewarm")
        return True

    def cancel_prewarm(self) -> None:
        self.token.cancel()

    async def _prewarm_task(self, from_endpoint: str | None, token: CancelToken) -> None:
        state: LfcPrewarmState
        try:
            state = await self._prewarm(from_endpoint, token)
        except Exception as exc:
            self.prom.lfc_prewarm_errors.inc()
            error = str(exc) if isinstance(exc, LfcError) else f"{type(exc).__name__}: {exc}"
            log.error("could not prewarm LFC: %s", error)
            state = LfcPrewarmFailed(error=error)
        if isinstance(state, LfcPrewarmCancelled):
            self.token = CancelToken()
        self.prewarm_state = state
        log.info("LFC prewarm finished: %s", state.status)

    async def _prewarm(self, from_endpoint: str | None, token: CancelToken) -> LfcPrewarmState:
        obj = state_object(self.pspec(), from_endpoint)
        if self.failpoints is not None and await self.failpoints.hit(PREWARM):
            raise LfcError("compute-prewarm failpoint")
        log.info("requesting LFC state from endpoint storage: %s", obj.url)
        try:
            try:
                download = await unless_cancelled(
                    token, asyncio.to_thread(request_object, obj, "GET")
                )
            except (OSError, ValueError) as exc:
                raise transport_error("querying endpoint storage", obj, exc) from None
            if download.status == 404:
                log.info("no LFC state in endpoint storage: skipping the prewarm")
                return LfcPrewarmSkipped()
            if download.status != 200:
                raise LfcError(f"{status_line(download.status)} querying endpoint storage")
            started = time.monotonic()
            try:
                state = await unless_cancelled(token, asyncio.to_thread(decompress, download.body))
            except ValueError as exc:
                raise LfcError(f"decoding LFC state: {exc}") from None
            uncompress_ms = download.body_ms + int((time.monotonic() - started) * 1000)
            log.info("downloaded LFC state, uncompressed size %d", len(state))

            started = time.monotonic()
            conn = await self._connect()
            async with conn:
                await self._load(conn, state, token)
                prewarm_ms = int((time.monotonic() - started) * 1000)
                info = await self._prewarm_info(conn)
        except TokenCancelledError:
            log.info("LFC prewarm cancelled")
            return LfcPrewarmCancelled()
        total, prewarmed, skipped = info
        return LfcPrewarmCompleted(
            total=total,
            prewarmed=prewarmed,
            skipped=skipped,
            state_download_time_ms=download.headers_ms,
            uncompress_time_ms=uncompress_ms,
            prewarm_time_ms=prewarm_ms,
        )

    async def _load(self, conn: Any, state: bytes, token: CancelToken) -> None:
        """`neon.prewarm_local_cache(state)`; a cancelled token cancels the query."""
        import psycopg  # noqa: PLC0415

        if token.cancelled:
            raise TokenCancelledError
        query = asyncio.ensure_future(conn.execute(PREWARM_QUERY, [state]))
        try:
            await unless_cancelled(token, asyncio.shield(query))
        except psycopg.Error as exc:
            raise error_with_context("loading LFC state into postgres", exc) from None
        except TokenCancelledError:
            try:
                cancel_safe = getattr(conn, "cancel_safe", None)  # psycopg >= 3.2
                if cancel_safe is not None:
                    await cancel_safe()
                else:
                    await asyncio.to_thread(conn.cancel)
            except psycopg.Error as exc:
                raise error_with_context("cancelling neon.prewarm_local_cache()", exc) from None
            finally:
                with contextlib.suppress(psycopg.Error):
                    await query
            raise

    @staticmethod
    async def _prewarm_info(conn: Any) -> tuple[int, int, int]:
        import psycopg  # noqa: PLC0415

        try:
            cursor = await conn.execute(PREWARM_INFO_QUERY)
            row = await cursor.fetchone()
        except psycopg.Error as exc:
            raise error_with_context("querying prewarm info", exc) from None
        if row is None:
            raise LfcError("querying prewarm info: query returned an unexpected number of rows")

        def column(i: int) -> int:  # upstream reads each as i32, 0 when it cannot
            value = row[i] if i < len(row) else None
            return value if isinstance(value, int) and -(2**31) <= value < 2**31 else 0

        return column(0), column(1), column(2)

    # ---- offload

    def offload(self) -> bool:
        """Start an offload in the background; False (nothing started) if one is running."""
        if isinstance(self.offload_state, LfcOffloadOffloading):
            return False
        self.offload_state = LfcOffloadOffloading()
        self._spawn(self._offload_with_state_update(), "lfc-offload")
        return True

    async def offload_now(self) -> None:
        """Offload and wait for the outcome (the periodic task); nothing if one is running."""
        if isinstance(self.offload_state, LfcOffloadOffloading):
            return
        self.offload_state = LfcOffloadOffloading()
        await self._offload_with_state_update()

    async def _offload_with_state_update(self) -> None:
        self.prom.lfc_offloads.inc()
        state: LfcOffloadState
        try:
            state = await self._offload()
        except Exception as exc:
            self.prom.lfc_offload_errors.inc()
            error = str(exc) if isinstance(exc, LfcError) else f"{type(exc).__name__}: {exc}"
            log.error("could not offload LFC: %s", error)
            state = LfcOffloadFailed(error=error)
        self.offload_state = state
        log.info("LFC offload finished: %s", state.status)

    async def _offload(self) -> LfcOffloadState:
        import psycopg  # noqa: PLC0415

        obj = state_object(self.pspec(), None)
        log.info("requesting LFC state from Postgres for %s", obj.url)
        started = time.monotonic()
        conn = await self._connect()
        async with conn:
            try:
                cursor = await conn.execute(OFFLOAD_QUERY)
                row = await cursor.fetchone()
            except psycopg.Error as exc:
                raise error_with_context("querying LFC state", exc) from None
        value = row[0] if row else None
        if value is None:
            log.info("empty LFC state, not exporting")
            return LfcOffloadSkipped()
        if not isinstance(value, bytes | bytearray | memoryview):
            raise LfcError(
                "deserializing LFC state: error deserializing column 0: "
                f"expected bytea, got {type(value).__name__}"
            )
        query_ms = int((time.monotonic() - started) * 1000)

        started = time.monotonic()
        compressed = await asyncio.to_thread(compress, bytes(value))
        compress_ms = int((time.monotonic() - started) * 1000)
        log.info("got LFC state, compressed size %d", len(compressed))

        started = time.monotonic()
        try:
            answer = await asyncio.to_thread(request_object, obj, "PUT", compressed)
        except (OSError, ValueError) as exc:
            raise transport_error("writing to endpoint storage", obj, exc) from None
        upload_ms = int((time.monotonic() - started) * 1000)
        if answer.status != 200:
            raise LfcError(f"request to endpoint storage failed: {status_line(answer.status)}")
        return LfcOffloadCompleted(
            state_query_time_ms=query_ms,
            compress_time_ms=compress_ms,
            state_upload_time_ms=upload_ms,
        )

    # ---- periodic offload (spec `offload_lfc_interval_seconds`)

    def start_offload_task(self, interval: float) -> None:
        """Offload every `interval` seconds (first after one interval), while the prewarm
        state is completed, not_prewarmed or skipped: never upload a half-loaded cache's state
        over the last complete one."""
        self.stop_offload_task()
        log.info("spawning LFC offload worker with %gs interval", interval)
        task = asyncio.ensure_future(self.offload_loop(interval_ticks(interval)))
        task.set_name("lfc-offload-worker")
        self._offload_task = task

    def stop_offload_task(self) -> None:
        task, self._offload_task = self._offload_task, None
        if task is not None:
            task.cancel()

    async def offload_loop(self, ticks: AsyncIterator[None]) -> None:
        """At each tick, offload unless a prewarm is running or did not end well."""
        async for _ in ticks:
            if isinstance(
                self.prewarm_state,
                LfcPrewarmCompleted | LfcPrewarmNotPrewarmed | LfcPrewarmSkipped,
            ):
                await self.offload_now()


async def interval_ticks(interval: float) -> AsyncIterator[None]:
    """A tick every `interval` seconds, the first after one interval. The rate is fixed: a
    tick missed while the consumer was busy fires at once, as upstream's timer does."""
    loop = asyncio.get_running_loop()
    tick = loop.time()
    while True:
        tick += interval
        await asyncio.sleep(max(0.0, tick - loop.time()))
        yield
