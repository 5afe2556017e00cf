"""`pg_dump --schema-only` of one database, as a running process the caller streams from.

`pg_dump --host H --port P --username U --schema-only` (H, P, U from `--connstr`) with the
database in `PGDATABASE`, so that any name works (spaces, quotes, `=`, emoji) without being
read as a connection string.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
ERROR_BYTES = 16 * 1024


class DumpNotStartedError(Exception):
    """pg_dump could not be run (the text says why)."""


def dump_target(connstr: str) -> tuple[str, str, str] | None:
    """(host, port, user) of the connstr URL, or None when one is missing."""
    try:
        parts = urlsplit(connstr)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or port is None or not parts.username:
        return None
    return parts.hostname, str(port), unquote(parts.username)


class SchemaDump:
    """One running `pg_dump --schema-only`: its output read in chunks, killed on demand."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(
        cls, pg_bindir: Path, target: tuple[str, str, str], database: str
    ) -> SchemaDump:
        host, port, user = target
        pg_dump = pg_bindir / "pg_dump"
        argv = [str(pg_dump), "--host", host, "--port", port, "--username", user, "--schema-only"]
        env = {**os.environ, "PGDATABASE": database}
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the environment
            raise DumpNotStartedError(f"could not run {pg_dump}: {exc}") from None
        return cls(process)

    async def read(self) -> bytes:
        """The next chunk of the dump; b"" at its end (or when the pipe broke)."""
        assert self.process.stdout is not None
        try:
            return await self.process.stdout.read(CHUNK)
        except OSError:
            return b""

    async def error_output(self) -> str:
        """What pg_dump said on stderr when it failed at once (up to ERROR_BYTES of it).

        All of it, not its first line: the server's message quotes the database name, which
        may hold a newline.
        """
        assert self.process.stderr is not None
        data = b""
        try:
            while len(data) < ERROR_BYTES:
                chunk = await self.process.stderr.read(ERROR_BYTES - len(data))
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        return data.decode(errors="replace")

    async def log_stderr(self) -> None:
        """Log what pg_dump says on stderr while it runs."""
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            log.info("pg_dump: %s", line.decode(errors="replace").rstrip())

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def wait(self) -> int:
        return await self.process.wait()
