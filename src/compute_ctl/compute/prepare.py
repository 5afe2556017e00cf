"""Building PGDATA for a fresh start: wipe, configure, find the LSN, fetch the basebackup, touch
the files Postgres needs. Every start is a fresh start; nothing of a previous run is trusted.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from compute_ctl import progress, tracing
from compute_ctl.errors import ComputeError, StorageError
from compute_ctl.postgres.conf import (
    PG_HBA_MD5_LINE,
    ConfOptions,
    line_in_file_path,
    render_postgresql_conf,
)
from compute_ctl.spec.models import DatabricksSettings, TlsConfig
from compute_ctl.spec.resolve import ParsedSpec
from compute_ctl.spec.types import Lsn
from compute_ctl.state import ComputeMetrics
from compute_ctl.storage.retry import basebackup_retry_policy
from compute_ctl.storage.signal_files import fixup_signal_files
from compute_ctl.tls import install_tls_files, tls_active

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareOptions:
    pgdata: Path
    postgres: Path
    privileged_role_name: str
    internal_http_port: int
    tls: TlsConfig | None
    neon_available: bool
    cgroup_prefix: tuple[str, ...] = ()
    """`Params.cgroup_prefix`: sync-safekeepers runs in Postgres' cgroup in a VM."""
    lakebase: bool = False
    lakebase_port: int | None = None  # the port of --connstr, in lakebase mode


def overcommit_never() -> bool:
    """Linux's strict overcommit (mode 2) breaks POSIX shared memory sizing in Postgres."""
    try:
        return Path("/proc/sys/vm/overcommit_memory").read_text().strip() == "2"
    except OSError:
        return False


def conf_options(opts: PrepareOptions) -> ConfOptions:
    return ConfOptions(
        privileged_role_name=opts.privileged_role_name,
        extension_server_port=opts.internal_http_port,
        tls=opts.tls,
        overcommit_never=overcommit_never(),
        lakebase_port=opts.lakebase_port if opts.lakebase else None,
    )


def write_postgresql_conf(pspec: ParsedSpec, opts: PrepareOptions) -> None:
    text = render_postgresql_conf(pspec.spec, conf_options(opts), pspec.postgres_pageservers)
    (opts.pgdata / "postgresql.conf").write_text(text)


def recreate_pgdata(pgdata: Path, *, lakebase: bool = False) -> None:
    """Remove PGDATA whatever it holds and make it again, empty, mode 0700.

    In lakebase mode PGDATA may be mounted ahead of time: the mount point itself cannot be
    removed, only its contents, and failing to create it again is tolerated, as upstream
    (anything else wrong with it makes Postgres' start fail)."""
    shutil.rmtree(pgdata, ignore_errors=True)
    try:
        pgdata.mkdir(mode=0o700)
    except OSError as exc:
        if not lakebase:
            raise ComputeError(f"could not create data directory {pgdata}: {exc.strerror}") from exc
        log.info("data directory %s kept (%s): it may be mounted", pgdata, exc.strerror)
    try:
        os.chmod(pgdata, 0o700)
    except OSError as exc:
        raise ComputeError(f"could not set the mode of {pgdata}: {exc.strerror}") from exc


async def basebackup_lsn(
    pspec: ParsedSpec,
    opts: PrepareOptions,
    metrics: ComputeMetrics,
    *,
    per_sk_timeout: float | None = None,
) -> Lsn | None:
    """The LSN to fetch at: the safekeepers' commit LSN for a primary (asked, else agreed by
    `postgres --sync-safekeepers`), the pinned LSN for a static compute, latest (None) for a
    replica. An LSN of 0/0 always means latest. `per_sk_timeout` overrides the fast path's
    budget per safekeeper (tests on a loaded machine)."""
    # The storage clients (psycopg, grpc) load here, not at process start: /status must
    # answer as early as possible.
    from compute_ctl.storage.safekeepers import (  # noqa: PLC0415
        PER_SAFEKEEPER_TIMEOUT,
        check_already_synced,
        sync_safekeepers,
    )

    mode = pspec.spec.mode
    if mode.kind == "static":
        return mode.lsn or None  # 0/0 means "latest"
    if mode.kind == "replica":
        return None
    started = time.monotonic()
    with tracing.span("check_safekeepers_synced"):
        synced = await check_already_synced(
            list(pspec.safekeeper_connstrings),
            pspec.tenant_id,
            pspec.timeline_id,
            pspec.storage_auth_token,
            PER_SAFEKEEPER_TIMEOUT if per_sk_timeout is None else per_sk_timeout,
        )
    metrics.sync_sk_check_ms = int((time.monotonic() - started) * 1000)
    if synced is not None:
        return synced if synced else None
    if not opts.neon_available:
        log.info(
            "postgres --sync-safekeepers is unavailable (no neon extension): "
            "fetching the basebackup at the latest LSN"
        )
        return None
    started = time.monotonic()
    try:
        with (
            tracing.span("sync_safekeepers") as current,
            progress.still_running(log, "syncing safekeepers: postgres --sync-safekeepers runs"),
        ):
            lsn = await sync_safekeepers(
                opts.postgres,
                opts.pgdata,
                pspec.storage_auth_token,
                argv_prefix=opts.cgroup_prefix,
            )
            current.set_attribute("lsn", str(lsn))
    except StorageError as exc:
        raise ComputeError("failed to sync safekeepers") from exc
    metrics.sync_safekeepers_ms = int((time.monotonic() - started) * 1000)
    return lsn if lsn else None


def import_storage_clients() -> None:
    """psycopg (safekeepers, libpq pageserver); never grpc, which a gRPC basebackup loads in a
    child process of its own (`storage/grpc_child.py`)."""
    for name in ("basebackup", "pageserver", "libpq", "safekeepers", "grpc_child"):
        importlib.import_module(f"compute_ctl.storage.{name}")


def copy_databricks_tls_files(settings: DatabricksSettings, pgdata: Path) -> None:
    """The certificate and key of `databricks_settings` into PGDATA under their own names (the
    secret mount does not give them the owner and mode Postgres needs); a file already there
    is kept; the key gets mode 0600."""
    tls = settings.pg_compute_tls_settings
    for source_name in (tls.cert_file, tls.key_file):
        source = Path(source_name)
        target = pgdata / source.name
        try:
            if not target.exists():
                shutil.copyfile(source, target)
                log.info("Copying tls file: %s to %s", source, target)
            if source_name == tls.key_file:
                os.chmod(target, 0o600)
        except OSError as exc:
            raise ComputeError(
                f"databricks_settings.pg_compute_tls_settings: cannot copy {source} into "
                f"PGDATA: {exc.strerror}"
            ) from exc


def databricks_include(path: str) -> str:
    """The line ensured in pg_hba.conf / pg_ident.conf; upstream's carries a newline of its
    own, so it never matches a line of the file and is appended at every start."""
    return f"include_if_exists {path}\n"


def finish_pgdata(pspec: ParsedSpec, pgdata: Path) -> None:
    """The touches after the basebackup: `databricks_settings` (TLS files and the includes,
    whenever the field is present, before the md5 line: the first matching pg_hba rule wins),
    signal file, pg_hba, dynamic shared memory, standby."""
    fixup_signal_files(pgdata)
    databricks = pspec.spec.databricks_settings
    if databricks is not None:
        copy_databricks_tls_files(databricks, pgdata)
        line_in_file_path(pgdata / "pg_hba.conf", databricks_include(databricks.databricks_pg_hba))
        line_in_file_path(
            pgdata / "pg_ident.conf", databricks_include(databricks.databricks_pg_ident)
        )
    line_in_file_path(pgdata / "pg_hba.conf", PG_HBA_MD5_LINE)
    dynshmem = pgdata / "pg_dynshmem"
    try:
        shutil.rmtree(dynshmem)
    except OSError as exc:
        raise ComputeError(f"failed to remove {dynshmem}: {exc.strerror}") from exc
    os.symlink("/dev/shm/", dynshmem)  # noqa: S108 - upstream points it at shared memory
    if not pspec.spec.mode.is_primary:
        (pgdata / "standby.signal").touch(exist_ok=True)


async def prepare_pgdata(pspec: ParsedSpec, opts: PrepareOptions, metrics: ComputeMetrics) -> None:
    from compute_ctl.storage.pageserver import pageserver_client  # noqa: PLC0415 - see below

    client = pageserver_client(pspec)
    # Over gRPC the basebackup's child process starts now and loads grpcio while PGDATA is
    # made and the LSN found (`storage/grpc_child.py`); over libpq this does nothing.
    async with client.started_ahead():
        # Removing a large leftover PGDATA takes a while: not on the event loop.
        await asyncio.to_thread(recreate_pgdata, opts.pgdata, lakebase=opts.lakebase)
        with tracing.span("config"):
            write_postgresql_conf(pspec, opts)
        # A worker thread imports the storage clients (psycopg: tens of milliseconds), so
        # that the event loop keeps answering HTTP meanwhile.
        await asyncio.to_thread(import_storage_clients)
        from compute_ctl.storage.basebackup import get_basebackup  # noqa: PLC0415 - see above

        lsn = await basebackup_lsn(pspec, opts, metrics)
        with tracing.span("get_basebackup", lsn=str(lsn or Lsn(0))) as current:
            current.set_attribute("protocol", pspec.protocol.value)
            stats = await get_basebackup(client, lsn, opts.pgdata, policy=basebackup_retry_policy())
            current.set_attribute("bytes", stats.compressed_bytes)
    metrics.pageserver_connect_micros = stats.connect_micros
    metrics.basebackup_bytes = stats.compressed_bytes
    metrics.basebackup_ms = stats.duration_ms
    await asyncio.to_thread(finish_pgdata, pspec, opts.pgdata)
    tls = tls_active(pspec.spec, opts.tls)
    if tls is not None:  # `ssl = on` in postgresql.conf: Postgres needs the files to start
        await install_tls_files(opts.pgdata, tls)
