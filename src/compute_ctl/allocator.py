"""glibc's allocator, told what a long-lived supervisor with few threads needs.

compute_ctl is resident for the whole life of a compute, and a fleet pays for its memory per
compute (docs/benchmarks.md, F4). Two glibc defaults cost memory here without buying speed:

- glibc gives each thread that allocates its own arena, up to eight per core; a worker thread
  that unpacks the basebackup once (storage/basebackup.py) leaves an arena of freed chunks
  behind it for the rest of the process' life. Two arenas are enough for a process whose work
  runs on one event loop. `MALLOC_ARENA_MAX` in the environment, if an operator set it, wins.
- Freed memory at the top of the heap is returned to the kernel only past a threshold, and
  freed pages in the middle of it never are. Start-up allocates and frees most of what the
  process will ever use (the spec, the basebackup's buffers, the catalog apply), so one
  `malloc_trim(0)` once the compute is `running` hands those pages back.

Both are best effort: on a C library without them (musl) nothing happens.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
"""mallopt's parameter number for the arena limit, as glibc numbers it."""
ARENA_MAX = 2


@functools.cache
def _libc() -> object | None:
    """The C library, loaded once for both calls."""
    import ctypes  # noqa: PLC0415 - only once the listeners serve: off the /status path

    # glibc's soname, opened directly: `ctypes.util.find_library` would run ldconfig on the loop.
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


def limit_arenas(environ: dict[str, str] | None = None) -> bool:
    """Cap glibc's arenas at `ARENA_MAX` unless `MALLOC_ARENA_MAX` is set; True when capped.

    Call it before the process starts its worker threads: arenas that already exist stay."""
    env = os.environ if environ is None else environ
    if "MALLOC_ARENA_MAX" in env:
        return False
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(M_ARENA_MAX, ARENA_MAX))


def trim() -> bool:
    """Return the heap's free pages to the kernel; True when glibc released any."""
    libc = _libc()
    malloc_trim = getattr(libc, "malloc_trim", None)
    if malloc_trim is None:
        return False
    released = bool(malloc_trim(0))
    log.debug("malloc_trim: %s", "memory released" if released else "nothing to release")
    return released


async def trim_in_thread() -> None:
    """`trim` in a worker thread: a large heap takes milliseconds to walk."""
    await asyncio.to_thread(trim)
