"""The `compute_ctl` command line: upstream's flags (same names, short forms, environment
variables and defaults) plus the seed's `-S/--spec-path` for a bare ComputeSpec file.

Parsing produces a `Params` value and nothing else; it never touches the network or the disk.
Usage errors exit with status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

from compute_ctl import __version__
from compute_ctl.compute.core_dumps import raise_core_limit
from compute_ctl.control_plane import RPC, fetch_config
from compute_ctl.errors import ComputeError, SpecError
from compute_ctl.failpoints import FailpointError, Failpoints
from compute_ctl.http.auth import AllowAll, Authorizer
from compute_ctl.logsetup import setup_logging
from compute_ctl.params import AUTOSCALING_ENV, Params
from compute_ctl.pid1 import init_if_pid1
from compute_ctl.spec.load import load_compute_config, load_compute_spec
from compute_ctl.spec.models import ComputeCtlConfig, ComputeSpec
from compute_ctl.spec.resolve import ParsedSpec, resolve

PRIVILEGED_ROLE_RE = re.compile(r"[a-z_]+")
INSTANCE_ID_ENV = "INSTANCE_ID"
DEFAULT_FILECACHE_CONNSTR = (
    "host=localhost port=5432 dbname=postgres user=cloud_admin sslmode=disable "
    "application_name=vm-monitor"
)


class UsageError(Exception):
    """A command line that cannot work: exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _bool_value(text: str) -> bool:
    if text in ("true", "false"):
        return text == "true"
    raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected true or false")


def _port(text: str) -> int:
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    raise argparse.ArgumentTypeError(f"invalid port {text!r}")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}")
    return value


def version_text() -> str:
    """`--version`: the package's version and the build tag (the `BUILD_TAG` environment
    variable, as in remote extension paths and the `build_tag` metric label)."""
    return f"compute_ctl {__version__} (build tag {os.environ.get('BUILD_TAG') or 'latest'})"


def build_parser() -> argparse.ArgumentParser:
    """Every flag with its help text and default (also the source of the man page and the
    shell completion, made by scripts/install.sh)."""
    p = _Parser(
        prog="compute_ctl",
        description="Run a PostgreSQL compute node from its spec and serve its HTTP API.",
        epilog="The spec comes from one of -S, -c or -p; without any, compute_ctl waits for "
        "POST /configure.",
    )
    p.add_argument("-V", "--version", action="version", version=version_text())
    p.add_argument(
        "-b",
        "--pgbin",
        default=os.environ.get("POSTGRES_PATH", "postgres"),
        help="path to the postgres binary; initdb, pg_ctl… are found next to it "
        "(env POSTGRES_PATH; default: %(default)s)",
    )
    p.add_argument(
        "-r",
        "--remote-ext-base-url",
        metavar="URL",
        help="extension gateway base URL for remote extensions (default: none)",
    )
    p.add_argument(
        "--external-http-port",
        type=_port,
        metavar="PORT",
        help="port of the external HTTP API: status, configure, metrics (default: 3080)",
    )
    p.add_argument(
        "--internal-http-port",
        type=_port,
        metavar="PORT",
        help="port of the internal HTTP API: extension server, grants (default: 3081)",
    )
    p.add_argument(
        "--http-port",
        type=_port,
        metavar="PORT",
        help="with --lakebase-mode true: external API on PORT, internal on PORT+1 (default: none)",
    )
    p.add_argument(
        "-D",
        "--pgdata",
        required=True,
        help="Postgres data directory; deleted and re-created at every start (required)",
    )
    p.add_argument(
        "-C",
        "--connstr",
        required=True,
        help="URL of the local Postgres as superuser, "
        "e.g. postgresql://cloud_admin@localhost:55433/postgres (required)",
    )
    p.add_argument(
        "--privileged-role-name",
        default="neon_superuser",
        metavar="NAME",
        help="name of the privileged role the spec's roles are granted (default: %(default)s)",
    )
    p.add_argument(
        "--cgroup",
        default="neon-postgres",
        help="cgroup the vm-monitor watches and resizes (default: %(default)s)",
    )
    p.add_argument(
        "--filecache-connstr",
        default=DEFAULT_FILECACHE_CONNSTR,
        metavar="CONNSTR",
        help="libpq connection string the vm-monitor resizes the file cache with "
        "(default: '%(default)s')",
    )
    p.add_argument(
        "--vm-monitor-addr",
        default="0.0.0.0:10301",
        metavar="HOST:PORT",
        help="where the vm-monitor listens (under AUTOSCALING; default: %(default)s)",
    )
    p.add_argument(
        "--resize-swap-on-bind",
        action="store_true",
        help="resize swap to the spec's swap_size_bytes once the spec is known (default: off)",
    )
    p.add_argument(
        "--set-disk-quota-for-fs",
        metavar="MOUNTPOINT",
        help="set the spec's disk quota on this filesystem (default: none)",
    )
    p.add_argument(
        "-c", "--config", help="path of a ComputeConfig JSON file (spec and JWKS; default: none)"
    )
    p.add_argument("-S", "--spec-path", help="path of a bare ComputeSpec JSON file (default: none)")
    p.add_argument(
        "-i",
        "--compute-id",
        help="compute id: in control plane URLs and the JWT's compute_id (required except with -S)",
    )
    p.add_argument(
        "-p",
        "--control-plane-uri",
        metavar="URL",
        help="control plane base URL to fetch the spec from (needs -i; default: none)",
    )
    p.add_argument(
        "--installed-extensions-collection-interval",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="how often installed extensions are counted for metrics (default: %(default)s)",
    )
    p.add_argument(
        "--dev",
        action="store_true",
        help="development mode: a failed compute exits after 1 s, not 30 s; sidecars are "
        "left running at exit (default: off)",
    )
    p.add_argument(
        "--pg-init-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="seconds Postgres may take to accept connections at start (default: 60)",
    )
    p.add_argument(
        "--lakebase-mode",
        type=_bool_value,
        default=False,
        metavar="BOOL",
        help="true or false: lakebase behaviour, e.g. --http-port (default: false)",
    )
    return p


def normalize_remote_ext_base_url(url: str) -> str:
    """Collapse trailing slashes to exactly one; a query string is refused."""
    parts = urlsplit(url)
    if parts.query:
        raise UsageError("parameters detected in remote extensions base URL")
    path = parts.path.rstrip("/") + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", parts.fragment))


def _validate_connstr(connstr: str) -> None:
    parts = urlsplit(connstr)
    if parts.scheme not in ("postgres", "postgresql") or not parts.netloc:
        raise UsageError("cannot parse connstr as a URL")
    try:
        _ = parts.port
    except ValueError as exc:
        raise UsageError(f"cannot parse connstr as a URL: {exc}") from None


def params_from_args(args: argparse.Namespace) -> Params:
    """Cross-field rules of the command line (conflicts, requirements, formats)."""
    sources = [name for name in ("config", "spec_path", "control_plane_uri") if getattr(args, name)]
    if len(sources) > 1:
        flags = {
            "config": "--config",
            "spec_path": "--spec-path",
            "control_plane_uri": "--control-plane-uri",
        }
        raise UsageError(f"{' and '.join(flags[s] for s in sources)} cannot be used together")
    if args.control_plane_uri and not args.compute_id:
        raise UsageError("--control-plane-uri requires --compute-id")
    if not args.spec_path and not args.compute_id:
        raise UsageError("--compute-id is required (except with --spec-path)")
    if args.http_port is not None and (
        args.external_http_port is not None or args.internal_http_port is not None
    ):
        raise UsageError(
            "--http-port cannot be used with --external-http-port/--internal-http-port"
        )
    if not PRIVILEGED_ROLE_RE.fullmatch(args.privileged_role_name):
        raise UsageError(
            "--privileged-role-name can only contain lowercase letters and underscores"
        )
    _validate_connstr(args.connstr)
    if args.lakebase_mode and urlsplit(args.connstr).port is None:
        # postgresql.conf gets `port = <this port>` in lakebase mode
        raise UsageError("--connstr: lakebase mode needs a port in the connection string")
    external, internal = args.external_http_port or 3080, args.internal_http_port or 3081
    if args.lakebase_mode and args.http_port is not None:
        external, internal = args.http_port, args.http_port + 1
    remote = args.remote_ext_base_url
    try:
        failpoints = Failpoints.from_environ(os.environ)
    except FailpointError as exc:
        raise UsageError(str(exc)) from None
    return Params(
        pgbin=args.pgbin,
        pgdata=Path(args.pgdata),
        connstr=args.connstr,
        compute_id=args.compute_id,
        config_path=Path(args.config) if args.config else None,
        spec_path=Path(args.spec_path) if args.spec_path else None,
        control_plane_uri=args.control_plane_uri,
        external_http_port=external,
        internal_http_port=internal,
        remote_ext_base_url=normalize_remote_ext_base_url(remote) if remote else None,
        privileged_role_name=args.privileged_role_name,
        cgroup=args.cgroup,
        filecache_connstr=args.filecache_connstr,
        vm_monitor_addr=args.vm_monitor_addr,
        resize_swap_on_bind=args.resize_swap_on_bind,
        set_disk_quota_for_fs=args.set_disk_quota_for_fs,
        installed_extensions_collection_interval=args.installed_extensions_collection_interval,
        dev=args.dev,
        pg_init_timeout=args.pg_init_timeout,
        lakebase_mode=args.lakebase_mode,
        autoscaling=AUTOSCALING_ENV in os.environ,
        instance_id=os.environ.get(INSTANCE_ID_ENV),
        failpoints=failpoints,
    )


def parse_params(argv: Sequence[str] | None = None) -> Params:
    """Parse and validate; raises UsageError (or exits 2 through argparse)."""
    return params_from_args(build_parser().parse_args(argv))


def _resolve_config_spec(spec: ComputeSpec | None) -> ParsedSpec | None:
    if spec is None:
        return None
    try:
        return resolve(spec)
    except SpecError as exc:
        raise SpecError(f"spec.{exc.field}", exc.problem) from exc.__cause__


def _load_inputs(
    params: Params, on_cplane_attempt: Callable[[str], None]
) -> tuple[ParsedSpec | None, ComputeCtlConfig | None]:
    """The boot spec and compute_ctl's settings, from `-S`, `-c` or the control plane."""
    if params.spec_path is not None:
        spec = load_compute_spec(_read(params.spec_path))
        return resolve(spec), None
    if params.config_path is not None:
        config = load_compute_config(_read(params.config_path))
        return _resolve_config_spec(config.spec), config.compute_ctl_config
    if params.control_plane_uri is not None and params.compute_id is not None:
        reply = fetch_config(
            params.control_plane_uri, params.compute_id, on_attempt=on_cplane_attempt
        )
        return _resolve_config_spec(reply.spec), reply.compute_ctl_config
    return None, None


def make_authorizer(params: Params, ctl_config: ComputeCtlConfig | None) -> Authorizer | None:
    """JWT checks with the boot config's keys; none with `INSTANCE_ID` set or no config."""
    logger = logging.getLogger("compute_ctl")
    if INSTANCE_ID_ENV in os.environ:
        logger.info("%s is set: the external HTTP API does not check tokens", INSTANCE_ID_ENV)
        return AllowAll()
    if ctl_config is None:
        logger.warning(
            "no compute_ctl_config (bare spec or no config): "
            "the external HTTP API is served without authentication"
        )
        return None
    from compute_ctl.http.jwt import JwtAuthorizer  # noqa: PLC0415 - only with keys

    return JwtAuthorizer(ctl_config.jwks.keys, params.compute_id)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SpecError(str(path), exc.strerror or str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """The entry point. SIGINT before the lifecycle has its handlers (imports, parsing,
    loading the spec, the first moments of the event loop) raises KeyboardInterrupt: that is
    one line and exit status 1, never a traceback or a death by the signal."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("compute_ctl: error: interrupted (SIGINT) during start-up", file=sys.stderr)
        return 1


def _main(argv: Sequence[str] | None) -> int:
    # As a container's PID 1: fork at once; PID 1 stays a tiny init (reaps orphans, passes
    # signals on, exits with compute_ctl's status) and the child carries on as compute_ctl.
    init_if_pid1()
    try:
        params = parse_params(argv)
    except UsageError as exc:
        print(f"compute_ctl: error: {exc}", file=sys.stderr)
        return 2
    if os.geteuid() == 0:
        print(
            "compute_ctl: error: refusing to run as root: PostgreSQL cannot run as root; "
            "start compute_ctl as an unprivileged user",
            file=sys.stderr,
        )
        return 2
    setup_logging(lakebase=params.lakebase_mode)
    raise_core_limit()  # Postgres and every other child may dump core
    from compute_ctl.metrics import PromMetrics  # noqa: PLC0415 - keep --help fast

    prom = PromMetrics()

    def count_cplane_attempt(http_status: str) -> None:
        prom.cplane_requests.labels(rpc=RPC, http_status=http_status).inc()

    try:
        pspec, ctl_config = _load_inputs(params, count_cplane_attempt)
    except ComputeError as exc:
        print(f"compute_ctl: error: {exc.one_line()}", file=sys.stderr)
        return 1
    from compute_ctl.main import run_compute  # noqa: PLC0415 - keep --help fast

    authorizer = make_authorizer(params, ctl_config)
    try:
        return asyncio.run(
            run_compute(
                params, pspec=pspec, ctl_config=ctl_config, authorizer=authorizer, prom=prom
            )
        )
    except ComputeError as exc:  # e.g. a listener port already in use
        print(f"compute_ctl: error: {exc.one_line()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
