"""VM memory prewarm: a throwaway Postgres started once by a compute that has no spec yet.

A compute waiting in a pool for its first `/configure` runs in a VM whose memory the hypervisor
hands out on first touch. Upstream starts a scratch cluster with 512 MiB of shared buffers (and
the neon library preloaded, as the real one will be) and stops it at once, so that the real
start later does not pay for faulting that memory in. It runs before the HTTP ports open.

The scratch cluster lives beside PGDATA (`<pgdata>.warmup`), listens on port 51055 (nobody
should connect), and is removed afterwards. SIGQUIT stops it immediately without leaving
orphans behind while its directory is deleted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import TextIO

from compute_ctl.errors import ComputeError
from compute_ctl.postgres.process import spawn_postgres, wait_until_ready
from compute_ctl.subprocesses import DEVNULL, run_bounded

log = logging.getLogger(__name__)

WARMUP_SUFFIX = ".warmup"
WARMUP_CONF_LINES = ("shared_buffers=65536", "port=51055")
NEON_PRELOAD_LINE = "shared_preload_libraries = 'neon'"
INITDB_TIMEOUT = 120.0
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def warmup_dir(pgdata: Path) -> Path:
    return pgdata.with_name(pgdata.name + WARMUP_SUFFIX)


async def prewarm_vm_memory(
    pgbin: Path,
    pgdata: Path,
    *,
    preload_neon: bool = True,
    argv_prefix: tuple[str, ...] = (),
    log_out: TextIO | None = None,
) -> None:
    """Create, start and immediately stop a scratch cluster; ComputeError if it cannot be.
    `preload_neon` False leaves out the neon library (a server without it)."""
    log.info("prewarming VM memory")
    directory = warmup_dir(pgdata)
    await asyncio.to_thread(_fresh_dir, directory)
    try:
        log.info("running initdb")
        initdb = [str(pgbin.parent / "initdb"), "--pgdata", str(directory)]
        try:
            await run_bounded(initdb, INITDB_TIMEOUT, stdout=DEVNULL, stderr=DEVNULL)
        except TimeoutError:
            raise ComputeError(f"initdb did not finish in {INITDB_TIMEOUT:.0f} s") from None
        lines = [*WARMUP_CONF_LINES, *([NEON_PRELOAD_LINE] if preload_neon else [])]
        (directory / "postgresql.conf").write_text("\n".join(lines) + "\n")

        log.info("starting postgres")
        pg = await spawn_postgres(
            pgbin, directory, env=dict(os.environ), argv_prefix=argv_prefix, log_out=log_out
        )
        try:
            log.info("waiting for postgres")
            await wait_until_ready(pg, READY_TIMEOUT)
        finally:
            await pg.stop(signal.SIGQUIT, STOP_TIMEOUT)
            log.info("sent SIGQUIT signal")
        log.info("done prewarming vm memory")
    except OSError as exc:
        raise ComputeError(f"VM memory prewarm failed: {exc}") from None
    finally:
        await asyncio.to_thread(shutil.rmtree, directory, True)


def _fresh_dir(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700)
    directory.chmod(0o700)
