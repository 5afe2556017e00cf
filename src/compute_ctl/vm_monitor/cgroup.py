"""Memory pressure of Postgres' cgroup, as the vm-monitor watches it (cgroup v2 only).

Every 100 ms the non-reclaimable memory of the cgroup (`active_anon + inactive_anon` from its
`memory.stat`) is sampled; decisions use the average of the last 5 samples, so one spike does
not trigger an upscale request but half a second of pressure does. Nothing is ever written to
the cgroup: the threshold the samples are compared with lives in the session.

The hierarchy root (`/sys/fs/cgroup`) is a parameter so tests can lay out a directory like it.
Where there is no unified (v2) hierarchy, `locate_memory_stat` says why and the monitor runs
without memory monitoring instead of failing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from compute_ctl.vm_monitor.units import MiB

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
SAMPLE_INTERVAL = 0.1
HISTORY_LEN = 5
LOG_EVERY_SAMPLES = 20
LOG_UNCHANGED_AFTER = 15.0


class CgroupUnavailableError(Exception):
    """No cgroup v2 memory statistics for the named cgroup; `str()` says why."""


def locate_memory_stat(root: Path, name: str) -> Path:
    """The `memory.stat` file of cgroup `name` under the v2 hierarchy at `root`."""
    if not (root / "cgroup.controllers").is_file():
        raise CgroupUnavailableError(
            f"cgroup v2 is not available: {root} is not a unified cgroup hierarchy"
        )
    path = root / name.strip("/") / "memory.stat"
    if not path.is_file():
        raise CgroupUnavailableError(
            f"cgroup {name!r} has no memory statistics ({path} does not exist)"
        )
    return path


def read_non_reclaimable(path: Path) -> int:
    """Anonymous memory (active + inactive) of the cgroup: what cannot be dropped like the
    page cache, so what actually needs RAM."""
    values: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key in ("active_anon", "inactive_anon"):
            values[key] = int(value)
    return values.get("active_anon", 0) + values.get("inactive_anon", 0)


@dataclass(frozen=True)
class MemoryHistory:
    """Summary of the recent samples."""

    avg_non_reclaimable: int
    samples_count: int
    samples_span: float


@dataclass(frozen=True)
class Sample:
    """The latest summary and when it was taken (on the sampler's clock)."""

    at: float
    history: MemoryHistory


def _similar(a: int, b: int) -> bool:
    """Close enough not to be worth logging again: within 1/8 of the smaller and 128 MiB."""
    small, large = min(a, b), max(a, b)
    return large - small < small // 8 and large - small < 128 * MiB


class MemorySampler:
    """Samples one `memory.stat` periodically and publishes the running summary.

    Consumers read `latest` or wait for the next summary with `changed()`; summaries published
    while nobody waits are coalesced, only the newest matters.
    """

    def __init__(
        self,
        stat_path: Path,
        *,
        interval: float = SAMPLE_INTERVAL,
        history_len: int = HISTORY_LEN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stat_path = stat_path
        self.interval = interval
        self.history_len = history_len
        self.clock = clock
        self.latest = Sample(clock(), MemoryHistory(0, 0, 0.0))
        self.samples_taken = 0
        self._tick = asyncio.Event()
        self._log_buffer: deque[int] = deque(maxlen=max(LOG_EVERY_SAMPLES, history_len))
        self._last_logged: int | None = None
        self._quiet_until = float("-inf")
        self._failing = False

    async def changed(self) -> Sample:
        """The next summary published after this call."""
        await self._tick.wait()
        return self.latest

    def sample_once(self) -> Sample | None:
        """Take and publish one sample; None (and one log line) while the file is unreadable."""
        try:
            value = read_non_reclaimable(self.stat_path)
        except (OSError, ValueError) as exc:
            if not self._failing:
                log.warning("cannot read %s: %s; memory samples paused", self.stat_path, exc)
                self._failing = True
            return None
        if self._failing:
            log.info("reading %s again; memory samples resumed", self.stat_path)
            self._failing = False
        self._log_buffer.append(value)
        self.samples_taken += 1
        count = min(self.samples_taken, self.history_len)
        recent = list(self._log_buffer)[-count:]
        history = MemoryHistory(
            avg_non_reclaimable=sum(recent) // count,
            samples_count=count,
            samples_span=self.interval * (count - 1),
        )
        now = self.clock()
        self._maybe_log(history, now)
        self.latest = Sample(now, history)
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()
        return self.latest

    def _maybe_log(self, history: MemoryHistory, now: float) -> None:
        """Every 20 samples, the last 20 values, unless nothing moved for less than 15 s."""
        if self.samples_taken % LOG_EVERY_SAMPLES:
            return
        values = list(self._log_buffer)[-LOG_EVERY_SAMPLES:]
        last = self._last_logged
        if now <= self._quiet_until and last is not None and all(_similar(last, v) for v in values):
            return
        log.info(
            "recent cgroup memory statistics: non_reclaimable=[%s] average=%.3fGi over %d samples",
            ", ".join(f"{v / (1 << 30):.3f}Gi" for v in values),
            history.avg_non_reclaimable / (1 << 30),
            history.samples_count,
        )
        self._quiet_until = now + LOG_UNCHANGED_AFTER
        self._last_logged = values[-1]

    async def run(self) -> None:
        """Sample forever on a fixed cadence (first sample at once; missed ticks skipped)."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            delay = next_tick - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.sample_once()
            next_tick += self.interval
            while next_tick <= loop.time():
                next_tick += self.interval
