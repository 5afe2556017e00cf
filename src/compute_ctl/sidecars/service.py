"""What the compute's lifecycle asks of pgbouncer and local_proxy, in upstream's places:

- at start and on every re-configure, in the background (errors only logged): tune pgbouncer
  and write local_proxy's configuration;
- at the first configuration of a primary, synchronously (an error fails the start): write
  local_proxy's configuration again;
- on termination (unless `--dev` with a signal): SIGKILL pgbouncer, SIGTERM local_proxy.

Background pgbouncer tunings run one at a time, in the order they were asked for, so an older
spec can never overwrite a newer one's settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from compute_ctl.errors import ComputeError, chain_text
from compute_ctl.sidecars.local_proxy import configure_local_proxy
from compute_ctl.sidecars.locations import SidecarLocations
from compute_ctl.sidecars.pidfile import process_name, read_pid_file, send_signal
from compute_ctl.spec.models import ComputeSpec, TlsConfig

log = logging.getLogger(__name__)

PGBOUNCER_NAME = "pgbouncer"

Spawn = Callable[[Awaitable[None], str], object]


def _problem(exc: BaseException) -> str:
    return exc.one_line() if isinstance(exc, ComputeError) else chain_text(exc)


class Sidecars:
    def __init__(self, locations: SidecarLocations) -> None:
        self.locations = locations
        self._tuning = asyncio.Lock()

    # ----------------------------------------------------------------------------------------
    # Configuration

    def configure_in_background(
        self, spec: ComputeSpec, tls: TlsConfig | None, spawn: Spawn
    ) -> None:
        """Start tuning pgbouncer and configuring local_proxy, if the spec asks for them."""
        if spec.pgbouncer_settings is not None:
            log.info("tuning pgbouncer")
            spawn(self._tune_logged(dict(spec.pgbouncer_settings), tls), "pgbouncer-tuning")
        if spec.local_proxy_config is not None:
            spawn(self._local_proxy_logged(spec, tls), "local-proxy-config")

    async def configure_local_proxy(self, spec: ComputeSpec, tls: TlsConfig | None) -> None:
        """The synchronous configuration; LocalProxyError on failure."""
        if spec.local_proxy_config is None:
            return
        log.info("configuring local_proxy")
        await asyncio.to_thread(configure_local_proxy, spec.local_proxy_config, tls, self.locations)

    async def _tune_logged(self, settings: dict[str, str], tls: TlsConfig | None) -> None:
        # psycopg is imported here, off the start-up path to the HTTP listeners.
        from compute_ctl.sidecars.pgbouncer import tune_pgbouncer  # noqa: PLC0415

        async with self._tuning:
            try:
                await tune_pgbouncer(settings, tls, self.locations)
            except Exception as exc:
                log.error("error while tuning pgbouncer: %s", _problem(exc))

    async def _local_proxy_logged(self, spec: ComputeSpec, tls: TlsConfig | None) -> None:
        try:
            await self.configure_local_proxy(spec, tls)
        except Exception as exc:
            log.error("error while configuring local_proxy: %s", _problem(exc))

    # ----------------------------------------------------------------------------------------
    # Termination

    def stop(self, *, dev: bool) -> None:
        """SIGKILL pgbouncer and SIGTERM local_proxy (nothing in dev mode). Never raises."""
        if dev:
            log.info("not stopping pgbouncer and local_proxy: dev mode")
            return
        with contextlib.suppress(Exception):
            self._kill_pgbouncer()
        with contextlib.suppress(Exception):
            self._terminate_local_proxy()

    def _kill_pgbouncer(self) -> None:
        # pgbouncer does not lock its pid file: whether locked or not, the pid is used.
        pid_file = read_pid_file(self.locations.pgbouncer_pid_file)
        if not pid_file.exists:
            log.info("pgbouncer pid file %s not found: pgbouncer is not running", pid_file.path)
            return
        if pid_file.pid is None:
            log.error("pgbouncer pid file %s %s: not signalled", pid_file.path, pid_file.problem)
            return
        pid = pid_file.pid
        try:
            name = process_name(pid)
        except FileNotFoundError:
            log.info("pgbouncer (pid %d from %s) is not running", pid, pid_file.path)
            return
        if name is not None and name != PGBOUNCER_NAME:
            log.error(
                "pid %d from %s is not pgbouncer but %r (a stale pid file): not signalled",
                pid,
                pid_file.path,
                name,
            )
            return
        send_signal("pgbouncer", pid, signal.SIGKILL)

    def _terminate_local_proxy(self) -> None:
        pid_file = read_pid_file(self.locations.local_proxy_pid_file)
        if not pid_file.exists:
            log.info("local_proxy pid file %s not found: local_proxy is not running", pid_file.path)
        elif not pid_file.locked:
            log.info(
                "local_proxy pid file %s is not locked: local_proxy is not running", pid_file.path
            )
        elif pid_file.pid is None:
            log.error("local_proxy pid file %s %s: not signalled", pid_file.path, pid_file.problem)
        else:
            send_signal("local_proxy", pid_file.pid, signal.SIGTERM)
