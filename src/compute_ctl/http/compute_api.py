"""What the HTTP layer may ask of the compute.

Routes never see the lifecycle's coordinator: they are handed an object with this shape (the
compute node satisfies it structurally), so the HTTP layer depends only on the shared state,
the features it serves and this list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from compute_ctl.lfc import Lfc
    from compute_ctl.metrics import PromMetrics
    from compute_ctl.params import Params
    from compute_ctl.remote_ext.manager import RemoteExtensions
    from compute_ctl.spec.resolve import ParsedSpec
    from compute_ctl.spec.responses import PromoteState
    from compute_ctl.spec.types import Lsn
    from compute_ctl.state import ComputeState


class ComputeApi(Protocol):
    @property
    def params(self) -> Params:
        """The command line: the local Postgres' connection string, PGDATA, the binaries."""

    @property
    def state(self) -> ComputeState:
        """The status, spec and start-up metrics; status changes go through its operations."""

    @property
    def prom(self) -> PromMetrics:
        """The Prometheus registry `/metrics` renders."""

    @property
    def lfc(self) -> Lfc:
        """LFC prewarm and offload."""

    @property
    def remote_ext(self) -> RemoteExtensions:
        """Remote extension downloads (`/extension_server`)."""

    def forward_termination(self, *, dev: bool) -> None:
        """Stop the sidecars and ask Postgres for a fast shutdown."""

    def exit_after(self, seconds: float, code: int) -> None:
        """End the process with `code` that long from now (there is no Postgres to stop)."""

    async def signal_refresh(self) -> None:
        """Ask the configurator to fetch the spec again (ComputeError when not allowed)."""

    async def promote(self, pspec: ParsedSpec, wal_flush_lsn: Lsn) -> PromoteState:
        """Promote this replica (one promotion per compute; later calls get its outcome)."""
