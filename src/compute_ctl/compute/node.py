"""The lifecycle of one compute: from a spec to a running, reconciled Postgres, and back down.

`ComputeNode` coordinates; the work is done by its collaborators: `Startup` (init → running),
`SpecApplier` (catalog and re-configure), the `Configurator` (specs and refreshes after the
start), `Promotion`, the activity monitor and `shutdown` (after the postmaster exits). It is
also what the HTTP layer talks to (`http/compute_api.py` names what it may ask). Everything
runs on one event loop; blocking work goes to threads or subprocesses; the status only changes
through `ComputeState`'s operations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Protocol, TextIO

from compute_ctl import allocator, tracing
from compute_ctl.compute import shutdown, vm_tools
from compute_ctl.compute.configurator import Configurator
from compute_ctl.compute.extensions_stats import ExtensionStats
from compute_ctl.compute.lakebase import init_watchdog
from compute_ctl.compute.monitors import Monitors
from compute_ctl.compute.promote import Promotion
from compute_ctl.compute.spec_apply import SpecApplier
from compute_ctl.compute.startup import (
    Startup,
    discard_preloaded,
    preload_while_empty,
    prewarm_vm_memory,
)
from compute_ctl.compute.status_watchers import watch_status
from compute_ctl.compute.tasks import BackgroundTasks
from compute_ctl.errors import chain_text
from compute_ctl.lfc import Lfc
from compute_ctl.logsetup import set_ids
from compute_ctl.metrics import PromMetrics
from compute_ctl.params import Params
from compute_ctl.postgres.process import PostgresProcess
from compute_ctl.postgres.tools import neon_extension_available
from compute_ctl.remote_ext.manager import RemoteExtensions
from compute_ctl.sidecars import SidecarLocations, Sidecars
from compute_ctl.spec.models import ComputeCtlConfig
from compute_ctl.spec.resolve import ParsedSpec
from compute_ctl.spec.responses import PromoteState
from compute_ctl.spec.types import Lsn
from compute_ctl.state import ComputeState, ComputeStatus

log = logging.getLogger(__name__)

FAILED_EXIT_DELAY = 30.0
DEV_EXIT_DELAY = 1.0
NORMAL_EXIT_DELAY = 0.3
STOP_TIMEOUT = 30.0


class Listeners(Protocol):
    """The HTTP listeners, opened and closed by the lifecycle at the right moments."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ComputeNode:
    def __init__(
        self,
        params: Params,
        *,
        pspec: ParsedSpec | None,
        ctl_config: ComputeCtlConfig | None,
        log_out: TextIO | None = None,
        prom: PromMetrics | None = None,
    ) -> None:
        self.params = params
        self.state = ComputeState(pspec=pspec)
        self.prom = prom if prom is not None else PromMetrics()
        watch_status(self.state, params, self.prom)
        self.log_out = log_out
        self.pg: PostgresProcess | None = None
        self.delay_exit = False
        self.tasks = BackgroundTasks()
        self.neon_available = neon_extension_available(params.pg_bindir)
        self.sidecars = Sidecars(SidecarLocations.from_environ(os.environ, vm=params.autoscaling))
        self.lfc = Lfc(params.connstr, lambda: self.state.pspec, self.prom, params.failpoints)
        self.ext_stats = ExtensionStats(
            params.connstr, self.prom, params.installed_extensions_collection_interval
        )
        self.remote_ext = RemoteExtensions(
            params.pg_bindir, params.remote_ext_base_url, self.prom, self.prom.build_tag
        )
        tls_files = ctl_config.tls if ctl_config else None
        self.applier = SpecApplier(
            params,
            self.prom,
            self.ext_stats,
            self.sidecars,
            tls_files,
            self.tasks,
            self.neon_available,
        )
        self.startup = Startup(
            self.state,
            self.applier,
            self.remote_ext,
            vm_tools.VmTools.from_environ(os.environ),
            self.lfc,
            log_out,
            on_spawned=self._spawned,
        )
        self.monitors = Monitors(self.state, params, self.prom, self.ext_stats)
        self.promotion = Promotion(
            self.state, self.lfc, params.connstr, self.applier.reconfigure, params.failpoints
        )
        self.configurator = Configurator(
            self.state, params, self.prom, self.applier.reconfigure, self.exit_now
        )
        self._terminating = asyncio.Event()
        self._main_task: asyncio.Task[int] | None = None
        self._exiting: asyncio.Future[None] | None = None

    def _spawned(self, pg: PostgresProcess) -> None:
        self.pg = pg

    # What the HTTP layer asks (http/compute_api.py)

    def forward_termination(self, *, dev: bool) -> None:
        """SIGKILL pgbouncer and SIGTERM local_proxy (unless `dev`), then ask Postgres for a
        fast shutdown (SIGINT)."""
        self._terminating.set()
        self.sidecars.stop(dev=dev)
        if self.pg is not None:
            self.pg.send_signal(signal.SIGINT)

    def exit_after(self, seconds: float, code: int) -> None:
        async def later() -> None:
            await asyncio.sleep(seconds)
            log.info("exiting process after terminating empty compute")
            sys.stderr.flush()
            os._exit(code)

        self.tasks.spawn(later(), "exit")

    async def signal_refresh(self) -> None:
        await self.configurator.signal_refresh()

    async def promote(self, pspec: ParsedSpec, wal_flush_lsn: Lsn) -> PromoteState:
        return await self.promotion.promote(pspec, wal_flush_lsn)

    # The whole run

    async def run(self, listeners: Listeners) -> int:
        """Serve, start, supervise; returns the process exit code."""
        lifecycle = asyncio.create_task(self._run(listeners), name="lifecycle")
        self._main_task = lifecycle
        # exit_now cancels the lifecycle and then ends the process itself: keep the loop
        # running for it (once this task ends, asyncio.run cancels every other task).
        await asyncio.wait([lifecycle])
        if lifecycle.cancelled() and self._exiting is not None:
            await self._exiting
        tracing.flush()  # bounded: a collector that is down never holds the exit up for long
        return lifecycle.result()

    async def _run(self, listeners: Listeners) -> int:
        state, params = self.state, self.params
        if state.pspec is None and not params.lakebase_mode:
            await prewarm_vm_memory(params, self.neon_available, self.log_out)
        await listeners.start()
        allocator.limit_arenas()  # before the first worker thread; off the /status path
        await tracing.load()  # only with an exporter configured; /status is served already
        # Upstream's first line; here once the inputs are loaded (an unstartable spec is one
        # line on stderr) and the exporter, if any, is set up.
        log.info("logging and tracing started")
        pspec = state.pspec
        if pspec is None:
            log.info("no compute spec yet: waiting for POST /configure")
            self.tasks.spawn(preload_while_empty(), "preload")
            pspec = await state.wait_for_spec()
            if pspec is None:  # terminated while empty: nothing to stop but a spare child
                await discard_preloaded()
                await state.set_status(ComputeStatus.TERMINATED)
                await self._linger()
                await listeners.stop()
                return 0
        set_ids(os.environ.get("INSTANCE_ID"), params.compute_id)  # lakebase's log files
        await state.set_status(ComputeStatus.INIT)
        self.tasks.spawn(self.configurator.run(), "configurator")
        if params.lakebase_mode:
            watchdog = init_watchdog(state, params.pg_init_timeout, self.exit_now)
            self.tasks.spawn(watchdog, "init-watchdog")
        mode = pspec.spec.mode
        if mode.kind == "static" and mode.lsn:
            from compute_ctl.compute.lease import lease_loop  # noqa: PLC0415 - static only

            self.tasks.spawn(lease_loop(state, mode.lsn), "lsn-lease")
        exit_code: int | None = None
        try:
            await self.startup.run(pspec)
        except Exception as exc:
            log.error("could not start the compute: %s", chain_text(exc))
            await state.set_status(ComputeStatus.FAILED, error=chain_text(exc))
            self.delay_exit = True
            if self.pg is not None:  # spawned but not (or no longer) usable: stop it, exit 1
                await self.pg.stop(signal.SIGQUIT, STOP_TIMEOUT)
                self.pg = None
        else:
            # Start-up's buffers are freed: hand their pages back, off the loop, so that the
            # answer to /configure is not held up by it.
            self.tasks.spawn(allocator.trim_in_thread(), "malloc-trim")
            self.monitors.start(pspec)
        if self.pg is not None:
            if self._terminating.is_set():
                self.pg.send_signal(signal.SIGINT)
            code = await self.pg.wait()
            exit_code = code if code >= 0 else None
            log.info("postgres exited with code %s", code)
        await self.monitors.stop()
        await self.ext_stats.stop()
        self.lfc.stop_offload_task()
        with tracing.span("shutdown"):
            synced, fast = await shutdown.after_postgres_exit(
                state, params, neon_available=self.neon_available
            )
        if not synced:
            await listeners.stop()
            return 1  # the shutdown sync failed: exit at once, without lingering
        self.delay_exit = self.delay_exit or fast
        await self._linger()
        await listeners.stop()
        return exit_code if exit_code is not None else 1

    async def _linger(self) -> None:
        """Keep /status readable a while after a failure or a fast termination."""
        if self.delay_exit:
            await asyncio.sleep(DEV_EXIT_DELAY if self.params.dev else FAILED_EXIT_DELAY)
        else:
            await asyncio.sleep(NORMAL_EXIT_DELAY)

    async def exit_now(self, code: int) -> None:
        """End the process at once with `code` (a signal, or a refresh finding no spec).
        Upstream exits right after signalling Postgres; we also wait for the postmaster
        (bounded) so that no process is left behind."""
        self._exiting = asyncio.current_task()
        self.forward_termination(dev=self.params.dev)
        await self.monitors.stop()
        main = self._main_task
        if main is not None and not main.done():
            # Cancelling start-up stops its children (sync-safekeepers, basebackup transfers).
            main.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(main, STOP_TIMEOUT)
        if self.pg is not None:
            await self.pg.stop(signal.SIGINT, STOP_TIMEOUT)
        tracing.flush()
        sys.stderr.flush()
        os._exit(code)
