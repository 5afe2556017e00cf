"""The websocket endpoint the autoscaler-agent connects to: `GET /monitor`.

Only one agent is served at a time. When a new one connects, the current session is told to
end (its websocket is closed normally) and the newcomer gets a fresh session: the agent that
connected last is the one in charge.

The endpoint is a Starlette app served by uvicorn on compute_ctl's event loop, on its own
listener (`--vm-monitor-addr`), without keep-alive pings or compression (the agent uses neither).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from compute_ctl.vm_monitor.session import (
    CLOSE_GOING_AWAY,
    MonitorSettings,
    Notices,
    Session,
)

log = logging.getLogger(__name__)

DISPLACE_WAIT = 1.0
MAX_CLOSE_REASON = 123
SHUTDOWN_WAIT = 5.0


class StarletteChannel:
    """A Starlette websocket as a session's `Channel`."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.gone = False

    async def receive(self) -> str | bytes | None:
        if self.gone:
            return None
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            self.gone = True
            return None
        text = message.get("text")
        if text is not None:
            return str(text)
        return bytes(message.get("bytes") or b"")

    async def send(self, text: str) -> None:
        await self.websocket.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        if not self.gone:
            self.gone = True
            # A close frame's reason is limited to 123 bytes.
            short = reason.encode()[:MAX_CLOSE_REASON].decode(errors="ignore")
            await self.websocket.close(code, short)


def parse_addr(addr: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` (like a Rust `SocketAddr`)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"invalid listen address {addr!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def bind(addr: str) -> socket.socket:
    host, port = parse_addr(addr)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn without signal handlers of its own: compute_ctl owns the process signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    """uvicorn exits the process on some start-up failures; here that only ends the monitor."""
    try:
        await server.serve(sockets=[sock])
    except SystemExit:
        log.error("vm-monitor listener could not start")


class VmMonitor:
    """The server side: the app, the current session, and orderly shutdown."""

    def __init__(
        self,
        *,
        cgroup: str | None,
        filecache_connstr: str | None,
        settings: MonitorSettings | None = None,
    ) -> None:
        self.cgroup = cgroup
        self.filecache_connstr = filecache_connstr
        self.settings = settings or MonitorSettings()
        self.notices = Notices()
        self.current: Session | None = None
        self.sessions_started = 0
        self.stopping = False
        self.app = Starlette(routes=[WebSocketRoute("/monitor", self._monitor)])

    async def _monitor(self, websocket: WebSocket) -> None:
        log.info("accepted new websocket connection: closing the old one if there is one")
        old = self.current
        if old is not None:
            old.displace()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(old.finished.wait(), DISPLACE_WAIT)
        if self.stopping:
            await websocket.close(CLOSE_GOING_AWAY, "vm-monitor is stopping")
            return
        await websocket.accept()
        session = Session(
            StarletteChannel(websocket),
            self.settings,
            cgroup=self.cgroup,
            filecache_connstr=self.filecache_connstr,
            notices=self.notices,
        )
        self.current = session
        self.sessions_started += 1
        try:
            await session.serve()
        finally:
            if self.current is session:
                self.current = None

    async def serve(self, sock: socket.socket, stop: asyncio.Event | None = None) -> None:
        """Serve on `sock` until `stop` is set or this task is cancelled; then end the
        current session (close code 1001) and the listener, within a few seconds."""
        config = uvicorn.Config(
            self.app,
            ws="websockets-sansio",
            ws_ping_interval=None,
            ws_per_message_deflate=False,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = _Server(config)
        serving = asyncio.create_task(_serve(server, sock), name="vm-monitor-http")
        stopped = asyncio.ensure_future((stop or asyncio.Event()).wait())
        try:
            await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            await self._shutdown(server, serving)

    async def _shutdown(self, server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
        self.stopping = True
        session = self.current
        if session is not None:
            session.displace(CLOSE_GOING_AWAY, "vm-monitor is stopping")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.finished.wait(), SHUTDOWN_WAIT)
        server.should_exit = True
        try:
            await asyncio.wait_for(serving, SHUTDOWN_WAIT)
        except TimeoutError:
            log.warning("vm-monitor listener did not stop in time")
        except Exception as exc:
            log.error("vm-monitor listener failed: %s", exc)
        log.info("vm-monitor stopped")
