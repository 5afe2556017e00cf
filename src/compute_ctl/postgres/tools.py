"""Questions answered by the Postgres installation's own programs (`pg_config`, `pg_isready`)."""

from __future__ import annotations

import asyncio
import logging
import shlex
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)


def neon_extension_available(pg_bindir: Path) -> bool:
    """Whether the Neon Postgres extension is installed for these binaries (stock PostgreSQL
    has none; every Neon-only step is skipped then). Asks `pg_config --pkglibdir` next to
    `postgres`, as the server itself would look there."""
    try:
        out = subprocess.run(
            [str(pg_bindir / "pg_config"), "--pkglibdir"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        libdirs = [Path(out.stdout.strip())]
    except (OSError, subprocess.SubprocessError):
        libdirs = [pg_bindir.parent / "lib", pg_bindir.parent / "lib" / "postgresql"]
    return any((libdir / "neon.so").exists() for libdir in libdirs)


# libpq parameters pg_isready is not given: it sends no password (a ping needs none), and the
# command line is visible to every local user.
_SECRET_PARAMETERS = ("password", "sslpassword")


def pg_isready_argv(pg_bindir: Path, connstr: str) -> list[str]:
    """`pg_isready --dbname <conninfo>`: the program next to `postgres`, aimed where `connstr`
    says (host or socket directory, port, user, database, TLS settings), without secrets.

    The whole connection goes in `--dbname`, which pg_isready reads as a connection string, so
    a socket directory in `?host=`, several hosts or an `sslmode` reach it as they reach every
    other connection; raises ValueError for a connstr libpq cannot parse.
    """
    from psycopg import ProgrammingError  # noqa: PLC0415 - psycopg is heavy: off the start-up path
    from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: PLC0415

    try:
        params = conninfo_to_dict(connstr)
    except ProgrammingError as exc:
        raise ValueError(f"cannot parse the connection string: {exc}") from None
    for name in _SECRET_PARAMETERS:
        params.pop(name, None)
    return [str(pg_bindir / "pg_isready"), "--dbname", make_conninfo("", **params)]


async def pg_isready(pg_bindir: Path, connstr: str) -> str | None:
    """Run pg_isready against the Postgres of `connstr` (`pg_isready_argv`); None when Postgres
    accepts connections, else the failure to report (the details are logged)."""
    try:
        argv = pg_isready_argv(pg_bindir, connstr)
    except ValueError as exc:
        log.error("Hadron liveness probe failed: %s", exc)
        return str(exc)
    failed = f"could not run `{shlex.join(argv)}`"
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in an argument
        log.error("Hadron liveness probe failed: %s: %s", failed, exc)
        return failed
    text = output.decode(errors="replace").strip()
    if process.returncode != 0:
        log.error(
            "Hadron liveness probe failed: %s: exit status %s: %s",
            failed,
            process.returncode,
            text,
        )
        return failed
    return None
