"""`compute-dev storage`: run the storage stand-ins over one timeline store until stopped.

One process serves everything a compute_ctl needs from storage on this machine: the
pageserver's libpq listener (basebackup, leases), its gRPC listener, and any number of
safekeeper listeners, all reading the same `TimelineStore` (create timelines with
`compute-dev timeline create`). It runs in the foreground on one event loop until SIGTERM or
SIGINT, so scripts and tests can start it as a child process and stop it with a signal.

Once every listener is bound it prints one JSON line on stdout with the URLs to put in a spec
(ports chosen by the system when 0 was asked are resolved), so a caller can wait for that line
instead of polling ports. Logs (one line per request) go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import grpc

from compute_dev.standins.grpc_server import GrpcFaults, start_grpc_stand_in
from compute_dev.standins.pageserver import Faults, serve_pageserver_libpq
from compute_dev.standins.safekeeper import SafekeeperFaults, serve_safekeeper
from compute_dev.standins.storage_auth import JwtVerifier
from compute_dev.standins.timelines import TimelineError, TimelineStore

DEFAULT_LIBPQ_PORT = 64000
DEFAULT_GRPC_PORT = 51051
DEFAULT_SAFEKEEPER_PORTS = "5454"
"""neon_local's defaults."""


def _ports(text: str) -> list[int]:
    try:
        ports = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected ports separated by commas, not {text!r}"
        ) from None
    if not ports or any(not 0 <= port <= 65535 for port in ports):
        raise argparse.ArgumentTypeError(f"expected ports between 0 and 65535, not {text!r}")
    return ports


def _port(text: str) -> int:
    ports = _ports(text)
    if len(ports) != 1:
        raise argparse.ArgumentTypeError(f"expected one port, not {text!r}")
    return ports[0]


def add_storage_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `storage` to `compute-dev`; the handler is stored as the `handler` default."""
    parser = subparsers.add_parser(
        "storage",
        help="run the pageserver (libpq, gRPC) and safekeeper stand-ins until stopped",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument("--dir", required=True, type=Path, help="the timeline store's root")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--libpq-port",
        type=_port,
        default=DEFAULT_LIBPQ_PORT,
        metavar="N",
        help=f"pageserver libpq port (default {DEFAULT_LIBPQ_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--grpc-port",
        type=_port,
        default=DEFAULT_GRPC_PORT,
        metavar="N",
        help=f"pageserver gRPC port (default {DEFAULT_GRPC_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--safekeeper-ports",
        type=_ports,
        default=_ports(DEFAULT_SAFEKEEPER_PORTS),
        metavar="A,B,C",
        help=f"one safekeeper per port (default {DEFAULT_SAFEKEEPER_PORTS})",
    )
    parser.add_argument(
        "--auth-public-key",
        type=Path,
        metavar="FILE",
        help="Ed25519 public key (PEM file or directory of them): require storage JWTs",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        choices=LIBPQ_FAULTS,
        metavar="NAME",
        help="switch on a pageserver libpq fault (repeatable): " + ", ".join(LIBPQ_FAULTS),
    )
    parser.add_argument(
        "--fault-times",
        type=int,
        metavar="N",
        help="the libpq faults fire only N times in all, then requests succeed",
    )
    parser.add_argument(
        "--basebackup-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before a libpq basebackup starts streaming (as wait_lsn does)",
    )
    parser.add_argument(
        "--grpc-fault",
        choices=GRPC_FAULT_CODES,
        metavar="CODE",
        help="GetBaseBackup fails at call start with this status: " + ", ".join(GRPC_FAULT_CODES),
    )
    parser.add_argument(
        "--safekeeper-fault",
        choices=SAFEKEEPER_FAULTS,
        metavar="NAME",
        help="every safekeeper fails TIMELINE_STATUS this way: " + ", ".join(SAFEKEEPER_FAULTS),
    )
    parser.set_defaults(handler=run_storage)


LIBPQ_FAULTS = tuple(
    f.name for f in dataclasses.fields(Faults) if f.type in ("bool", bool) and f.name != "times"
)
GRPC_FAULT_CODES = ("UNAVAILABLE", "NOT_FOUND", "INTERNAL", "PERMISSION_DENIED")
SAFEKEEPER_FAULTS = ("no_row", "reject_auth", "error")


def faults_from_args(
    args: argparse.Namespace,
) -> tuple[Faults | None, GrpcFaults | None, SafekeeperFaults | None]:
    """The injected failures the command line asks for, so whole-process tests can
    drive each client path through a real `compute-dev storage` process."""
    libpq = None
    if args.fault or args.basebackup_delay:
        libpq = Faults(
            times=args.fault_times,
            copy_delay=args.basebackup_delay,
            **dict.fromkeys(args.fault, True),
        )
    grpc_faults = None
    if args.grpc_fault:
        grpc_faults = GrpcFaults(start_code=grpc.StatusCode[args.grpc_fault])
    safekeeper = None
    if args.safekeeper_fault == "error":
        safekeeper = SafekeeperFaults(error="injected safekeeper error")
    elif args.safekeeper_fault == "no_row":
        safekeeper = SafekeeperFaults(no_row=True)
    elif args.safekeeper_fault == "reject_auth":
        safekeeper = SafekeeperFaults(reject_auth=True)
    return libpq, grpc_faults, safekeeper


def run_storage(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; exit status 0 then, 1 if a listener could not start."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return asyncio.run(_serve(args))
    except (OSError, ValueError, TimelineError) as exc:
        print(f"compute-dev storage: {exc}", file=sys.stderr)
        return 1


def _bound_port(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


async def _serve(args: argparse.Namespace) -> int:
    store = TimelineStore(args.dir)
    timelines = store.list()
    key_path: Path | None = args.auth_public_key
    verifier = JwtVerifier.from_path(key_path) if key_path is not None else None
    host: str = args.host
    shown_host = f"[{host}]" if ":" in host else host

    async with contextlib.AsyncExitStack() as running:
        faults, grpc_faults, sk_faults = faults_from_args(args)
        libpq = await serve_pageserver_libpq(
            store, host, args.libpq_port, public_key=verifier, faults=faults
        )
        running.push_async_callback(_close, libpq)
        safekeepers: list[asyncio.Server] = []
        for port in args.safekeeper_ports:
            safekeepers.append(
                await serve_safekeeper(store, host, port, public_key=verifier, faults=sk_faults)
            )
            running.push_async_callback(_close, safekeepers[-1])
        grpc_stand_in = await start_grpc_stand_in(
            store, host, args.grpc_port, public_key=key_path, faults=grpc_faults
        )
        running.push_async_callback(grpc_stand_in.stop, 1.0)

        ready: dict[str, Any] = {
            "pageserver_libpq_url": f"postgres://no_user@{shown_host}:{_bound_port(libpq)}",
            "pageserver_grpc_url": grpc_stand_in.url,
            "safekeeper_connstrings": [f"{shown_host}:{_bound_port(s)}" for s in safekeepers],
            "auth": "jwt" if verifier is not None else "trust",
            "timelines": [
                {"tenant_id": t.tenant_id, "timeline_id": t.timeline_id, "lsn": str(t.lsn)}
                for t in timelines
            ],
        }
        if not timelines:
            logging.getLogger("compute_dev.storage_cmd").warning(
                "the store %s has no timelines yet: create one with "
                "`compute-dev timeline create --dir %s`",
                args.dir,
                args.dir,
            )
        await _wait_for_signal(ready)
    return 0


async def _close(server: asyncio.Server) -> None:
    """Stop listening and end the connections still open (Python 3.13 can do the latter;
    earlier ones end them when the loop stops), waiting for them only briefly."""
    server.close()
    close_clients = getattr(server, "close_clients", None)
    if close_clients is not None:
        close_clients()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await server.wait_closed()


async def _wait_for_signal(ready: dict[str, Any]) -> None:
    """Announce readiness on stdout, then wait for SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        print(json.dumps(ready), flush=True)
        await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
