"""The lifecycle of one compute: from a spec to a running, reconciled Postgres, and back down.

`ComputeNode.run` is the whole process after argument parsing: it serves the HTTP API, waits for
a spec if it has none, starts the compute, supervises the postmaster, and returns the exit code
the process must end with. Everything runs on one event loop; blocking work goes to threads or
subprocesses. The status only changes through `ComputeState`, which enforces the state machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

import uvicorn

from compute_ctl.cli import Params
from compute_ctl.compute.metrics import PromMetrics
from compute_ctl.compute.prepare import PrepareOptions, prepare_pgdata, write_postgresql_conf
from compute_ctl.compute.state import ComputeState, ComputeStatus, utcnow
from compute_ctl.errors import ComputeError, chain_text
from compute_ctl.http.app import bind_socket, external_app, internal_app, make_server
from compute_ctl.http.auth import Authorizer
from compute_ctl.postgres.conf import (
    SUBSCRIBERS_ENABLED_LINE,
    TEMP_OVERRIDE_FILE,
    TEMP_OVERRIDE_SETTINGS,
    audit_requires_endpoint,
    line_in_file_path,
)
from compute_ctl.postgres.process import (
    PostgresProcess,
    pg_ctl_reload,
    postgres_env,
    spawn_postgres,
    wait_until_ready,
)
from compute_ctl.spec.models import ComputeCtlConfig
from compute_ctl.spec.resolve import ParsedSpec

log = logging.getLogger(__name__)

FAILED_EXIT_DELAY = 30.0
DEV_EXIT_DELAY = 1.0
NORMAL_EXIT_DELAY = 0.3
STOP_TIMEOUT = 30.0

CatalogApplier = Callable[[ParsedSpec, "ComputeNode", bool], Awaitable[None]]


def neon_extension_available(pg_bindir: Path) -> bool:
    """Whether the Neon Postgres extension is installed next to these binaries (stock
    PostgreSQL has none; every Neon-only step is skipped then)."""
    lib = pg_bindir.parent / "lib"
    return (lib / "neon.so").exists() or (lib / "postgresql" / "neon.so").exists()


class ComputeNode:
    def __init__(
        self,
        params: Params,
        *,
        pspec: ParsedSpec | None,
        ctl_config: ComputeCtlConfig | None,
        authorizer: Authorizer | None = None,
        catalog: CatalogApplier | None = None,
        log_out: TextIO | None = None,
    ) -> None:
        self.params = params
        self.state = ComputeState(pspec=pspec)
        self.ctl_config = ctl_config
        self.prom = PromMetrics()
        self.state.listeners.append(self.prom.set_status)
        self.authorizer = authorizer
        self.catalog = catalog
        self.log_out = log_out
        self.pg: PostgresProcess | None = None
        self.servers: list[uvicorn.Server] = []
        self.delay_exit = False
        self.neon_available = neon_extension_available(params.pg_bindir)
        self._tasks: set[asyncio.Task[None]] = set()
        self._terminating = asyncio.Event()
        self._main_task: asyncio.Task[object] | None = None

    # ----------------------------------------------------------------------------------------
    # Helpers

    @property
    def pgdata(self) -> Path:
        return self.params.pgdata

    @property
    def prepare_options(self) -> PrepareOptions:
        return PrepareOptions(
            pgdata=self.pgdata,
            postgres=Path(self.params.pgbin),
            privileged_role_name=self.params.privileged_role_name,
            internal_http_port=self.params.internal_http_port,
            tls=self.ctl_config.tls if self.ctl_config else None,
            neon_available=self.neon_available,
        )

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> None:
        await pg_ctl_reload(self.params.pg_bindir / "pg_ctl", self.pgdata)

    # ----------------------------------------------------------------------------------------
    # HTTP

    async def start_http(self) -> None:
        apps = [
            (external_app(self, self.authorizer), self.params.external_http_port),
            (internal_app(self), self.params.internal_http_port),
        ]
        for app, port in apps:
            try:
                sock = bind_socket(port)
            except OSError as exc:
                raise ComputeError(f"could not listen on port {port}: {exc.strerror}") from exc
            server = make_server(app)
            self.servers.append(server)
            self._spawn(server.serve(sockets=[sock]), f"http-{port}")
        log.info(
            "serving the external API on port %d and the internal API on port %d",
            self.params.external_http_port,
            self.params.internal_http_port,
        )

    async def stop_http(self) -> None:
        for server in self.servers:
            server.should_exit = True
        for task in list(self._tasks):
            if task.get_name().startswith("http-"):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 5)

    # ----------------------------------------------------------------------------------------
    # Termination

    def forward_termination(self, *, dev: bool) -> None:
        """Ask Postgres for a fast shutdown (SIGINT). `dev` skips VM-only helpers (pgbouncer,
        local_proxy), which a stock installation does not run anyway."""
        del dev
        self._terminating.set()
        if self.pg is not None:
            self.pg.send_signal(signal.SIGINT)

    def install_signal_handlers(self, on_signal: Callable[[int], None]) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
            loop.add_signal_handler(signum, on_signal, signum)

    # ----------------------------------------------------------------------------------------
    # Start-up

    async def start_compute(self, pspec: ParsedSpec) -> None:
        """Init → Running, or raise (the caller records Failed)."""
        state = self.state
        state.pg_start_time = utcnow()
        spec = pspec.spec
        if audit_requires_endpoint(spec.audit_log_level) and not (
            os.environ.get("AUDIT_LOGGING_ENDPOINT") or os.environ.get("AUDIT_LOGGING_TLS_ENDPOINT")
        ):
            raise ComputeError(
                "AUDIT_LOGGING_ENDPOINT and AUDIT_LOGGING_TLS_ENDPOINT are both empty"
            )
        log.info(
            "starting compute for tenant %s timeline %s in %s mode",
            pspec.tenant_id,
            pspec.timeline_id,
            spec.mode.type_str(),
        )
        if spec.swap_size_bytes is not None and self.params.resize_swap_on_bind:
            log.info("swap resizing skipped: not a VM")
        if spec.disk_quota_bytes is not None and self.params.set_disk_quota_for_fs:
            log.info("disk quota skipped: not a VM")
        await prepare_pgdata(pspec, self.prepare_options, state.metrics)

        spawn_started = time.monotonic()
        env = postgres_env(os.environ, pspec.storage_auth_token)
        prefix = ("cgexec", "-g", "memory:neon-postgres") if os.environ.get("AUTOSCALING") else ()
        pg = await spawn_postgres(
            self.params.pgbin, self.pgdata, env=env, argv_prefix=prefix, log_out=self.log_out
        )
        self.pg = pg
        await wait_until_ready(pg, self.params.pg_init_timeout or 60.0)
        state.metrics.start_postgres_ms = int((time.monotonic() - spawn_started) * 1000)

        config_started = time.monotonic()
        if spec.mode.is_primary:
            await self.configure_as_primary(pspec)
        state.metrics.config_ms = int((time.monotonic() - config_started) * 1000)
        state.metrics.total_startup_ms = int((utcnow() - state.start_time).total_seconds() * 1000)
        await state.set_status(ComputeStatus.RUNNING)
        log.info("compute start finished")

    async def configure_as_primary(self, pspec: ParsedSpec) -> None:
        if pspec.spec.skip_pg_catalog_updates:
            log.info("skipping catalog updates (skip_pg_catalog_updates)")
        else:
            override = self.pgdata / TEMP_OVERRIDE_FILE
            override.write_text(TEMP_OVERRIDE_SETTINGS)
            await self.reload()
            try:
                if self.catalog is not None:
                    await self.catalog(pspec, self, True)
            finally:
                override.write_text("")
            line_in_file_path(self.pgdata / "postgresql.conf", SUBSCRIBERS_ENABLED_LINE)
            await self.reload()
        if not self.neon_available:
            log.info("ALTER EXTENSION neon UPDATE skipped: the neon extension is not installed")

    async def reconfigure(self, pspec: ParsedSpec) -> None:
        """Apply a new spec to a running Postgres: config rewrite, reload, catalog."""
        write_postgresql_conf(pspec, self.prepare_options)
        await self.reload()
        if pspec.spec.skip_pg_catalog_updates:
            return
        override = self.pgdata / TEMP_OVERRIDE_FILE
        override.write_text(TEMP_OVERRIDE_SETTINGS)
        await self.reload()
        try:
            if pspec.spec.mode.is_primary and self.catalog is not None:
                await self.catalog(pspec, self, False)
        finally:
            override.write_text("")
            await self.reload()

    async def configurator(self) -> None:
        """Pick up specs delivered to a running compute (§6.2); stops once Failed is seen."""
        state = self.state
        while True:
            async with state.condition:
                await state.condition.wait_for(
                    lambda: (
                        state.status in (ComputeStatus.CONFIGURATION_PENDING, ComputeStatus.FAILED)
                        or state.status.is_termination_pending
                    )
                )
                if state.status is not ComputeStatus.CONFIGURATION_PENDING:
                    return
                state.set_locked(ComputeStatus.CONFIGURATION)
                pspec = state.pspec
            assert pspec is not None
            try:
                await self.reconfigure(pspec)
            except Exception as exc:
                log.error("could not apply the new spec: %s", chain_text(exc))
                await state.set_status(ComputeStatus.FAILED)
                return
            await state.set_status(ComputeStatus.RUNNING)

    # ----------------------------------------------------------------------------------------
    # The whole run

    async def wait_for_spec(self) -> ParsedSpec | None:
        """Empty: wait for /configure (→ the spec) or /terminate (→ None)."""
        state = self.state
        started = state.start_time
        status = await state.wait_for(
            ComputeStatus.CONFIGURATION_PENDING,
            ComputeStatus.TERMINATION_PENDING_FAST,
            ComputeStatus.TERMINATION_PENDING_IMMEDIATE,
        )
        if status.is_termination_pending:
            return None
        now = utcnow()
        state.metrics.wait_for_spec_ms = int((now - started).total_seconds() * 1000)
        state.start_time = now
        return state.pspec

    async def run(self) -> int:
        """Serve, start, supervise; returns the process exit code."""
        state = self.state
        self._main_task = asyncio.current_task()
        self.install_signal_handlers(self._on_signal)
        await self.start_http()
        pspec = state.pspec
        if pspec is None:
            log.info("no compute spec yet: waiting for POST /configure")
            pspec = await self.wait_for_spec()
            if pspec is None:  # terminated while empty: nothing to stop
                await state.set_status(ComputeStatus.TERMINATED)
                await self._linger()
                await self.stop_http()
                return 0
        await state.set_status(ComputeStatus.INIT)
        self._spawn(self.configurator(), "configurator")
        exit_code: int | None = None
        try:
            await self.start_compute(pspec)
        except Exception as exc:
            log.error("could not start the compute: %s", chain_text(exc))
            await state.set_status(ComputeStatus.FAILED, error=chain_text(exc))
            self.delay_exit = True
            if self.pg is not None:  # spawned but not (or no longer) usable: stop it, exit 1
                await self.pg.stop(signal.SIGQUIT, STOP_TIMEOUT)
                self.pg = None
        if self.pg is not None:
            if self._terminating.is_set():
                self.pg.send_signal(signal.SIGINT)
            code = await self.pg.wait()
            exit_code = code if code >= 0 else None
            log.info("postgres exited with code %s", code)
        await self.cleanup_after_postgres_exit()
        await self._linger()
        await self.stop_http()
        return exit_code if exit_code is not None else 1

    async def cleanup_after_postgres_exit(self) -> None:
        state = self.state
        pspec = state.pspec
        if pspec is not None and pspec.spec.mode.is_primary and not self.neon_available:
            log.info("shutdown sync with the safekeepers skipped: the neon extension is missing")
        async with state.condition:
            if state.status.is_termination_pending:
                if state.status is ComputeStatus.TERMINATION_PENDING_FAST:
                    self.delay_exit = True
                state.set_locked(ComputeStatus.TERMINATED)

    async def _linger(self) -> None:
        """Keep /status readable a while after a failure or a fast termination."""
        if self.delay_exit:
            await asyncio.sleep(DEV_EXIT_DELAY if self.params.dev else FAILED_EXIT_DELAY)
        else:
            await asyncio.sleep(NORMAL_EXIT_DELAY)

    def _on_signal(self, signum: int) -> None:
        log.info("received signal %s: stopping Postgres and exiting", signal.Signals(signum).name)
        self._spawn(self._exit_on_signal(), "signal")

    async def _exit_on_signal(self) -> None:
        # Upstream exits at once after signalling Postgres; we also wait for the postmaster
        # (bounded) so that no process is left behind.
        self.forward_termination(dev=self.params.dev)
        main = self._main_task
        if main is not None and not main.done():
            # Cancelling start-up stops its children (sync-safekeepers, basebackup transfers).
            main.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(main, STOP_TIMEOUT)
        if self.pg is not None:
            await self.pg.stop(signal.SIGINT, STOP_TIMEOUT)
        sys.stderr.flush()
        os._exit(1)
