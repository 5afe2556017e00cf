"""One autoscaler-agent connection: the handshake, then requests answered one at a time.

A session owns what it manages for as long as it lasts: a connection for the file cache (when
Postgres has one) and a sampler of the cgroup's memory (when there is cgroup v2). It ends when
the agent goes away, sends something undecodable, or is displaced by a newer agent; the
server then starts afresh for the next agent.

Decisions follow upstream's numbers: 100 MiB of the agent's memory figure is set aside for the
kernel, the memory threshold is 85 % of what remains, and a downscale is refused unless the new
threshold keeps 100 MiB above the current average use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from compute_ctl.vm_monitor.cgroup import (
    CGROUP_ROOT,
    HISTORY_LEN,
    SAMPLE_INTERVAL,
    CgroupUnavailableError,
    MemorySampler,
    Sample,
    locate_memory_stat,
)
from compute_ctl.vm_monitor.filecache import FileCache, FileCacheConfig, FileCacheUnavailableError
from compute_ctl.vm_monitor.protocol import (
    AgentHealthCheck,
    AgentInternalError,
    AgentInvalidMessage,
    Allocation,
    DownscaleRequest,
    DownscaleResult,
    ErrorResponse,
    HealthCheck,
    InboundMessage,
    InternalError,
    OutboundMessage,
    ProtocolError,
    UpscaleConfirmation,
    UpscaleNotification,
    UpscaleRequest,
    VersionMismatchError,
    VersionResponse,
    decode_inbound,
    decode_range,
    encode,
    negotiate,
)
from compute_ctl.vm_monitor.units import MiB, mib_text, total_system_memory

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011

NOTHING_MANAGED = "monitor is not managing cgroup or file cache"
NOT_ENOUGH_SAMPLES = "haven't received enough cgroup memory stats yet"


@dataclass(frozen=True)
class MonitorSettings:
    """Upstream's constants; tests shorten the timings and point at stand-ins."""

    setup_timeout: float = 4.0
    sys_buffer_bytes: int = 100 * MiB
    cgroup_min_overhead_fraction: float = 0.15
    downscale_threshold_buffer_bytes: int = 100 * MiB
    upscale_request_interval: float = 1.0
    stale_stats_after: float = 5.0
    sample_interval: float = SAMPLE_INTERVAL
    history_len: int = HISTORY_LEN
    cgroup_root: Path = CGROUP_ROOT
    file_cache: FileCacheConfig = field(default_factory=FileCacheConfig)
    total_memory: Callable[[], int] = total_system_memory
    clock: Callable[[], float] = time.monotonic

    def cgroup_threshold(self, total: int) -> int:
        """Memory use above which an upscale is requested: 85 % of `total`."""
        return int(total * (1.0 - self.cgroup_min_overhead_fraction))


class Channel(Protocol):
    """The websocket as a session sees it."""

    async def receive(self) -> str | bytes | None:
        """The next text or binary frame; None once the peer has gone."""

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class SessionEndedError(Exception):
    """The session cannot go on; carries the websocket close code."""

    def __init__(self, reason: str, code: int = CLOSE_POLICY_VIOLATION) -> None:
        super().__init__(reason)
        self.code = code


class StaleStatsError(Exception):
    pass


class Notices:
    """Things worth saying once per monitor, not once per agent connection."""

    def __init__(self) -> None:
        self._said: set[str] = set()

    def once(self, text: str) -> None:
        if text not in self._said:
            self._said.add(text)
            log.info("%s", text)


def _chain(exc: BaseException) -> str:
    parts = [str(exc) or type(exc).__name__]
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        parts.append(str(cause) or type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    return ": ".join(parts)


class Session:
    def __init__(
        self,
        channel: Channel,
        settings: MonitorSettings,
        *,
        cgroup: str | None,
        filecache_connstr: str | None,
        notices: Notices,
    ) -> None:
        self.channel = channel
        self.settings = settings
        self.cgroup = cgroup
        self.filecache_connstr = filecache_connstr
        self.notices = notices
        self.displaced = asyncio.Event()
        self.finished = asyncio.Event()
        self.close_code = CLOSE_NORMAL
        self.close_reason = "replaced by a new connection"
        self.version: int | None = None
        self.file_cache: FileCache | None = None
        self.sampler: MemorySampler | None = None
        self.threshold = 0
        # Ids of messages the monitor starts are odd (the agent's are even): 3, 5, 7, …
        self.counter = 1
        self.last_upscale_request_at: float | None = None
        self._sampler_task: asyncio.Task[None] | None = None

    def displace(
        self, code: int = CLOSE_NORMAL, reason: str = "replaced by a new connection"
    ) -> None:
        """Ask the session to end (a newer agent connected, or the monitor stops)."""
        self.close_code, self.close_reason = code, reason
        self.displaced.set()

    # ----------------------------------------------------------------------------------------
    # Whole session

    async def serve(self) -> None:
        """Set up (bounded), run until the end, always clean up and close the websocket."""
        code, reason = CLOSE_NORMAL, ""
        try:
            try:
                async with asyncio.timeout(self.settings.setup_timeout):
                    set_up = await self._unless_displaced(self.setup())
                if not set_up:
                    log.info("monitor displaced during set-up: %s", self.close_reason)
                    code, reason = self.close_code, self.close_reason
                    return
            except TimeoutError:
                log.error("creating monitor timed out after %ss", self.settings.setup_timeout)
                code, reason = CLOSE_INTERNAL_ERROR, "monitor setup timed out"
                return
            except SessionEndedError as exc:
                log.error("failed to create monitor: %s", exc)
                code, reason = exc.code, str(exc)
                return
            except Exception as exc:
                log.error("failed to create monitor: %s", _chain(exc))
                code, reason = CLOSE_INTERNAL_ERROR, "monitor setup failed"
                return
            log.info("connected to agent")
            try:
                await self.run()
            except SessionEndedError as exc:
                log.error("monitor terminated unexpectedly: %s", exc)
                code, reason = exc.code, str(exc)
                return
            log.info("monitor session ended: %s", self.close_reason)
            code, reason = self.close_code, self.close_reason
        finally:
            await self._cleanup(code, reason)

    async def _unless_displaced(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run `work` unless the session is displaced first (then it is cancelled: a new
        agent should not wait for this one's set-up). True if it completed."""
        task = asyncio.ensure_future(work)
        displaced = asyncio.ensure_future(self.displaced.wait())
        try:
            await asyncio.wait({task, displaced}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            displaced.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        if task.cancelled():
            return False
        task.result()
        return True

    async def _cleanup(self, code: int, reason: str) -> None:
        if self._sampler_task is not None:
            self._sampler_task.cancel()
            await asyncio.wait({self._sampler_task})
        if self.file_cache is not None:
            with contextlib.suppress(Exception):
                await self.file_cache.close()
        with contextlib.suppress(Exception):
            await self.channel.close(code, reason)
        self.finished.set()

    # ----------------------------------------------------------------------------------------
    # Set-up: handshake, file cache, cgroup

    async def setup(self) -> None:
        await self.handshake()
        memory = self.settings.total_memory()
        if self.filecache_connstr is not None:
            await self._setup_file_cache(self.filecache_connstr, memory)
        if self.cgroup is not None:
            self._setup_cgroup(self.cgroup, memory)

    async def handshake(self) -> None:
        log.info("waiting for agent to send protocol version range")
        frame = await self.channel.receive()
        if frame is None:
            raise SessionEndedError(
                "websocket connection closed while performing protocol handshake"
            )
        if not isinstance(frame, str):
            raise SessionEndedError("received non-text message during protocol handshake")
        try:
            agent_range = decode_range(frame)
        except ProtocolError as exc:
            raise SessionEndedError(str(exc)) from None
        log.info("received protocol version range %s", agent_range)
        try:
            self.version = negotiate(agent_range)
        except VersionMismatchError as exc:
            await self._send_raw(ErrorResponse(error=str(exc)))
            raise SessionEndedError(f"error determining suitable protocol version: {exc}") from None
        await self._send_raw(VersionResponse(version=self.version))

    async def _setup_file_cache(self, connstr: str, memory: int) -> None:
        try:
            file_cache = await FileCache.open(connstr, self.settings.file_cache)
        except FileCacheUnavailableError as exc:
            self.notices.once(f"the file cache is not managed: {exc}")
            return
        self.file_cache = file_cache
        size = await file_cache.get_file_cache_size()
        new_size = file_cache.config.calculate_cache_size(memory)
        log.info(
            "setting initial file cache size: %s MiB -> %s MiB", mib_text(size), mib_text(new_size)
        )
        # Set it even when unchanged: this proves we are allowed to.
        try:
            actual = await file_cache.set_file_cache_size(new_size)
        except Exception as exc:
            raise RuntimeError(
                "failed to set file cache size, possibly due to inadequate permissions"
            ) from exc
        if actual != new_size:
            log.info("file cache size actually got set to %s MiB", mib_text(actual))

    def _setup_cgroup(self, name: str, memory: int) -> None:
        try:
            path = locate_memory_stat(self.settings.cgroup_root, name)
        except CgroupUnavailableError as exc:
            self.notices.once(
                f"memory pressure is not monitored (no upscale will be requested): {exc}"
            )
            return
        self.sampler = MemorySampler(
            path,
            interval=self.settings.sample_interval,
            history_len=self.settings.history_len,
            clock=self.settings.clock,
        )
        self._sampler_task = asyncio.create_task(self.sampler.run(), name="vm-monitor-cgroup")
        self._sampler_task.add_done_callback(_report_sampler_end)
        self.threshold = self.settings.cgroup_threshold(memory)
        log.info("set initial cgroup memory threshold to %s MiB", mib_text(self.threshold))

    # ----------------------------------------------------------------------------------------
    # Running: agent messages, memory samples, displacement

    async def run(self) -> None:
        receiving = asyncio.ensure_future(self.channel.receive())
        displaced = asyncio.ensure_future(self.displaced.wait())
        sampling: asyncio.Future[Sample] | None = None
        if self.sampler is not None:
            sampling = asyncio.ensure_future(self.sampler.changed())
        try:
            while True:
                waiting = {receiving, displaced} | ({sampling} if sampling else set())
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if displaced in done:
                    return
                if sampling is not None and sampling in done:
                    await self.on_sample(sampling.result())
                    assert self.sampler is not None
                    sampling = asyncio.ensure_future(self.sampler.changed())
                if receiving in done:
                    await self.on_frame(receiving.result())
                    receiving = asyncio.ensure_future(self.channel.receive())
        finally:
            for future in (receiving, displaced, sampling):
                if future is not None:
                    future.cancel()

    async def on_frame(self, frame: str | bytes | None) -> None:
        if frame is None:
            raise SessionEndedError("dispatcher connection closed", CLOSE_NORMAL)
        if not isinstance(frame, str):
            log.warning("agent should only send text messages but sent a binary one: ignored")
            return
        try:
            message = decode_inbound(frame)
        except ProtocolError as exc:
            raise SessionEndedError(str(exc)) from None
        if isinstance(message, AgentHealthCheck):
            log.debug("received message %s", frame)
        else:
            log.info("received message %s", frame)
        reply = await self.process(message)
        if reply is not None:
            await self.send(reply)

    async def process(self, message: InboundMessage) -> OutboundMessage | None:
        """The reply to one agent message (None for the ones that are only logged)."""
        match message:
            case UpscaleNotification(content=content, id=mid):
                try:
                    await self.handle_upscale(content.granted)
                except Exception as exc:
                    log.warning("error handling message: failed to handle upscale: %s", _chain(exc))
                    return InternalError(error="failed to handle upscale", id=mid)
                return UpscaleConfirmation(id=mid)
            case DownscaleRequest(content=content, id=mid):
                try:
                    ok, status = await self.try_downscale(content.target)
                except Exception as exc:
                    log.warning("error handling message: failed to downscale: %s", _chain(exc))
                    return InternalError(error="failed to downscale", id=mid)
                return DownscaleResult(ok=ok, status=status, id=mid)
            case AgentInvalidMessage(content=content, id=mid):
                log.warning(
                    "received notification of an invalid message we sent (id %d): %s",
                    mid,
                    content.error,
                )
                return None
            case AgentInternalError(content=content, id=mid):
                log.warning("agent experienced an internal error (id %d): %s", mid, content.error)
                return None
            case AgentHealthCheck(id=mid):
                return HealthCheck(id=mid)

    async def on_sample(self, sample: Sample) -> None:
        """Ask for more memory when the recent average crosses the threshold (at most once
        per `upscale_request_interval`, so the agent is not flooded)."""
        history = sample.history
        if history.avg_non_reclaimable < self.threshold:
            return
        now = self.settings.clock()
        last = self.last_upscale_request_at
        if last is not None and now - last < self.settings.upscale_request_interval:
            return
        self.last_upscale_request_at = now
        log.info(
            "cgroup memory stats are high enough to upscale, requesting upscale: "
            "average %s MiB >= threshold %s MiB",
            mib_text(history.avg_non_reclaimable),
            mib_text(self.threshold),
        )
        self.counter += 2
        await self.send(UpscaleRequest(id=self.counter))

    # ----------------------------------------------------------------------------------------
    # Decisions

    async def try_downscale(self, target: Allocation) -> tuple[bool, str]:
        if self.sampler is None and self.file_cache is None:
            log.info("no action needed for downscale (no cgroup or file cache enabled)")
            return True, NOTHING_MANAGED
        settings = self.settings
        usable = max(target.mem - settings.sys_buffer_bytes, 0)
        new_threshold = settings.cgroup_threshold(usable)
        if self.sampler is not None:
            latest = self.sampler.latest
            # Order matters: early on, refuse until there are enough samples; but if none came
            # for a while, that is a failure rather than a refusal.
            if settings.clock() - latest.at > settings.stale_stats_after:
                raise StaleStatsError(
                    "haven't gotten cgroup memory stats recently enough to determine "
                    "downscaling information"
                )
            if latest.history.samples_count <= 1:
                log.info("discontinuing downscale: %s", NOT_ENOUGH_SAMPLES)
                return False, NOT_ENOUGH_SAMPLES
            current = latest.history.avg_non_reclaimable
            buffer = settings.downscale_threshold_buffer_bytes
            if new_threshold < current + buffer:
                status = (
                    f"calculated memory threshold too low: {mib_text(new_threshold)} MiB "
                    f"(new threshold) < {mib_text(current)} (current usage) + "
                    f"{mib_text(buffer)} (downscale buffer)"
                )
                log.info("discontinuing downscale: %s", status)
                return False, status

        statuses = []
        if self.file_cache is not None:
            expected = self.file_cache.config.calculate_cache_size(usable)
            actual = await self.file_cache.set_file_cache_size(expected)
            statuses.append(f"set file cache size to {mib_text(actual)} MiB")
        if self.sampler is not None:
            statuses.append(
                f"set cgroup memory threshold from {mib_text(self.threshold)} MiB to "
                f"{mib_text(new_threshold)} MiB, of new total {mib_text(usable)} MiB"
            )
            self.threshold = new_threshold
        status = "; ".join(statuses)
        log.info("downscale: %s", status)
        return True, status

    async def handle_upscale(self, granted: Allocation) -> None:
        if self.sampler is None and self.file_cache is None:
            log.info("no action needed for upscale (no cgroup or file cache enabled)")
            return
        usable = max(granted.mem - self.settings.sys_buffer_bytes, 0)
        if self.file_cache is not None:
            expected = self.file_cache.config.calculate_cache_size(usable)
            log.info(
                "updating file cache size to %s MiB of new total %s MiB",
                mib_text(expected),
                mib_text(granted.mem),
            )
            actual = await self.file_cache.set_file_cache_size(expected)
            if actual != expected:
                log.warning(
                    "file cache was set to a different size than wanted: %s MiB instead of %s MiB",
                    mib_text(actual),
                    mib_text(expected),
                )
        if self.sampler is not None:
            new_threshold = self.settings.cgroup_threshold(usable)
            log.info(
                "set cgroup memory threshold from %s MiB to %s MiB of new total %s MiB",
                mib_text(self.threshold),
                mib_text(new_threshold),
                mib_text(usable),
            )
            self.threshold = new_threshold

    # ----------------------------------------------------------------------------------------
    # Sending

    async def send(self, message: OutboundMessage) -> None:
        if isinstance(message, HealthCheck):
            log.debug("sending message %s", encode(message))
        else:
            log.info("sending message %s", encode(message))
        await self._send_raw(message)

    async def _send_raw(self, message: BaseModel) -> None:
        try:
            await self.channel.send(encode(message))
        except Exception as exc:
            raise SessionEndedError(f"failed to send message: {_chain(exc)}", CLOSE_NORMAL) from exc


def _report_sampler_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("cgroup watcher terminated: %s", _chain(task.exception() or Exception()))
