"""The compute's status and the one place it changes.

The status is an explicit state machine: `TRANSITIONS` lists every allowed move, and `set_status`
refuses any other (an illegal transition is a bug, never silently overwritten). The shared state
lives in one `ComputeState` guarded by an `asyncio.Condition`; every change notifies all waiters,
so HTTP handlers can wait for `running` or `terminated` without blocking the event loop or other
requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from compute_ctl.spec.resolve import ParsedSpec
from compute_ctl.spec.types import Lsn


class ComputeStatus(Enum):
    """States of a compute. `.value` is the JSON form; `str()` the display (kebab) form used in
    logs, metric labels and 412 error texts; `.variant` the name upstream prints in a few texts."""

    EMPTY = "empty"
    CONFIGURATION_PENDING = "configuration_pending"
    INIT = "init"
    RUNNING = "running"
    CONFIGURATION = "configuration"
    FAILED = "failed"
    TERMINATION_PENDING_FAST = "termination_pending_fast"
    TERMINATION_PENDING_IMMEDIATE = "termination_pending_immediate"
    TERMINATED = "terminated"
    REFRESH_CONFIGURATION_PENDING = "refresh_configuration_pending"
    REFRESH_CONFIGURATION = "refresh_configuration"

    def __str__(self) -> str:
        return self.value.replace("_", "-")

    @property
    def variant(self) -> str:
        return "".join(part.capitalize() for part in self.value.split("_"))

    @property
    def is_termination_pending(self) -> bool:
        return self in (
            ComputeStatus.TERMINATION_PENDING_FAST,
            ComputeStatus.TERMINATION_PENDING_IMMEDIATE,
        )


S = ComputeStatus

TRANSITIONS: dict[ComputeStatus, frozenset[ComputeStatus]] = {
    S.EMPTY: frozenset(
        {
            S.INIT,
            S.CONFIGURATION_PENDING,
            S.TERMINATION_PENDING_FAST,
            S.TERMINATION_PENDING_IMMEDIATE,
        }
    ),
    # From Empty (first start) it goes to Init; from Running (re-configure) to Configuration.
    S.CONFIGURATION_PENDING: frozenset({S.INIT, S.CONFIGURATION}),
    S.INIT: frozenset({S.RUNNING, S.FAILED}),
    S.RUNNING: frozenset(
        {
            S.CONFIGURATION_PENDING,
            S.TERMINATION_PENDING_FAST,
            S.TERMINATION_PENDING_IMMEDIATE,
            S.REFRESH_CONFIGURATION_PENDING,
        }
    ),
    S.CONFIGURATION: frozenset({S.RUNNING, S.FAILED}),
    S.FAILED: frozenset({S.REFRESH_CONFIGURATION_PENDING}),
    S.TERMINATION_PENDING_FAST: frozenset({S.TERMINATED}),
    S.TERMINATION_PENDING_IMMEDIATE: frozenset({S.TERMINATED}),
    S.TERMINATED: frozenset(),
    S.REFRESH_CONFIGURATION_PENDING: frozenset(
        {S.REFRESH_CONFIGURATION, S.REFRESH_CONFIGURATION_PENDING}
    ),
    S.REFRESH_CONFIGURATION: frozenset({S.RUNNING, S.REFRESH_CONFIGURATION_PENDING}),
}


class IllegalTransitionError(RuntimeError):
    """A status change the state machine does not allow: a bug in the caller."""

    def __init__(self, current: ComputeStatus, new: ComputeStatus) -> None:
        super().__init__(f"illegal compute status transition: {current} -> {new}")
        self.current = current
        self.new = new


class WrongStateError(Exception):
    """A request that is not allowed in the current status (HTTP 412)."""

    def __init__(self, status: ComputeStatus) -> None:
        super().__init__(f"invalid compute status: {status}")
        self.status = status


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ComputeMetrics:
    """Start-up timings and sizes (`GET /metrics.json`); every field present, initially 0."""

    wait_for_spec_ms: int = 0
    sync_sk_check_ms: int = 0
    sync_safekeepers_ms: int = 0
    pageserver_connect_micros: int = 0
    basebackup_ms: int = 0
    basebackup_bytes: int = 0
    start_postgres_ms: int = 0
    config_ms: int = 0
    total_startup_ms: int = 0
    load_ext_ms: int = 0
    num_ext_downloaded: int = 0
    largest_ext_size: int = 0
    total_ext_download_size: int = 0


StatusListener = Callable[[ComputeStatus], None]


@dataclass
class ComputeState:
    """Everything shared between the lifecycle, the HTTP handlers and the background tasks."""

    status: ComputeStatus = ComputeStatus.EMPTY
    error: str | None = None
    pspec: ParsedSpec | None = None
    start_time: datetime = field(default_factory=utcnow)
    pg_start_time: datetime | None = None
    last_active: datetime | None = None
    terminate_flush_lsn: Lsn | None = None
    metrics: ComputeMetrics = field(default_factory=ComputeMetrics)
    condition: asyncio.Condition = field(default_factory=asyncio.Condition, repr=False)
    listeners: list[StatusListener] = field(default_factory=list, repr=False)

    async def set_status(self, new: ComputeStatus, *, error: str | None = None) -> None:
        """Move to `new` (it must be an allowed transition) and wake every waiter."""
        async with self.condition:
            self.set_locked(new, error=error)

    def set_locked(self, new: ComputeStatus, *, error: str | None = None) -> None:
        """`set_status` for a caller that already holds `condition`."""
        if new not in TRANSITIONS[self.status]:
            raise IllegalTransitionError(self.status, new)
        self.status = new
        if error is not None:
            self.error = error
        for listener in self.listeners:
            listener(new)
        self.condition.notify_all()

    async def transition_if(
        self, allowed: Iterable[ComputeStatus], new: ComputeStatus
    ) -> ComputeStatus:
        """Atomically: if the status is one of `allowed`, move to `new`; else WrongStateError.
        Returns the status it moved from."""
        async with self.condition:
            current = self.status
            if current not in set(allowed):
                raise WrongStateError(current)
            self.set_locked(new)
            return current

    async def wait_for(self, *targets: ComputeStatus) -> ComputeStatus:
        """Wait until the status is one of `targets` (checked now and after each change)."""
        wanted = set(targets)
        async with self.condition:
            await self.condition.wait_for(lambda: self.status in wanted)
            return self.status
