"""Core dumps of Postgres: allowed at start, reported after the postmaster exits.

A crash in production is only debuggable if the kernel may write a core and somebody looks at
it before the data directory is wiped by the next start. So compute_ctl lifts `RLIMIT_CORE` for
itself and its children, and once Postgres is gone it looks for `core` / `core.<pid>` files
(where a `core_pattern` of `core` puts them: the crashing process's working directory, PGDATA
for Postgres) and logs a backtrace of each, taken with gdb (or lldb where gdb is missing).

None of this may stand in the way of the compute: a limit that cannot be raised is one log line,
a debugger that is missing, fails or hangs is logged and given up on after a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import sys
from pathlib import Path

from compute_ctl.subprocesses import PIPE, run_bounded

log = logging.getLogger(__name__)

# Per core file; a debugger still running then is killed.
BACKTRACE_TIMEOUT = 60.0
# What is logged of each debugger stream; a backtrace of one thread is a few KiB.
MAX_OUTPUT = 64 * 1024

MACOS_CORE_DIR = Path("/cores")
LAKEBASE_CORE_DIR = Path("/databricks/logs/brickstore")


def raise_core_limit() -> None:
    """Set `RLIMIT_CORE` to unlimited (soft and hard), inherited by every child. Without the
    privilege to raise the hard limit, the soft limit goes up to the hard one. Never fails."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    except (OSError, ValueError) as exc:
        log.warning("could not read the core file size limit: %s", exc)
        return
    infinity = resource.RLIM_INFINITY
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (infinity, infinity))
    except (OSError, ValueError):
        pass
    else:
        return
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
    except (OSError, ValueError) as exc:
        log.warning("could not raise the core file size limit (%s): %s", _limit(soft), exc)
        return
    log.warning(
        "core file size limit raised to the hard limit %s only: not allowed to make it unlimited",
        _limit(hard),
    )


def _limit(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else f"{value} bytes"


def core_dump_dir(pgdata: Path, *, lakebase: bool) -> Path:
    """Where cores are looked for: PGDATA, except on macOS (`/cores`) and in lakebase mode
    (a directory that survives the PGDATA wipe)."""
    if sys.platform == "darwin":
        return MACOS_CORE_DIR
    return LAKEBASE_CORE_DIR if lakebase else pgdata


def find_core_dumps(directory: Path) -> list[Path]:
    """Regular files named `core` or `core.*` directly in `directory`, by name."""
    cores = []
    for entry in directory.iterdir():
        if (entry.name == "core" or entry.name.startswith("core.")) and entry.is_file():
            cores.append(entry)
    return sorted(cores)


async def check_for_core_dumps(
    directory: Path, postgres: str, *, timeout: float = BACKTRACE_TIMEOUT
) -> None:
    """Log a backtrace of every core in `directory`. Errors are only logged."""
    log.info("checking for core dumps in %s", directory)
    try:
        cores = await asyncio.to_thread(find_core_dumps, directory)
    except FileNotFoundError:
        return  # Postgres never got a data directory: it cannot have dumped a core there
    except OSError as exc:
        log.error("error while checking for core dumps: %s", exc)
        return
    for core in cores:
        log.warning("core dump found: %s, collecting backtrace", core)
        try:
            stdout, stderr = await backtrace(postgres, core, timeout=timeout)
        except TimeoutError:
            log.error("no backtrace of %s: the debugger did not finish in %g s", core, timeout)
            continue
        except Exception as exc:
            log.error("error while checking for core dumps: %s", exc)
            continue
        log.warning("core dump backtrace: %s", stdout)
        log.warning("debugger stderr: %s", stderr)


async def backtrace(postgres: str, core: Path, *, timeout: float) -> tuple[str, str]:
    """stdout and stderr of `gdb --batch -q -ex bt <postgres> <core>`, or of lldb when there
    is no gdb. Raises OSError when neither can be run, TimeoutError when the debugger does not
    finish in time (it is killed)."""
    try:
        return await _run(["gdb", "--batch", "-q", "-ex", "bt", postgres, str(core)], timeout)
    except FileNotFoundError:
        log.warning("cannot find gdb, trying lldb")
    argv = ["lldb", "-c", str(core), "--batch", "-o", "bt all", "-o", "quit"]
    return await _run(argv, timeout)


async def _run(argv: list[str], timeout: float) -> tuple[str, str]:
    # In a session of its own: a terminal's signals are not the debugger's business.
    done = await run_bounded(argv, timeout, stdout=PIPE, stderr=PIPE, start_new_session=True)
    return _text(done.stdout), _text(done.stderr)


def _text(data: bytes) -> str:
    text = data[:MAX_OUTPUT].decode(errors="replace")
    if len(data) > MAX_OUTPUT:
        text += f"\n[{len(data) - MAX_OUTPUT} more bytes not shown]"
    return text
