"""The compute's status and the one place it changes.

The status is an explicit state machine: `TRANSITIONS` lists every allowed move, and `set_status`
refuses any other (an illegal transition is a bug, never silently overwritten). The shared state
lives in one `ComputeState` guarded by an `asyncio.Condition`; every change notifies all waiters,
so HTTP handlers can wait for `running` or `terminated` without blocking the event loop or other
requests.

Whoever asks for a change does it through one of `ComputeState`'s named operations
(`request_configure`, `request_termination`, `take_configurator_work`, …): each bundles the
guard, the transition and the wake-up, and no other module touches the condition.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Literal

from compute_ctl.errors import ComputeError
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


class RefreshRefusedError(ComputeError):
    """`/refresh_configuration` in a status that cannot refresh (HTTP 500, as upstream)."""

    def __init__(self, status: ComputeStatus) -> None:
        super().__init__(f"Cannot refresh compute configuration in state {status.variant}")


ConfiguratorWork = Literal["configure", "refresh", "stop", "none"]
"""What the configurator found after a wake-up: a spec to apply, a refresh to run, the end of
its work (failed or terminating), or nothing for it."""


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
    refresh_requests: int = 0
    """`/refresh_configuration` calls accepted so far."""
    refresh_taken: int = 0
    """How many of them the configurator has taken up."""

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

    # ----------------------------------------------------------------------------------------
    # Named operations: each one guard, transition and wake-up, under the condition.

    async def request_configure(self, pspec: ParsedSpec) -> ComputeStatus:
        """`/configure`: store `pspec` and ask for it to be applied (from `empty` or
        `running`, else WrongStateError); wait until the compute is `running` or `failed` and
        return which."""
        async with self.condition:
            if self.status not in (ComputeStatus.EMPTY, ComputeStatus.RUNNING):
                raise WrongStateError(self.status)
            self.pspec = pspec
            self.set_locked(ComputeStatus.CONFIGURATION_PENDING)
            await self.condition.wait_for(
                lambda: self.status in (ComputeStatus.RUNNING, ComputeStatus.FAILED)
            )
            return self.status

    async def request_termination(self, pending: ComputeStatus) -> bool:
        """`/terminate`: move to the `pending` termination status from `empty` or `running`
        (else WrongStateError). False when the compute is already terminated."""
        async with self.condition:
            if self.status is ComputeStatus.TERMINATED:
                return False
            if self.status not in (ComputeStatus.EMPTY, ComputeStatus.RUNNING):
                raise WrongStateError(self.status)
            self.set_locked(pending)
            return True

    async def complete_termination(self) -> ComputeStatus | None:
        """After Postgres exited: a pending termination becomes `terminated`. Returns the
        pending status it completed, or None when none was pending."""
        async with self.condition:
            pending = self.status
            if not pending.is_termination_pending:
                return None
            self.set_locked(ComputeStatus.TERMINATED)
            return pending

    async def request_refresh(self) -> None:
        """`/refresh_configuration`: a no-op while starting; from `running`, `failed` or
        already pending, one more refresh is asked for; RefreshRefusedError otherwise."""
        async with self.condition:
            status = self.status
            if status is ComputeStatus.INIT:
                return
            if status not in (
                ComputeStatus.RUNNING,
                ComputeStatus.FAILED,
                ComputeStatus.REFRESH_CONFIGURATION_PENDING,
            ):
                raise RefreshRefusedError(status)
            self.refresh_requests += 1
            self.set_locked(ComputeStatus.REFRESH_CONFIGURATION_PENDING)

    def _configurator_has_work(self) -> bool:
        return self.status is ComputeStatus.CONFIGURATION_PENDING or (
            self.status is ComputeStatus.REFRESH_CONFIGURATION_PENDING
            and self.refresh_requests > self.refresh_taken
        )

    async def take_configurator_work(self) -> ConfiguratorWork:
        """The configurator's wait: unless work is already waiting, wait for the next status
        change, then take up a pending configuration (→ `configuration`) or refresh
        (→ `refresh_configuration`)."""
        async with self.condition:
            if not self._configurator_has_work():
                await self.condition.wait()
            status = self.status
            if status is ComputeStatus.CONFIGURATION_PENDING:
                self.set_locked(ComputeStatus.CONFIGURATION)
                return "configure"
            if status is ComputeStatus.REFRESH_CONFIGURATION_PENDING:
                self.refresh_taken = self.refresh_requests
                self.set_locked(ComputeStatus.REFRESH_CONFIGURATION)
                return "refresh"
            if status is ComputeStatus.FAILED or status.is_termination_pending:
                return "stop"
            return "none"

    async def request_reconfigure(self, wait_in: frozenset[ComputeStatus]) -> bool:
        """Ask for a re-configure of the current spec (a renewed TLS certificate): wait while
        the status is one of `wait_in`, then from `running` move to `configuration_pending`.
        True once one is asked for or already pending; False when the compute is in neither
        (failed or terminating)."""
        async with self.condition:
            while True:
                status = self.status
                if status is ComputeStatus.RUNNING:
                    self.set_locked(ComputeStatus.CONFIGURATION_PENDING)
                    return True
                if status is ComputeStatus.CONFIGURATION_PENDING:
                    return True  # a re-configure is coming anyway
                if status not in wait_in:
                    return False
                await self.condition.wait()

    async def wait_for_change(self, changed: Callable[[], bool], seconds: float) -> None:
        """Sleep up to `seconds`, waking early once `changed()` holds after a change."""
        async with self.condition:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.condition.wait_for(changed), seconds)

    async def wait_for_spec(self) -> ParsedSpec | None:
        """Empty: wait for /configure (→ the spec) or /terminate (→ None). The wait is
        `wait_for_spec_ms`, and the start-up's clock starts when the spec arrives."""
        started = self.start_time
        status = await self.wait_for(
            ComputeStatus.CONFIGURATION_PENDING,
            ComputeStatus.TERMINATION_PENDING_FAST,
            ComputeStatus.TERMINATION_PENDING_IMMEDIATE,
        )
        if status.is_termination_pending:
            return None
        now = utcnow()
        self.metrics.wait_for_spec_ms = int((now - started).total_seconds() * 1000)
        self.start_time = now
        return self.pspec
