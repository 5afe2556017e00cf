"""The lifecycle of one compute: from a spec to a running, reconciled Postgres, and back down.

`ComputeNode.run` is the whole process after argument parsing: it serves the HTTP API, waits for
a spec if it has none, starts the compute, supervises the postmaster, and returns the exit code
the process must end with. Everything runs on one event loop; blocking work goes to threads or
subprocesses. The status only changes through `ComputeState`, which enforces the state machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

import uvicorn

from compute_ctl.cli import Params
from compute_ctl.compute import tls, vm_tools
from compute_ctl.compute.configurator import Configurator
from compute_ctl.compute.core_dumps import check_for_core_dumps, core_dump_dir
from compute_ctl.compute.extensions_stats import ExtensionStats
from compute_ctl.compute.monitor import ComputeMonitor
from compute_ctl.compute.prepare import PrepareOptions, prepare_pgdata, write_postgresql_conf
from compute_ctl.compute.promote import Promotion
from compute_ctl.errors import ComputeError, chain_text
from compute_ctl.http.app import bind_socket, external_app, internal_app, make_server
from compute_ctl.http.auth import Authorizer
from compute_ctl.lfc import Lfc
from compute_ctl.logs_export import rsyslog
from compute_ctl.metrics import PromMetrics
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
from compute_ctl.remote_ext.manager import RemoteExtensions
from compute_ctl.sidecars import SidecarLocations, Sidecars
from compute_ctl.spec.models import ComputeCtlConfig, ComputeFeature, ComputeSpec, TlsConfig
from compute_ctl.spec.resolve import ParsedSpec
from compute_ctl.state import ComputeState, ComputeStatus, utcnow

log = logging.getLogger(__name__)

FAILED_EXIT_DELAY = 30.0
DEV_EXIT_DELAY = 1.0
NORMAL_EXIT_DELAY = 0.3
STOP_TIMEOUT = 30.0
CATALOG_MODULE = "compute_ctl.catalog"


def neon_extension_available(pg_bindir: Path) -> bool:
    """Whether the Neon Postgres extension is installed for these binaries (stock PostgreSQL
    has none; every Neon-only step is skipped then). Asks `pg_config --pkglibdir` next to
    `postgres`, as the server itself would look there."""
    try:
        out = subprocess.run(
            [str(pg_bindir / "pg_config"), "--pkglibdir"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        libdirs = [Path(out.stdout.strip())]
    except (OSError, subprocess.SubprocessError):
        libdirs = [pg_bindir.parent / "lib", pg_bindir.parent / "lib" / "postgresql"]
    return any((libdir / "neon.so").exists() for libdir in libdirs)


def cgexec_prefix() -> tuple[str, ...]:
    """With AUTOSCALING, Postgres runs in the `neon-postgres` memory cgroup the vm-monitor
    watches."""
    return ("cgexec", "-g", "memory:neon-postgres") if "AUTOSCALING" in os.environ else ()


class ComputeNode:
    def __init__(
        self,
        params: Params,
        *,
        pspec: ParsedSpec | None,
        ctl_config: ComputeCtlConfig | None,
        authorizer: Authorizer | None = None,
        log_out: TextIO | None = None,
        prom: PromMetrics | None = None,
    ) -> None:
        self.params = params
        self.state = ComputeState(pspec=pspec)
        self.ctl_config = ctl_config
        self.prom = prom if prom is not None else PromMetrics()
        self.prom.set_status(self.state.status)
        self.state.listeners.append(self.prom.set_status)
        self.authorizer = authorizer
        self.log_out = log_out
        self.pg: PostgresProcess | None = None
        self.servers: list[uvicorn.Server] = []
        self.delay_exit = False
        self.neon_available = neon_extension_available(params.pg_bindir)
        self.sidecars = Sidecars(SidecarLocations.from_environ(os.environ))
        self.vm_tools = vm_tools.VmTools.from_environ(os.environ)
        self._tasks: set[asyncio.Task[None]] = set()
        self._terminating = asyncio.Event()
        self._main_task: asyncio.Task[int] | None = None
        self._exiting: asyncio.Task[Any] | None = None
        self._vm_monitor: asyncio.Task[None] | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self.lfc = Lfc(params.connstr, lambda: self.state.pspec, self.prom)
        self.promotion = Promotion(self)
        self.configurator = Configurator(self)
        self.ext_stats = ExtensionStats(
            params.connstr, self.prom, params.installed_extensions_collection_interval
        )
        self.remote_ext = RemoteExtensions(
            params.pg_bindir, params.remote_ext_base_url, self.prom, self.prom.build_tag
        )

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
            tls=self.tls_files,
            neon_available=self.neon_available,
        )

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def tls_files(self) -> TlsConfig | None:
        """`compute_ctl_config.tls`: the key and certificate, if the operator gave them."""
        return self.ctl_config.tls if self.ctl_config else None

    def active_tls(self, spec: ComputeSpec) -> TlsConfig | None:
        """The TLS files Postgres, pgbouncer and local_proxy use (with `tls_experimental`)."""
        return tls.tls_active(spec, self.tls_files)

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
        # Accept connections before anything else runs on the loop: /status answers while
        # the compute starts.
        serving = [task for task in self._tasks if task.get_name().startswith("http-")]
        while not all(server.started for server in self.servers):
            if any(task.done() for task in serving):
                break
            await asyncio.sleep(0)
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
        """SIGKILL pgbouncer and SIGTERM local_proxy (unless `dev`), then ask Postgres for a
        fast shutdown (SIGINT)."""
        self._terminating.set()
        self.sidecars.stop(dev=dev)
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
        await self.start_cert_watcher()
        self.sidecars.configure_in_background(spec, self.active_tls(spec), self._spawn)
        audit_gc = await rsyslog.configure_at_start(spec, self.pgdata, self.prom.audit_log_dir_size)
        if audit_gc is not None:
            self._spawn(audit_gc, "audit-log-gc")
        # Like upstream's start-up pre-tasks, the preload-library downloads and the VM's swap
        # and disk quota run beside the basebackup; the first failure stops the rest and fails
        # the start.
        try:
            async with asyncio.TaskGroup() as pre_tasks:
                pre_tasks.create_task(self.remote_ext.prepare_for_start(spec, state.metrics))
                pre_tasks.create_task(prepare_pgdata(pspec, self.prepare_options, state.metrics))
                if spec.swap_size_bytes is not None and self.params.resize_swap_on_bind:
                    pre_tasks.create_task(vm_tools.resize_swap(self.vm_tools, spec.swap_size_bytes))
                quota_dir = self.params.set_disk_quota_for_fs
                if spec.disk_quota_bytes is not None and quota_dir:
                    pre_tasks.create_task(
                        vm_tools.set_disk_quota(self.vm_tools, spec.disk_quota_bytes, quota_dir)
                    )
        except ExceptionGroup as failed:
            first = failed.exceptions[0]
            raise first from first.__cause__  # its own cause chain, not the group

        spawn_started = time.monotonic()
        env = postgres_env(os.environ, pspec.storage_auth_token)
        prefix = cgexec_prefix()
        pg = await spawn_postgres(
            self.params.pgbin, self.pgdata, env=env, argv_prefix=prefix, log_out=self.log_out
        )
        self.pg = pg
        # While Postgres starts, a worker thread imports the catalog code configuration runs next.
        preload = asyncio.ensure_future(asyncio.to_thread(importlib.import_module, CATALOG_MODULE))
        await wait_until_ready(pg, self.params.pg_init_timeout or 60.0)
        state.metrics.start_postgres_ms = int((time.monotonic() - spawn_started) * 1000)
        await preload

        config_started = time.monotonic()
        if spec.mode.is_primary:
            await self.configure_as_primary(pspec)
        state.metrics.config_ms = int((time.monotonic() - config_started) * 1000)
        state.metrics.total_startup_ms = int((utcnow() - state.start_time).total_seconds() * 1000)
        await state.set_status(ComputeStatus.RUNNING)
        log.info("compute start finished")
        if spec.autoprewarm:
            log.info("autoprewarming on startup as requested")
            self.lfc.prewarm(None)
        if spec.offload_lfc_interval_seconds is not None:
            self.lfc.start_offload_task(float(spec.offload_lfc_interval_seconds))

    async def configure_as_primary(self, pspec: ParsedSpec) -> None:
        if pspec.spec.skip_pg_catalog_updates:
            log.info("skipping catalog updates (skip_pg_catalog_updates)")
        else:
            override = self.pgdata / TEMP_OVERRIDE_FILE
            override.write_text(TEMP_OVERRIDE_SETTINGS)
            await self.reload()
            try:
                await self.apply_catalog(pspec, starting=True)
                await self.sidecars.configure_local_proxy(pspec.spec, self.active_tls(pspec.spec))
            finally:
                override.write_text("")
            line_in_file_path(self.pgdata / "postgresql.conf", SUBSCRIBERS_ENABLED_LINE)
            await self.reload()
            self._spawn(self.run_migrations(pspec), "migrations")
        if self.neon_available:
            self._spawn(self._update_neon_extension(), "neon-extension-update")
        else:
            log.info("ALTER EXTENSION neon UPDATE skipped: the neon extension is not installed")

    async def apply_catalog(self, pspec: ParsedSpec, *, starting: bool) -> None:
        """Reconcile roles, databases and extensions with the spec."""
        self.ext_stats.update_interval(pspec.spec.suspend_timeout_seconds)
        from compute_ctl.catalog import apply_spec, max_service_connections  # noqa: PLC0415

        report = await apply_spec(
            self.params.connstr,
            pspec.spec,
            privileged_role_name=self.params.privileged_role_name,
            concurrency=max_service_connections(pspec.spec, starting=starting),
            timeline_id=str(pspec.timeline_id),
            lakebase=self.params.lakebase_mode,
        )
        log.info(
            "catalog: %d statements executed of %d planned",
            report.executed,
            report.planned,
        )

    async def run_migrations(self, pspec: ParsedSpec) -> None:
        """Numbered migrations, in the background after the first apply (primary only);
        a failure is logged and counted, the compute keeps running."""
        from compute_ctl.catalog import run_migrations, should_run_migrations  # noqa: PLC0415

        if not should_run_migrations(pspec.spec, starting=True):
            return
        try:
            await run_migrations(
                self.params.connstr,
                privileged_role_name=self.params.privileged_role_name,
                on_failure=lambda k: self.prom.db_migration_failed.labels(str(k)).inc(),
            )
        except Exception as exc:
            log.error("migrations failed: %s", chain_text(exc))

    async def _update_neon_extension(self) -> None:
        from compute_ctl.catalog import update_neon_extension  # noqa: PLC0415

        try:
            await update_neon_extension(self.params.connstr)
        except Exception as exc:
            log.error("ALTER EXTENSION neon UPDATE failed: %s", exc)

    async def start_cert_watcher(self) -> None:
        """With `compute_ctl_config.tls`: wait (bounded) for the certificate, then watch it."""
        tls_config = self.tls_files
        if tls_config is None:
            return
        cert_path = Path(tls_config.cert_path)
        digest = await tls.wait_for_cert(cert_path)
        self._spawn(tls.watch_cert(self.state, cert_path, digest), "tls-cert-watcher")

    async def reconfigure(self, pspec: ParsedSpec) -> None:
        """Apply a new spec to a running Postgres: config rewrite, reload, catalog."""
        self.sidecars.configure_in_background(pspec.spec, self.active_tls(pspec.spec), self._spawn)
        tls_config = self.active_tls(pspec.spec)
        if tls_config is not None:  # a renewed key/certificate, picked up by the reload
            await tls.install_tls_files(self.pgdata, tls_config)
        await rsyslog.reconfigure(pspec.spec)
        write_postgresql_conf(pspec, self.prepare_options)
        await self.reload()
        if pspec.spec.skip_pg_catalog_updates:
            return
        override = self.pgdata / TEMP_OVERRIDE_FILE
        override.write_text(TEMP_OVERRIDE_SETTINGS)
        await self.reload()
        try:
            if pspec.spec.mode.is_primary:
                await self.apply_catalog(pspec, starting=False)
        finally:
            override.write_text("")
            await self.reload()

    # ----------------------------------------------------------------------------------------
    # Activity monitor

    def start_monitor(self, pspec: ParsedSpec) -> None:
        monitor = ComputeMonitor(
            self.state,
            self.params.connstr,
            self.prom,
            experimental=pspec.spec.has_feature(ComputeFeature.ACTIVITY_MONITOR_EXPERIMENTAL),
        )
        task = asyncio.ensure_future(monitor.run())
        task.set_name("compute-monitor")
        self._monitor_task = task

    async def stop_monitor(self) -> None:
        task, self._monitor_task = self._monitor_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

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
        lifecycle = asyncio.create_task(self._run(), name="lifecycle")
        self._main_task = lifecycle
        # exit_now cancels the lifecycle and then ends the process itself: keep the loop
        # running for it (once this task ends, asyncio.run cancels every other task).
        await asyncio.wait([lifecycle])
        if lifecycle.cancelled() and self._exiting is not None:
            await self._exiting
        return lifecycle.result()

    async def prewarm_vm_memory(self) -> None:
        """Before the ports open, when there is no spec yet (see compute/vm_prewarm.py). The
        scratch cluster preloads neon as upstream's does, so a server without the neon library
        skips it; a failure ends the process (exit 1), as upstream."""
        if not self.neon_available:
            log.info("VM memory prewarm skipped: the neon extension is not installed")
            return
        from compute_ctl.compute.vm_prewarm import prewarm_vm_memory  # noqa: PLC0415

        await prewarm_vm_memory(
            Path(self.params.pgbin), self.pgdata, argv_prefix=cgexec_prefix(), log_out=self.log_out
        )

    async def _run(self) -> int:
        state = self.state
        self.install_signal_handlers(self._on_signal)
        if state.pspec is None and not self.params.lakebase_mode:
            await self.prewarm_vm_memory()
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
        self._spawn(self.configurator.run(), "configurator")
        mode = pspec.spec.mode
        if mode.kind == "static" and mode.lsn:
            from compute_ctl.compute.lease import lease_loop  # noqa: PLC0415 - static only

            self._spawn(lease_loop(state, mode.lsn), "lsn-lease")
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
        else:
            self.start_monitor(pspec)
            self.start_vm_monitor(pspec)
            if pspec.spec.mode.is_primary:
                self.ext_stats.scan_in_background()
            self.ext_stats.start_periodic()
        if self.pg is not None:
            if self._terminating.is_set():
                self.pg.send_signal(signal.SIGINT)
            code = await self.pg.wait()
            exit_code = code if code >= 0 else None
            log.info("postgres exited with code %s", code)
        await self.stop_monitor()
        await self.stop_vm_monitor()
        await self.ext_stats.stop()
        self.lfc.stop_offload_task()
        if not await self.cleanup_after_postgres_exit():
            await self.stop_http()
            return 1  # the shutdown sync failed: exit at once, without lingering
        await self._linger()
        await self.stop_http()
        return exit_code if exit_code is not None else 1

    def start_vm_monitor(self, pspec: ParsedSpec) -> None:
        """Autoscaling VMs only (`AUTOSCALING` set): serve the autoscaler-agent until Postgres
        exits."""
        if "AUTOSCALING" not in os.environ:
            return
        from compute_ctl.vm_monitor import run_vm_monitor  # noqa: PLC0415 - VMs only

        self._vm_monitor = asyncio.create_task(
            run_vm_monitor(
                self.params.vm_monitor_addr,
                self.params.cgroup,
                self.params.filecache_connstr,
                disable_lfc_resizing=bool(pspec.spec.disable_lfc_resizing),
            ),
            name="vm-monitor",
        )

    async def stop_vm_monitor(self) -> None:
        """Postgres has exited: end the agent's session and stop listening."""
        task, self._vm_monitor = self._vm_monitor, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def cleanup_after_postgres_exit(self) -> bool:
        """After the postmaster exits: a primary syncs the safekeepers once (its LSN is what
        /terminate answers), then a pending termination completes. False when the sync
        failed, which ends the process at once with exit code 1."""
        state = self.state
        pspec = state.pspec
        if pspec is not None and pspec.spec.mode.is_primary:
            if not self.neon_available:
                log.info(
                    "shutdown sync with the safekeepers skipped: the neon extension is missing"
                )
            else:
                from compute_ctl.storage.retry import NO_RETRY  # noqa: PLC0415
                from compute_ctl.storage.safekeepers import sync_safekeepers  # noqa: PLC0415

                started = time.monotonic()
                try:
                    lsn = await sync_safekeepers(
                        Path(self.params.pgbin),
                        self.pgdata,
                        pspec.storage_auth_token,
                        policy=NO_RETRY,
                    )
                except Exception as exc:
                    log.error("shutdown sync with the safekeepers failed: %s", chain_text(exc))
                    return False
                state.metrics.sync_safekeepers_ms = int((time.monotonic() - started) * 1000)
                state.terminate_flush_lsn = lsn
                log.info("safekeepers synced at %s after Postgres exited", lsn)
        async with state.condition:
            if state.status.is_termination_pending:
                if state.status is ComputeStatus.TERMINATION_PENDING_FAST:
                    self.delay_exit = True
                state.set_locked(ComputeStatus.TERMINATED)
        core_dir = core_dump_dir(self.pgdata, lakebase=self.params.lakebase_mode)
        await check_for_core_dumps(core_dir, self.params.pgbin)
        return True

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
        await self.exit_now(1)

    async def exit_now(self, code: int) -> None:
        """End the process at once with `code` (a signal, or a refresh finding no spec).
        Upstream exits right after signalling Postgres; we also wait for the postmaster
        (bounded) so that no process is left behind."""
        self._exiting = asyncio.current_task()
        self.forward_termination(dev=self.params.dev)
        await self.stop_monitor()
        main = self._main_task
        if main is not None and not main.done():
            # Cancelling start-up stops its children (sync-safekeepers, basebackup transfers).
            main.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(main, STOP_TIMEOUT)
        if self.pg is not None:
            await self.pg.stop(signal.SIGINT, STOP_TIMEOUT)
        sys.stderr.flush()
        os._exit(code)
