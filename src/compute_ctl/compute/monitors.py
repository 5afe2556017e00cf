"""What watches a running compute: the activity monitor, the vm-monitor (autoscaling VMs
only) and the installed-extensions scans. Started once the compute runs, stopped when Postgres
exits or the process ends."""

from __future__ import annotations

import asyncio

from compute_ctl.compute.activity_monitor import ComputeMonitor
from compute_ctl.compute.extensions_stats import ExtensionStats
from compute_ctl.metrics import PromMetrics
from compute_ctl.params import Params
from compute_ctl.spec.models import ComputeFeature
from compute_ctl.spec.resolve import ParsedSpec
from compute_ctl.state import ComputeState


class Monitors:
    def __init__(
        self, state: ComputeState, params: Params, prom: PromMetrics, ext_stats: ExtensionStats
    ) -> None:
        self.state = state
        self.params = params
        self.prom = prom
        self.ext_stats = ext_stats
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, pspec: ParsedSpec) -> None:
        """After a successful start: the activity monitor, the vm-monitor (autoscaling VMs
        only, serving the autoscaler-agent until Postgres exits) and the extension scans."""
        monitor = ComputeMonitor(
            self.state,
            self.params.connstr,
            self.prom,
            experimental=pspec.spec.has_feature(ComputeFeature.ACTIVITY_MONITOR_EXPERIMENTAL),
        )
        self._tasks.append(asyncio.create_task(monitor.run(), name="compute-monitor"))
        if self.params.autoscaling:
            from compute_ctl.vm_monitor import run_vm_monitor  # noqa: PLC0415 - VMs only

            vm_monitor = run_vm_monitor(
                self.params.vm_monitor_addr,
                self.params.cgroup,
                self.params.filecache_connstr,
                disable_lfc_resizing=bool(pspec.spec.disable_lfc_resizing),
            )
            self._tasks.append(asyncio.create_task(vm_monitor, name="vm-monitor"))
        if pspec.spec.mode.is_primary:
            self.ext_stats.scan_in_background()
        self.ext_stats.start_periodic()

    async def stop(self) -> None:
        """Postgres has exited (or the process is ending): stop watching it."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
