"""`compute-dev up`: a whole local compute in one command, for a newcomer's first five minutes.

It creates a timeline on first run, starts the storage stand-ins (`compute-dev storage`: the
pageserver over libpq and gRPC, three safekeepers; their log goes to `DIR/storage.log`), writes
a spec pointing at them with both URLs and the chosen `prefer_protocol`, and runs `compute_ctl`
in the foreground; the psql line comes once the compute is `running`. Ctrl-C (or SIGTERM) asks
the compute to terminate through its API, then stops the stand-ins; nothing is left running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import sys
import urllib.parse
import urllib.request
from asyncio.subprocess import Process
from pathlib import Path
from typing import Any

from compute_dev.pgbin import find_pg_bin, server_user
from compute_dev.standins.timelines import Timeline, TimelineStore

DEFAULT_DIR = Path(".compute-dev")
SAFEKEEPERS = 3
STATUS_POLL = (0.1, 0.5)
"""Seconds between two looks at the compute's status while it starts: the first wait, doubled
after each look up to the second (each look is a request line in compute_ctl's log)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def build_spec(
    timeline: Timeline,
    *,
    protocol: str,
    libpq_port: int,
    grpc_port: int,
    safekeeper_ports: list[int],
    pg_port: int,
    socket_dir: Path,
) -> dict[str, Any]:
    """A primary spec for the stand-ins; also a readable example of the format."""
    return {
        "format_version": 1.0,
        "suspend_timeout_seconds": -1,
        "cluster": {
            "cluster_id": "compute-dev",
            "name": "compute-dev",
            "roles": [],
            "databases": [],
            "settings": [
                {"name": "port", "value": str(pg_port), "vartype": "integer"},
                {"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"},
                {"name": "unix_socket_directories", "value": str(socket_dir), "vartype": "string"},
                {"name": "max_connections", "value": "50", "vartype": "integer"},
            ],
        },
        "tenant_id": str(timeline.tenant_id),
        "timeline_id": str(timeline.timeline_id),
        "pageserver_connection_info": {
            "shard_count": 0,
            "stripe_size": None,
            "shards": {
                "0000": {
                    "pageservers": [
                        {
                            "id": 1,
                            "libpq_url": f"postgres://no_user@127.0.0.1:{libpq_port}",
                            "grpc_url": f"grpc://no_user@127.0.0.1:{grpc_port}",
                        }
                    ]
                }
            },
            "prefer_protocol": protocol,
        },
        "safekeepers_generation": 1,
        "safekeeper_connstrings": [f"127.0.0.1:{p}" for p in safekeeper_ports],
        "mode": "Primary",
        "endpoint_id": "ep-compute-dev",
    }


def _terminate(http_port: int) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/terminate?mode=immediate", method="POST"
    )
    with contextlib.suppress(OSError):
        urllib.request.urlopen(request, timeout=30).close()  # noqa: S310 - our own loopback URL


def _status(http_port: int) -> str | None:
    """The compute's status from its API, or None while the API does not answer."""
    url = f"http://127.0.0.1:{http_port}/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            status: Any = json.load(answer).get("status")
    except (OSError, ValueError, AttributeError):
        return None
    return status if isinstance(status, str) else None


async def _announce_when_running(http_port: int, connstr: str) -> None:
    """Print the psql line once the compute is `running` (or say that it failed): before that,
    a newcomer's first connection would be refused."""
    pause, longest = STATUS_POLL
    while True:
        status = await asyncio.to_thread(_status, http_port)
        if status == "running":
            print(f"compute-dev: connect with: psql '{connstr}'", flush=True)
            return
        if status == "failed":
            print("compute-dev: the compute failed to start (its log is above)", flush=True)
            return
        await asyncio.sleep(pause)
        pause = min(2 * pause, longest)


async def _start_storage(store: TimelineStore, log_path: Path) -> tuple[Process, dict[str, Any]]:
    """`compute-dev storage` over the store on free ports, in its own session (Ctrl-C reaches
    only us; we stop it once the compute is gone). Returns it and the URLs it announced."""
    argv = [sys.executable, "-m", "compute_dev.cli", "storage", "--dir", str(store.root)]
    argv += ["--libpq-port", "0", "--grpc-port", "0"]
    argv += ["--safekeeper-ports", ",".join("0" * SAFEKEEPERS)]
    with log_path.open("w") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=log, start_new_session=True
        )
    assert process.stdout is not None
    line = await process.stdout.readline()
    try:
        ready: Any = json.loads(line)
    except ValueError:
        await _stop(process)
        raise RuntimeError(f"the storage stand-ins did not start (see {log_path})") from None
    return process, ready


async def _stop(process: Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


def _port(url: str) -> int:
    """The port of a URL or `host:port` the storage stand-ins announced."""
    port = urllib.parse.urlsplit(url if "//" in url else f"//{url}").port
    if port is None:
        raise RuntimeError(f"the storage stand-ins announced {url!r}, which names no port")
    return port


async def _up(args: argparse.Namespace) -> int:
    root: Path = args.dir.resolve()
    run_as = server_user(announce=True)
    root.mkdir(parents=True, exist_ok=True)
    run_as.chown(root)
    pg_bin = find_pg_bin(args.pg_bin)
    store = TimelineStore(root / "storage")
    timelines = store.list()
    timeline = timelines[0] if timelines else store.create(pg_bin=pg_bin)

    # The stand-ins run in a child: this process starts compute_ctl, and a fork in a process
    # whose gRPC threads are busy makes gRPC print "Other threads are currently calling into
    # gRPC, skipping fork() handlers". Here nothing uses gRPC, so every fork is quiet.
    storage_log = root / "storage.log"
    storage, ready = await _start_storage(store, storage_log)
    try:
        pg_port = args.pg_port or free_port()
        http_port = args.http_port or free_port()
        socket_dir = root / "run"
        socket_dir.mkdir(exist_ok=True)
        run_as.chown(socket_dir)
        spec = build_spec(
            timeline,
            protocol=args.protocol,
            libpq_port=_port(ready["pageserver_libpq_url"]),
            grpc_port=_port(ready["pageserver_grpc_url"]),
            safekeeper_ports=[_port(sk) for sk in ready["safekeeper_connstrings"]],
            pg_port=pg_port,
            socket_dir=socket_dir,
        )
        spec_path = root / "spec.json"
        spec_path.write_text(json.dumps(spec, indent=2) + "\n")
        run_as.chown(spec_path)
        pgdata = root / "pgdata"
        connstr = f"postgresql://cloud_admin@127.0.0.1:{pg_port}/postgres"
        argv = [
            sys.executable,
            "-m",
            "compute_ctl.cli",
            "-D",
            str(pgdata),
            "-C",
            connstr,
            "-S",
            str(spec_path),
            "-b",
            str(pg_bin / "postgres"),
            "--external-http-port",
            str(http_port),
            "--internal-http-port",
            str(args.internal_http_port or free_port()),
            "--dev",
        ]
        print(f"compute-dev: timeline {timeline.tenant_id}/{timeline.timeline_id}", flush=True)
        print(f"compute-dev: basebackup over {args.protocol}", flush=True)
        print(f"compute-dev: storage stand-ins log to {storage_log}", flush=True)
        print(f"compute-dev: status: http://127.0.0.1:{http_port}/status", flush=True)
        print("compute-dev: Ctrl-C stops everything", flush=True)
        process = await asyncio.create_subprocess_exec(
            *argv, env=run_as.env(), start_new_session=True, **run_as.popen_args()
        )
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        waiter = asyncio.ensure_future(process.wait())
        stop = asyncio.ensure_future(stopping.wait())
        announcer = asyncio.ensure_future(_announce_when_running(http_port, connstr))
        await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
        announcer.cancel()
        if not waiter.done():
            print("compute-dev: terminating the compute", flush=True)
            await asyncio.to_thread(_terminate, http_port)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), 30)
            except TimeoutError:
                process.send_signal(signal.SIGTERM)
                await waiter
        stop.cancel()
        code = process.returncode
        return code if code is not None and code >= 0 else 1
    finally:
        await _stop(storage)


def run_up(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_up(args))
    except (OSError, RuntimeError) as exc:
        print(f"compute-dev up: {exc}", file=sys.stderr)
        return 1


def add_up_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "up", help="run a whole local compute against the storage stand-ins (foreground)"
    )
    parser.add_argument("--protocol", choices=("libpq", "grpc"), default="libpq")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state directory")
    parser.add_argument("--pg-bin", type=Path, help="PostgreSQL's bin directory")
    parser.add_argument("--pg-port", type=int, default=0, help="Postgres port (default: free)")
    parser.add_argument("--http-port", type=int, default=0, help="external API port")
    parser.add_argument("--internal-http-port", type=int, default=0, help="internal API port")
    parser.set_defaults(handler=run_up)
