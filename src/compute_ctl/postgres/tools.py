"""Questions answered by the Postgres installation's own programs (`pg_config`, `pg_isready`)."""

from __future__ import annotations

import asyncio
import logging
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


async def pg_isready(pg_bindir: Path, port: int) -> str | None:
    """Run `pg_isready -p <port>` (next to `postgres`); None when Postgres accepts
    connections, else the failure to report (the details are logged)."""
    binary = pg_bindir / "pg_isready"
    failed = f"could not run `{binary} --port {port}`"
    try:
        process = await asyncio.create_subprocess_exec(
            str(binary),
            "-p",
            str(port),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
    except OSError as exc:
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
