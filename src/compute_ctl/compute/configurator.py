"""The configurator: what happens to a running compute after its start .

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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from compute_ctl import tracing
from compute_ctl.control_plane import RPC, fetch_config_async
from compute_ctl.errors import ComputeError, chain_text
from compute_ctl.spec.load import load_compute_config, load_compute_spec
from compute_ctl.spec.models import ComputeSpec
from compute_ctl.spec.resolve import ParsedSpec, resolve
from compute_ctl.state import ComputeState, ComputeStatus

if TYPE_CHECKING:
    from compute_ctl.metrics import PromMetrics
    from compute_ctl.params import Params

log = logging.getLogger(__name__)

REFRESH_RETRY_DELAY = 5.0
"""Seconds a failed or no-op refresh waits before the configurator takes up more work."""


class Configurator:
    """Applies delivered specs and refresh requests to a running compute, one at a time.

    `reconfigure` applies a spec to the running Postgres; `exit_now` ends the process (a
    refresh that finds no spec)."""

    def __init__(
        self,
        state: ComputeState,
        params: Params,
        prom: PromMetrics,
        reconfigure: Callable[[ParsedSpec], Awaitable[None]],
        exit_now: Callable[[int], Awaitable[None]],
    ) -> None:
        self.state = state
        self.params = params
        self.prom = prom
        self.reconfigure = reconfigure
        self.exit_now = exit_now

    async def run(self) -> None:
        """Apply specs delivered to a running compute and refresh requests.

        Unless work is already waiting, it waits for the next status change and then looks at
        the status: a pending configuration or refresh is taken up; `failed`, termination or
        anything else after a wake-up ends the task or is ignored. A refresh that failed leaves
        `refresh_configuration_pending`, retried on the next /refresh_configuration.
        """
        state = self.state
        while True:
            work = await state.take_configurator_work()
            if work == "stop":
                return
            if work == "refresh":
                with tracing.span("refresh_configuration", parent=tracing.take_over("refresh")):
                    await self.refresh()
                continue
            if work == "none":
                continue
            pspec = state.pspec
            assert pspec is not None
            try:
                with tracing.span("reconfigure", parent=tracing.take_over("configure")):
                    await self.reconfigure(pspec)
            except Exception as exc:
                log.error("could not apply the new spec: %s", chain_text(exc))
                # The cause is the compute's error: /configure answers with it, /status shows it.
                await state.set_status(ComputeStatus.FAILED, error=chain_text(exc))
                continue
            await state.set_status(ComputeStatus.RUNNING)

    async def signal_refresh(self) -> None:
        """Ask the configurator to pull the config again. A no-op while starting; refused
        (ComputeError) unless running, failed or already pending."""
        await self.state.request_refresh()

    def count_cplane_request(self, http_status: str) -> None:
        self.prom.cplane_requests.labels(rpc=RPC, http_status=http_status).inc()

    async def obtain_spec(self) -> ComputeSpec | None:
        """The spec as its source says now: the re-read file or the control plane."""
        params = self.params
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
        state = self.state
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
            await self.exit_now(1)
            return
        current = state.pspec
        if current is not None and pspec.pageserver_conninfo == current.pageserver_conninfo:
            log.info("refresh: the pageserver connection info is unchanged, nothing to apply")
            await state.set_status(ComputeStatus.RUNNING)
            await asyncio.sleep(REFRESH_RETRY_DELAY)
            return
        state.pspec = pspec
        try:
            await self.reconfigure(pspec)
        except Exception as exc:
            log.error("could not apply the refreshed spec: %s", chain_text(exc))
            await state.set_status(ComputeStatus.REFRESH_CONFIGURATION_PENDING)
            return
        log.info("refresh: the new spec is applied")
        await state.set_status(ComputeStatus.RUNNING)
