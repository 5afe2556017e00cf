"""Start-up: from a resolved spec to a running, reconciled Postgres (`init` → `running`).

The pre-tasks (PGDATA and the basebackup, preload-library downloads, the VM's swap and disk
quota) run side by side, then Postgres is started and waited for, and a primary gets its first
catalog apply. Failures raise; the lifecycle (`compute/node.py`) records them.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from compute_ctl import tls, tracing
from compute_ctl.compute import vm_tools
from compute_ctl.compute.prepare import import_storage_clients, prepare_pgdata
from compute_ctl.compute.spec_apply import SpecApplier
from compute_ctl.errors import ComputeError
from compute_ctl.logs_export import rsyslog
from compute_ctl.postgres.conf import audit_requires_endpoint
from compute_ctl.postgres.process import (
    DATABRICKS_ENDPOINT_ID_ENV,
    PostgresProcess,
    databricks_env,
    postgres_env,
    spawn_postgres,
    wait_until_ready,
)
from compute_ctl.spec.models import ConfigurationRequest
from compute_ctl.state import ComputeState, ComputeStatus, utcnow

if TYPE_CHECKING:
    from compute_ctl.lfc import Lfc
    from compute_ctl.params import Params
    from compute_ctl.remote_ext.manager import RemoteExtensions
    from compute_ctl.spec.resolve import ParsedSpec

log = logging.getLogger(__name__)

CATALOG_MODULE = "compute_ctl.catalog"
"""The catalog code (and psycopg under it) that configuration runs once Postgres is up."""
DEFAULT_READY_TIMEOUT = 60.0


@dataclass
class Startup:
    state: ComputeState
    applier: SpecApplier
    remote_ext: RemoteExtensions
    vm_tools: vm_tools.VmTools
    lfc: Lfc
    log_out: TextIO | None
    on_spawned: Callable[[PostgresProcess], None]
    """Told about the postmaster as soon as it exists, so that a failure later in the start
    (or a signal) can stop it."""

    async def run(self, pspec: ParsedSpec) -> None:
        """Init → Running, or raise (the caller records Failed), in the `start_compute` span:
        a child of the `/configure` request that delivered the spec, else of the environment's
        `TRACEPARENT`, as upstream."""
        parent = tracing.take_over("configure") or tracing.parent_from_environ()
        with tracing.span("start_compute", parent=parent):
            await self._run(pspec)

    async def _run(self, pspec: ParsedSpec) -> None:
        state, applier = self.state, self.applier
        params = applier.params
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
        applier.sidecars.configure_in_background(
            spec, applier.active_tls(spec), applier.tasks.spawn
        )
        audit_gc = await rsyslog.configure_at_start(
            spec, params.pgdata, applier.prom.audit_log_dir_size
        )
        if audit_gc is not None:
            applier.tasks.spawn(audit_gc, "audit-log-gc")
        await self.pre_tasks(pspec)

        spawn_started = time.monotonic()
        env = postgres_env(os.environ, pspec.storage_auth_token)
        if params.lakebase_mode:
            env.update(lakebase_env(params, pspec))
        with tracing.span("start_postgres"):
            pg = await spawn_postgres(
                params.pgbin,
                params.pgdata,
                env=env,
                argv_prefix=params.cgroup_prefix,
                log_out=self.log_out,
            )
            self.on_spawned(pg)
            # While Postgres starts, a worker thread imports the catalog code configuration
            # runs next.
            preload = asyncio.ensure_future(
                asyncio.to_thread(importlib.import_module, CATALOG_MODULE)
            )
            # --pg-init-timeout bounds readiness, except in lakebase mode, where it is the
            # watchdog's limit (compute/lakebase.py) and readiness waits 60 s, as upstream
            ready_timeout = params.pg_init_timeout or DEFAULT_READY_TIMEOUT
            await wait_until_ready(
                pg, DEFAULT_READY_TIMEOUT if params.lakebase_mode else ready_timeout
            )
        state.metrics.start_postgres_ms = int((time.monotonic() - spawn_started) * 1000)
        await preload

        config_started = time.monotonic()
        if spec.mode.is_primary:
            with tracing.span("configure_as_primary"):
                await applier.configure_as_primary(pspec)
        state.metrics.config_ms = int((time.monotonic() - config_started) * 1000)
        state.metrics.total_startup_ms = int((utcnow() - state.start_time).total_seconds() * 1000)
        await state.set_status(ComputeStatus.RUNNING)
        log.info("compute start finished")
        if spec.autoprewarm:
            log.info("autoprewarming on startup as requested")
            self.lfc.prewarm(None)
        if spec.offload_lfc_interval_seconds is not None:
            self.lfc.start_offload_task(float(spec.offload_lfc_interval_seconds))

    async def pre_tasks(self, pspec: ParsedSpec) -> None:
        """Like upstream's start-up pre-tasks, the preload-library downloads and the VM's swap
        and disk quota run beside the basebackup; the first failure stops the rest and fails
        the start."""
        spec, params = pspec.spec, self.applier.params
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(
                    _traced(
                        "download_preload_extensions",
                        self.remote_ext.prepare_for_start(spec, self.state.metrics),
                    )
                )
                group.create_task(
                    _traced(
                        "prepare_pgdata",
                        prepare_pgdata(pspec, self.applier.prepare_options, self.state.metrics),
                    )
                )
                if spec.swap_size_bytes is not None and params.resize_swap_on_bind:
                    group.create_task(vm_tools.resize_swap(self.vm_tools, spec.swap_size_bytes))
                quota_dir = params.set_disk_quota_for_fs
                if spec.disk_quota_bytes is not None and quota_dir:
                    group.create_task(
                        vm_tools.set_disk_quota(self.vm_tools, spec.disk_quota_bytes, quota_dir)
                    )
        except ExceptionGroup as failed:
            first = failed.exceptions[0]
            raise first from first.__cause__  # its own cause chain, not the group

    async def start_cert_watcher(self) -> None:
        """With `compute_ctl_config.tls`: wait (bounded) for the certificate, then watch it."""
        tls_config = self.applier.tls_files
        if tls_config is None:
            return
        cert_path = Path(tls_config.cert_path)
        digest = await tls.wait_for_cert(cert_path)
        self.applier.tasks.spawn(tls.watch_cert(self.state, cert_path, digest), "tls-cert-watcher")


async def _traced(name: str, work: Awaitable[None]) -> None:
    with tracing.span(name):
        await work


def lakebase_env(params: Params, pspec: ParsedSpec) -> dict[str, str]:
    """The Databricks variables of Postgres' environment (lakebase mode)."""
    settings = pspec.spec.databricks_settings
    try:
        env = databricks_env(
            instance_id=params.instance_id,
            compute_id=params.compute_id,
            workspace_host=settings.databricks_workspace_host if settings else None,
        )
    except ValueError as exc:
        raise ComputeError(str(exc)) from None
    log.info("Starting Postgres for databricks endpoint id: %s", env[DATABRICKS_ENDPOINT_ID_ENV])
    return env


async def prewarm_vm_memory(params: Params, neon_available: bool, log_out: TextIO | None) -> None:
    """Before the ports open, when there is no spec yet (see compute/vm_prewarm.py). The
    scratch cluster preloads neon as upstream's does, so a server without the neon library
    skips it; a failure ends the process (exit 1), as upstream."""
    if not neon_available:
        log.info("VM memory prewarm skipped: the neon extension is not installed")
        return
    from compute_ctl.compute import vm_prewarm  # noqa: PLC0415

    await vm_prewarm.prewarm_vm_memory(
        Path(params.pgbin), params.pgdata, argv_prefix=params.cgroup_prefix, log_out=log_out
    )


def _preload() -> None:
    importlib.import_module(CATALOG_MODULE)
    import_storage_clients()
    # A /configure arriving meanwhile builds the same validator itself: either is kept.
    ConfigurationRequest.model_rebuild()


async def preload_while_empty() -> None:
    """An empty compute (a fleet's pre-started pool) prepares what start-up needs next while
    it waits for `/configure`, in a worker thread, so the start a user waits for pays none of
    it: the catalog code, the storage clients, and the validator of the `/configure` body
    (the spec models build theirs on first use; see spec/models.py). With
    `COMPUTE_CTL_GRPC_CHILD_WHILE_EMPTY=1` also a gRPC basebackup child, ready for its request
    (storage/grpc_child.py)."""
    started = time.monotonic()
    await asyncio.to_thread(_preload)
    from compute_ctl.storage import grpc_child  # noqa: PLC0415 - loaded by _preload

    if grpc_child.spare_wanted(os.environ):
        await grpc_child.start_spare()
    log.debug("start-up code preloaded in %.0f ms", (time.monotonic() - started) * 1000)


async def discard_preloaded() -> None:
    """An empty compute that ends without a spec stops the child it kept ready, if any."""
    from compute_ctl.storage.grpc_child import discard_spare  # noqa: PLC0415 - see above

    await discard_spare()
