"""The composition root: one compute, its two HTTP listeners and the process' signals.

`cli` parses and loads; this module wires the pieces together and runs them on one event loop:
the `ComputeNode` (the lifecycle), the external and internal apps served by uvicorn (opened and
closed by the lifecycle through `HttpListeners`), and the handlers of SIGINT, SIGTERM and
SIGQUIT, which end the process through the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvicorn

from compute_ctl.compute.node import ComputeNode
from compute_ctl.compute.tasks import BackgroundTasks
from compute_ctl.errors import ComputeError
from compute_ctl.http.app import external_app, internal_app
from compute_ctl.http.auth import Authorizer
from compute_ctl.http.compute_api import ComputeApi
from compute_ctl.http.server import bind_socket, make_server
from compute_ctl.metrics import PromMetrics
from compute_ctl.params import Params
from compute_ctl.spec.models import ComputeCtlConfig
from compute_ctl.spec.resolve import ParsedSpec

log = logging.getLogger(__name__)

HTTP_STOP_TIMEOUT = 5.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)


class HttpListeners:
    """The external API (JWT-guarded) and the internal one, served on the event loop."""

    def __init__(
        self,
        compute: ComputeApi,
        authorizer: Authorizer | None,
        params: Params,
        tasks: BackgroundTasks,
    ) -> None:
        self.compute = compute
        self.authorizer = authorizer
        self.params = params
        self.tasks = tasks
        self.servers: list[uvicorn.Server] = []
        self._serving: list[asyncio.Future[None]] = []

    async def start(self) -> None:
        """Listen on both ports and return once both accept connections (a busy port is a
        ComputeError naming it)."""
        apps = [
            (external_app(self.compute, self.authorizer), self.params.external_http_port),
            (internal_app(self.compute), self.params.internal_http_port),
        ]
        for app, port in apps:
            try:
                sock = bind_socket(port)
            except OSError as exc:
                raise ComputeError(f"could not listen on port {port}: {exc.strerror}") from exc
            server = make_server(app)
            self.servers.append(server)
            self._serving.append(self.tasks.spawn(server.serve(sockets=[sock]), f"http-{port}"))
        # Accept connections before anything else runs on the loop: /status answers while
        # the compute starts.
        while not all(server.started for server in self.servers):
            if any(task.done() for task in self._serving):
                break
            await asyncio.sleep(0)
        log.info(
            "serving the external API on port %d and the internal API on port %d",
            self.params.external_http_port,
            self.params.internal_http_port,
        )

    async def stop(self) -> None:
        for server in self.servers:
            server.should_exit = True
        for task in self._serving:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, HTTP_STOP_TIMEOUT)


def install_signal_handlers(node: ComputeNode) -> None:
    """A stop signal stops Postgres and ends the process with exit code 1, as upstream."""

    def on_signal(signum: int) -> None:
        log.info("received signal %s: stopping Postgres and exiting", signal.Signals(signum).name)
        node.tasks.spawn(node.exit_now(1), "signal")

    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)


async def run_compute(
    params: Params,
    *,
    pspec: ParsedSpec | None,
    ctl_config: ComputeCtlConfig | None,
    authorizer: Authorizer | None,
    prom: PromMetrics,
) -> int:
    """The whole process after loading its inputs; returns the exit code."""
    node = ComputeNode(params, pspec=pspec, ctl_config=ctl_config, prom=prom)
    install_signal_handlers(node)
    return await node.run(HttpListeners(node, authorizer, params, node.tasks))
