"""A throwaway PostgreSQL cluster for tests and benchmarks.

Tests that need a real server start one with `start_server()` and stop it with `server.stop()`.
The cluster lives in a fresh temporary directory handed to the user Postgres runs as (when we
are root, `initdb` and `postgres` refuse to run, so they run as the `postgres` user), listens on
a unix socket inside that directory and on a free TCP port of 127.0.0.1 only, and is removed
when stopped. `pg_ctl start -w` returns once the server accepts connections, so no caller needs
to poll or sleep.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from compute_dev.pgbin import RunAs, find_pg_bin, server_user

DEFAULT_SUPERUSER = "cloud_admin"

# Settings that make a test cluster quick to start and cheap to run. Durability is irrelevant for
# a cluster that is deleted afterwards; callers measuring performance can override them.
FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "128MB",
}


class PgServerError(RuntimeError):
    """The throwaway server could not be created or started; carries the server log's tail."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _conf_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass
class PgServer:
    """A running throwaway cluster. `connstr()` reaches it over TCP on 127.0.0.1."""

    root: Path
    bindir: Path
    port: int
    superuser: str
    run_as: RunAs
    _stopped: bool = field(default=False, repr=False)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def connstr(self, dbname: str = "postgres", user: str | None = None) -> str:
        """A libpq URL for `dbname` as `user` (the superuser by default)."""
        who = quote(user or self.superuser, safe="")
        return f"postgresql://{who}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args],
            preexec_fn=self.run_as.preexec(),
            env=self.run_as.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise PgServerError(
                f"pg_ctl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
                f"\n--- server log ---\n{self.log_tail()}"
            )
        return result

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.logfile.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_text(self) -> str:
        """The whole server log (tests grep it for what the server logged)."""
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """`pg_ctl stop -m fast`, then delete the cluster's directory."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if (self.datadir / "postmaster.pid").exists():
                self._pg_ctl("stop", "-m", "fast", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _initdb(root: Path, bindir: Path, superuser: str, run_as: RunAs) -> None:
    result = subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(root / "data"),
            "-U",
            superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ],
        preexec_fn=run_as.preexec(),
        env=run_as.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise PgServerError(f"initdb failed ({result.returncode}): {result.stderr.strip()}")


def start_server(
    *,
    superuser: str = DEFAULT_SUPERUSER,
    settings: Mapping[str, str] | None = None,
    hba: Sequence[str] = (),
    pg_bin: str | None = None,
) -> PgServer:
    """initdb a new cluster in a temporary directory and start it.

    `settings` are appended to `postgresql.conf` after `FAST_SETTINGS` (so they win); `hba`
    lines go before initdb's (trust) lines of `pg_hba.conf`, so they take precedence. The port
    is picked free just before starting; if another process grabs it in between, start-up fails
    and is retried on a new port.
    """
    bindir = find_pg_bin(pg_bin)
    run_as = server_user()
    root = Path(tempfile.mkdtemp(prefix="compute-ctl-pg-"))
    try:
        (root / "sock").mkdir()
        run_as.chown(root)
        _initdb(root, bindir, superuser, run_as)
        if hba:
            hba_file = root / "data" / "pg_hba.conf"
            hba_file.write_text("\n".join(hba) + "\n" + hba_file.read_text())
        wanted = {**FAST_SETTINGS, **(settings or {})}
        last_error: PgServerError | None = None
        for _attempt in range(3):
            server = PgServer(root, bindir, free_port(), superuser, run_as)
            conf = {
                **wanted,
                "listen_addresses": "127.0.0.1",
                "port": str(server.port),
                "unix_socket_directories": str(server.socket_dir),
            }
            with (server.datadir / "postgresql.auto.conf").open("w") as out:
                out.write("# written by tests/support/pgserver.py\n")
                for name, value in conf.items():
                    out.write(f"{name} = {_conf_value(value)}\n")
            run_as.chown(server.datadir / "postgresql.auto.conf")
            try:
                server._pg_ctl("start", "-w", "-t", "60", "-l", str(server.logfile))
            except PgServerError as exc:
                last_error = exc
                continue
            return server
        assert last_error is not None
        raise last_error
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


@contextlib.contextmanager
def running_server(
    *,
    superuser: str = DEFAULT_SUPERUSER,
    settings: Mapping[str, str] | None = None,
    hba: Sequence[str] = (),
) -> Iterator[PgServer]:
    """`start_server()` as a context manager that always stops the server."""
    server = start_server(superuser=superuser, settings=settings, hba=hba)
    try:
        yield server
    finally:
        server.stop()
