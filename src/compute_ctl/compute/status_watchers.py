"""Who hears of every status change: the `compute_ctl_status` metric, lakebase's
`pg_cctl_attached`, and systemd (`STATUS=`/`READY=1`, when run as a `Type=notify` unit)."""

from __future__ import annotations

import os

from compute_ctl import sd_notify
from compute_ctl.compute.lakebase import track_attached
from compute_ctl.metrics import PromMetrics
from compute_ctl.params import Params
from compute_ctl.state import ComputeState


def watch_status(state: ComputeState, params: Params, prom: PromMetrics) -> None:
    prom.set_status(state.status)
    state.listeners.append(prom.set_status)
    if params.lakebase_mode:
        track_attached(state, params, prom)
    state.listeners.extend(sd_notify.listeners(os.environ))  # under systemd
