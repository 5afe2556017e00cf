"""`compute-dev control-plane`, `compute-dev endpoint-storage` and `compute-dev
extension-gateway`: each runs one of the small HTTP stand-ins in the foreground, announces where
it listens as one JSON line on stdout, and serves until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

from compute_dev.standins import control_plane, endpoint_storage, extension_gateway

# Named as before the split into packages, so log lines and their filters stay the same.
log = logging.getLogger("compute_dev.http_stub")


def _description(standin: ModuleType) -> str | None:
    """A command's help text: what its stand-in does (its docstring's second paragraph)."""
    return standin.__doc__.split("\n\n")[1] if standin.__doc__ else None


def add_listen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, metavar="N", help="0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")


def run_in_foreground(
    name: str,
    directory: Path,
    build: Callable[[], ThreadingHTTPServer],
    announce: Callable[[ThreadingHTTPServer], dict[str, Any]],
) -> int:
    """`compute-dev <name>`: check `directory`, build the server (`build()`), print one JSON
    line (`announce(server)`) so a caller can wait for it, and serve until SIGTERM/SIGINT."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not directory.is_dir():
        print(f"compute-dev {name}: {directory} is not a directory", file=sys.stderr)
        return 1
    try:
        server = build()
    except OSError as exc:
        print(f"compute-dev {name}: cannot listen: {exc.strerror}", file=sys.stderr)
        return 1
    ready = announce(server)
    print(json.dumps(ready), flush=True)
    log.info("%s serving %s: %s", name, directory, ready)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    stop.wait()
    server.shutdown()
    server.server_close()
    return 0


def run_control_plane(args: argparse.Namespace) -> int:
    spec_dir: Path = args.spec_dir
    return run_in_foreground(
        "control-plane",
        spec_dir,
        lambda: control_plane.serve(spec_dir, args.host, args.port, args.token),
        lambda server: {"control_plane_url": f"http://{args.host}:{server.server_address[1]}"},
    )


def add_control_plane_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add `control-plane` to `compute-dev`; the handler is stored as the `handler` default."""
    parser = subparsers.add_parser(
        "control-plane",
        help="serve compute specs from a directory as the control plane's spec endpoint",
        description=_description(control_plane),
    )
    add_listen_arguments(parser)
    parser.add_argument(
        "--spec-dir", type=Path, required=True, metavar="DIR", help="where {id}.json files live"
    )
    parser.add_argument(
        "--token", help="require this bearer token (compute_ctl sends NEON_CONTROL_PLANE_TOKEN)"
    )
    parser.set_defaults(handler=run_control_plane)


def run_endpoint_storage(args: argparse.Namespace) -> int:
    root: Path = args.dir
    return run_in_foreground(
        "endpoint-storage",
        root,
        lambda: endpoint_storage.serve(root, args.host, args.port, args.token),
        lambda server: {"endpoint_storage_addr": f"{args.host}:{server.server_address[1]}"},
    )


def add_endpoint_storage_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add `endpoint-storage` to `compute-dev`; the handler is stored as the `handler` default."""
    parser = subparsers.add_parser(
        "endpoint-storage",
        help="serve LFC state objects from a directory, as endpoint storage",
        description=_description(endpoint_storage),
    )
    add_listen_arguments(parser)
    parser.add_argument(
        "--dir", type=Path, required=True, metavar="DIR", help="where the objects are kept"
    )
    parser.add_argument("--token", help="require this bearer token (the spec's token)")
    parser.set_defaults(handler=run_endpoint_storage)


def run_extension_gateway(args: argparse.Namespace) -> int:
    root: Path = args.dir
    return run_in_foreground(
        "extension-gateway",
        root,
        lambda: extension_gateway.serve(root, args.host, args.port),
        lambda server: {"remote_ext_base_url": extension_gateway.base_url(args.host, server)},
    )


def add_extension_gateway_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add `extension-gateway` to `compute-dev`; the handler is stored as `handler`."""
    parser = subparsers.add_parser(
        "extension-gateway",
        help="serve remote extension archives from a directory, as the extension gateway",
        description=_description(extension_gateway),
    )
    add_listen_arguments(parser)
    parser.add_argument(
        "--dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="holds <build tag>/<arch>/<vNN>/extensions/<extension>.tar.zst",
    )
    parser.set_defaults(handler=run_extension_gateway)
