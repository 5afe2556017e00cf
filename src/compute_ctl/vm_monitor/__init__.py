"""The vm-monitor: compute_ctl's side of autoscaling on a Neon VM.

Started after a successful start-up when `AUTOSCALING` is set, stopped when Postgres exits. It
serves the autoscaler-agent over a websocket (`GET /monitor`), agrees to or refuses downscaling,
sizes the file cache to the memory the VM has, and asks for more memory under pressure.
"""

from __future__ import annotations

import asyncio
import logging

from compute_ctl.vm_monitor.server import VmMonitor, bind
from compute_ctl.vm_monitor.session import MonitorSettings

__all__ = ["MonitorSettings", "VmMonitor", "run_vm_monitor"]

log = logging.getLogger(__name__)


async def run_vm_monitor(
    addr: str,
    cgroup: str | None,
    filecache_connstr: str,
    *,
    disable_lfc_resizing: bool,
    stop: asyncio.Event | None = None,
    settings: MonitorSettings | None = None,
) -> None:
    """Serve the agent on `addr` until `stop` is set or the task is cancelled.

    `disable_lfc_resizing` (from the spec) leaves the file cache alone: then no Postgres
    connection is made at all. A listen failure is logged and ends the monitor, never the
    compute.
    """
    try:
        sock = bind(addr)
    except (OSError, ValueError) as exc:
        log.error("vm-monitor: failed to bind to %s: %s", addr, exc)
        return
    log.info(
        "vm-monitor listening on %s (cgroup %s, file cache resizing %s)",
        addr,
        cgroup,
        "disabled" if disable_lfc_resizing else "enabled",
    )
    monitor = VmMonitor(
        cgroup=cgroup,
        filecache_connstr=None if disable_lfc_resizing else filecache_connstr,
        settings=settings,
    )
    await monitor.serve(sock, stop)
