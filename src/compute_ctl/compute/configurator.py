"""The configurator: what happens to a running compute after its start (§6.2).

Two kinds of work reach a compute that is already running: a spec delivered by `/configure`
(status `configuration_pending`) and a `/refresh_configuration` request, which makes the compute
fetch its spec again from where it came from (the control plane, or the re-read config file) and
apply it only when the pageserver connection info changed. One task takes both up, one at a
time, so two specs are never applied at once; this module is that task and the refresh logic,
kept apart from the start-up and shutdown code in `node.py`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from compute_ctl.control_plane import RPC, fetch_config_async
from compute_ctl.errors import ComputeError, chain_text
from compute_ctl.spec.load import load_compute_config, load_compute_spec
from compute_ctl.spec.models import ComputeSpec
from compute_ctl.spec.resolve import resolve
from compute_ctl.state import ComputeStatus

if TYPE_CHECKING:
    from compute_ctl.compute.node import ComputeNode

log = logging.getLogger(__name__)

REFRESH_RETRY_DELAY = 5.0
"""Seconds a failed or no-op refresh waits before the configurator takes up more work."""


class Configurator:
    """Applies delivered specs and refresh requests to a running compute, one at a time."""

    def __init__(self, node: ComputeNode) -> None:
        self.node = node
        # /refresh_configuration calls, and how many of them the configurator has taken up.
        self.refresh_requests = 0
        self._refresh_handled = 0

    def _has_work(self) -> bool:
        status = self.node.state.status
        return status is ComputeStatus.CONFIGURATION_PENDING or (
            status is ComputeStatus.REFRESH_CONFIGURATION_PENDING
            and self.refresh_requests > self._refresh_handled
        )

    async def run(self) -> None:
        """Apply specs delivered to a running compute and refresh requests (§6.2).

        Unless work is already waiting, it waits for the next status change and then looks at
        the status: a pending configuration or refresh is taken up; `failed`, termination or
        anything else after a wake-up ends the task or is ignored. A refresh that failed leaves
        `refresh_configuration_pending`, retried on the next /refresh_configuration.
        """
        state = self.node.state
        while True:
            async with state.condition:
                if not self._has_work():
                    await state.condition.wait()
                status = state.status
                if status is ComputeStatus.CONFIGURATION_PENDING:
                    state.set_locked(ComputeStatus.CONFIGURATION)
                elif status is ComputeStatus.REFRESH_CONFIGURATION_PENDING:
                    self._refresh_handled = self.refresh_requests
                    state.set_locked(ComputeStatus.REFRESH_CONFIGURATION)
                elif status is ComputeStatus.FAILED or status.is_termination_pending:
                    return
                else:
                    continue
                pspec = state.pspec
            if status is ComputeStatus.REFRESH_CONFIGURATION_PENDING:
                await self.refresh()
                continue
            assert pspec is not None
            try:
                await self.node.reconfigure(pspec)
            except Exception as exc:
                log.error("could not apply the new spec: %s", chain_text(exc))
                await state.set_status(ComputeStatus.FAILED)
                continue
            await state.set_status(ComputeStatus.RUNNING)

    async def signal_refresh(self) -> None:
        """Ask the configurator to pull the config again. A no-op while starting; refused
        (ComputeError) unless running, failed or already pending."""
        state = self.node.state
        async with state.condition:
            status = state.status
            if status is ComputeStatus.INIT:
                return
            if status not in (
                ComputeStatus.RUNNING,
                ComputeStatus.FAILED,
                ComputeStatus.REFRESH_CONFIGURATION_PENDING,
            ):
                raise ComputeError(
                    f"Cannot refresh compute configuration in state {status.variant}"
                )
            self.refresh_requests += 1
            state.set_locked(ComputeStatus.REFRESH_CONFIGURATION_PENDING)

    def count_cplane_request(self, http_status: str) -> None:
        self.node.prom.cplane_requests.labels(rpc=RPC, http_status=http_status).inc()

    async def obtain_spec(self) -> ComputeSpec | None:
        """The spec as its source says now: the re-read file or the control plane."""
        params = self.node.params
        if params.control_plane_uri is not None and params.compute_id is not None:
            reply = await fetch_config_async(
                params.control_plane_uri, params.compute_id, on_attempt=self.count_cplane_request
            )
            return reply.spec
        for path, loader in (
            (params.config_path, lambda data: load_compute_config(data).spec),
            (params.spec_path, load_compute_spec),
        ):
            if path is not None:
                try:
                    data = await asyncio.to_thread(path.read_bytes)
                except OSError as exc:
                    raise ComputeError(f"could not read {path}: {exc.strerror}") from None
                spec: ComputeSpec | None = loader(data)
                return spec
        raise ComputeError("neither --config nor --control-plane-uri is given")

    async def refresh(self) -> None:
        """One refresh (status `refresh_configuration`): fetch, compare, apply."""
        state = self.node.state
        try:
            spec = await self.obtain_spec()
            pspec = resolve(spec) if spec is not None else None
        except Exception as exc:  # whatever the fetch raised, the refresh goes back to pending
            text = exc.one_line() if isinstance(exc, ComputeError) else repr(exc)
            log.error("could not parse spec: %s", text)
            await asyncio.sleep(REFRESH_RETRY_DELAY)
            await state.set_status(ComputeStatus.REFRESH_CONFIGURATION_PENDING)
            return
        if pspec is None:
            log.error("the refreshed compute config has no spec (compute is empty): exiting")
            await self.node.exit_now(1)
            return
        current = state.pspec
        if current is not None and pspec.pageserver_conninfo == current.pageserver_conninfo:
            log.info("refresh: the pageserver connection info is unchanged, nothing to apply")
            await state.set_status(ComputeStatus.RUNNING)
            await asyncio.sleep(REFRESH_RETRY_DELAY)
            return
        state.pspec = pspec
        try:
            await self.node.reconfigure(pspec)
        except Exception as exc:
            log.error("could not apply the refreshed spec: %s", chain_text(exc))
            await state.set_status(ComputeStatus.REFRESH_CONFIGURATION_PENDING)
            return
        log.info("refresh: the new spec is applied")
        await state.set_status(ComputeStatus.RUNNING)
