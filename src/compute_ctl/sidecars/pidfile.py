"""Reading another program's pid file, and signalling the pid in it without hurting anyone else.

A pid file is only a hint: the program may have exited (its pid since recycled), or the file may
be empty or half written. local_proxy holds an exclusive `flock` on its pid file for as long as
it runs, so "locked" is proof that some live process owns the file; we test the lock the way
upstream does, by trying a non-blocking exclusive `flock` ourselves (released at once).
pgbouncer does not lock its file, so before a pid from it is signalled the process's name is
checked (where `/proc` exists).

Whatever the file says, pids 0 and 1, negative pids (process groups), our own pid and values
that are not plain decimal numbers are never signalled.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import signal
import stat
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAX_PID = 1 << 22  # Linux's largest possible pid_max
_PID = re.compile(rb"\s*([0-9]{1,7})\s*\Z")
_READ_LIMIT = 64


@dataclass(frozen=True)
class PidFileRead:
    """What a pid file holds. `pid` is None when the file is missing (`exists` false) or its
    content is not a usable pid (`problem` says why)."""

    path: Path
    exists: bool
    locked: bool = False
    pid: int | None = None
    problem: str | None = None


def read_pid_file(path: Path) -> PidFileRead:
    try:
        # O_NONBLOCK: a FIFO planted at the path must not block us.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return PidFileRead(path, exists=False)
    except OSError as exc:
        return PidFileRead(path, exists=True, problem=f"cannot be opened: {exc.strerror}")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return PidFileRead(path, exists=True, problem="is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = False
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                return PidFileRead(path, exists=True, problem=f"cannot be locked: {exc.strerror}")
            locked = True
        content = os.read(fd, _READ_LIMIT)
    except OSError as exc:
        return PidFileRead(path, exists=True, problem=f"cannot be read: {exc.strerror}")
    finally:
        os.close(fd)  # releases our lock, if we took it
    pid, problem = _parse(content)
    return PidFileRead(path, exists=True, locked=locked, pid=pid, problem=problem)


def _parse(content: bytes) -> tuple[int | None, str | None]:
    match = _PID.match(content)
    if match is None:
        return None, "does not hold a process id"
    pid = int(match.group(1))
    if pid <= 1 or pid > MAX_PID:
        return None, f"holds {pid}, which is not a process id we may signal"
    if pid == os.getpid():
        return None, "holds our own process id"
    return pid, None


def process_name(pid: int) -> str | None:
    """The kernel's name of process `pid` (`/proc/PID/comm`); None without `/proc`.
    FileNotFoundError when there is no such process."""
    if not os.path.isdir("/proc/self"):
        return None
    try:
        return Path(f"/proc/{pid}/comm").read_text(errors="replace").strip()
    except FileNotFoundError:
        raise
    except OSError:
        return None


def send_signal(what: str, pid: int, signum: signal.Signals) -> bool:
    """Signal `pid` (already vetted by `read_pid_file`); log the outcome in one line."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        log.info("%s (pid %d) is not running", what, pid)
        return False
    except OSError as exc:
        log.error("could not send %s to %s (pid %d): %s", signum.name, what, pid, exc.strerror)
        return False
    log.info("sent %s to %s (pid %d)", signum.name, what, pid)
    return True
