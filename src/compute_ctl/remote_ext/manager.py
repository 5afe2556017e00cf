"""A compute's remote extensions: the start-up step and de-duplicated downloads.

One `RemoteExtensions` per compute. An archive is downloaded at most once at a time: the
first request starts a download task and every request for the same archive (the first one
included) awaits that task, shielded, so a client that goes away neither cancels the
download nor leaves half-installed files. An archive installed successfully is never fetched
again (later requests succeed at once); after a failure the next request tries again, while
the requests that were waiting get the same error. No polling: waiters are woken by the task.

At start-up (`prepare_for_start`), when the spec has `remote_extensions`: the allowed
extensions' control files are written (also without a gateway), then, with a gateway, the
archives of the preload libraries are downloaded concurrently. A library that cannot be
resolved fails the start; a failed download is only logged (Postgres reports the missing
library itself if it matters). The timings and sizes go to `/metrics.json`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from functools import partial
from pathlib import Path

from prometheus_client import Counter as PromCounter

from compute_ctl.errors import chain_text
from compute_ctl.metrics import PromMetrics
from compute_ctl.remote_ext.errors import DownloadError
from compute_ctl.remote_ext.index import RemoteArchive, preload_libraries, resolve_archive
from compute_ctl.remote_ext.install import PgInstall, query_pg_install, write_control_files
from compute_ctl.spec.models import ComputeSpec, RemoteExtSpec
from compute_ctl.state import ComputeMetrics

log = logging.getLogger(__name__)

NOT_CONFIGURED = "remote storage is not configured"


class RemoteExtensions:
    def __init__(
        self, pg_bindir: Path, base_url: str | None, prom: PromMetrics, build_tag: str
    ) -> None:
        self.pg_bindir = pg_bindir
        self.base_url = base_url
        self.build_tag = build_tag
        self._prom = prom
        self._install: PgInstall | None = None
        self._install_lock = asyncio.Lock()
        self._done: set[str] = set()
        self._inflight: dict[str, asyncio.Task[int]] = {}
        self._waiting: Counter[str] = Counter()

    @property
    def configured(self) -> bool:
        """Whether a gateway is known (`--remote-ext-base-url`)."""
        return self.base_url is not None

    def waiting(self, archive_name: str) -> int:
        """How many requests are awaiting the download of this archive now."""
        return self._waiting[archive_name]

    async def pg_install(self) -> PgInstall:
        """The installation's directories and version (asked of `pg_config` once)."""
        async with self._install_lock:
            if self._install is None:
                self._install = await query_pg_install(self.pg_bindir)
            return self._install

    async def resolve(self, remote: RemoteExtSpec, name: str, *, is_library: bool) -> RemoteArchive:
        """The archive for an extension or library name (ExtensionNotFoundError if none)."""
        install = await self.pg_install()
        return resolve_archive(
            remote,
            name,
            is_library=is_library,
            build_tag=self.build_tag,
            pg_major=install.pg_major,
        )

    async def download(self, archive: RemoteArchive) -> int:
        """Install `archive` unless it already is; returns the bytes this call downloaded
        (0 when it was installed before or another request downloaded it)."""
        if self.base_url is None:
            raise DownloadError(NOT_CONFIGURED)
        key = archive.name
        install = await self.pg_install()
        if key in self._done:
            log.info("extension archive %s is already installed", key)
            return 0
        task = self._inflight.get(key)
        first = task is None
        if task is None:
            # The HTTP client, zstd and the tar reader stay off the start-up path.
            from compute_ctl.remote_ext.fetch import fetch_and_install  # noqa: PLC0415

            counter = self._prom.remote_ext_requests
            count = partial(_count, counter, key)
            task = asyncio.create_task(
                asyncio.to_thread(fetch_and_install, self.base_url, archive, install, count),
                name=f"extension-download-{key}",
            )
            self._inflight[key] = task
            task.add_done_callback(partial(self._settled, key))
        else:
            log.info("extension archive %s is being downloaded: waiting for it", key)
        self._waiting[key] += 1
        try:
            size = await asyncio.shield(task)
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
        return size if first else 0

    def _settled(self, key: str, task: asyncio.Task[int]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled() and task.exception() is None:
            self._done.add(key)

    async def prepare_for_start(self, spec: ComputeSpec, metrics: ComputeMetrics) -> None:
        """The start-up step (see the module docstring); a no-op without `remote_extensions`."""
        remote = spec.remote_extensions
        if remote is None:
            return
        install = await self.pg_install()
        written = await asyncio.to_thread(write_control_files, remote, install.extension_dir)
        log.info("remote extensions: %d control files written", written)
        started = time.monotonic()
        if self.base_url is None:
            metrics.load_ext_ms = 0
            metrics.num_ext_downloaded = 0
            metrics.largest_ext_size = 0
            metrics.total_ext_download_size = 0
            return
        libraries = preload_libraries(spec.cluster, remote)
        log.info("downloading the preload libraries %s", libraries)
        archives = [await self.resolve(remote, name, is_library=True) for name in libraries]
        results = await asyncio.gather(
            *(self.download(archive) for archive in archives), return_exceptions=True
        )
        downloaded = largest = total = 0
        for archive, result in zip(archives, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                log.error("failed to download extension %s: %s", archive.name, chain_text(result))
                continue
            downloaded += 1
            largest = max(largest, result)
            total += result
        metrics.load_ext_ms = int((time.monotonic() - started) * 1000)
        metrics.num_ext_downloaded = downloaded
        metrics.largest_ext_size = largest
        metrics.total_ext_download_size = total
        log.info(
            "preload libraries loaded in %d ms: %d archives, %d bytes (largest %d)",
            metrics.load_ext_ms,
            downloaded,
            total,
            largest,
        )


def _count(counter: PromCounter, filename: str, http_status: str) -> None:
    counter.labels(http_status=http_status, filename=filename).inc()
