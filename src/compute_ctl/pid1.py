"""What compute_ctl does when it is PID 1 (a container's entrypoint): reap orphans, pass signals on.

An init process has two extra duties. Orphaned processes are re-parented to it and stay zombies
until it waits for them; and signals it has no handler for never reach it, so whatever the
container runtime sends (SIGTERM on `docker stop`, SIGINT on Ctrl-C) must be acted upon.

Reaping inside the supervising process itself is unsafe: the lifecycle's children (the
postmaster, `--sync-safekeepers`, `pg_ctl`, …) are waited for by asyncio's child watcher and by
`subprocess`, each with `waitpid(pid)` on its own pid, and a `waitpid(-1)` elsewhere in the
process would steal those exit statuses (the lifecycle would never see Postgres exit). Telling
orphans from our own children is not possible either: both have PID 1 as their parent.

So the process that is PID 1 forks at once, before any thread, event loop or child exists. The
child goes on to be compute_ctl, an ordinary process whose children are its own business. The
parent stays PID 1 as a tiny init, as `tini` does: its only own child is compute_ctl, so it can
reap with `waitpid(-1)` without stealing anything, since every orphan of the namespace is
re-parented to it, not to compute_ctl. It forwards the termination signals to compute_ctl (which
stops Postgres itself as the lifecycle reference's signal section says) and exits with
compute_ctl's exit status when compute_ctl exits; should compute_ctl leave processes behind, it
first gives them a bounded time to end (a postmaster finishing its fast shutdown). The kernel
then ends whatever else is left in the PID namespace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

FORWARDED_SIGNALS: tuple[signal.Signals, ...] = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
PR_SET_CHILD_SUBREAPER = 36
# How long PID 1 keeps reaping after compute_ctl has exited, while orphans are still running.
ORPHAN_GRACE = 10.0


def init_if_pid1() -> None:
    """Become the init described above when this process is PID 1; otherwise do nothing.

    Returns only in the process that is to carry on as compute_ctl. Call it first thing in
    `main`, before any thread or child process is started.
    """
    if os.getpid() == 1:
        become_init()


def become_init(*, subreaper: bool = False, grace: float = ORPHAN_GRACE) -> None:
    """Fork; the child returns and carries on, the parent supervises it and never returns.

    `subreaper` makes the parent adopt orphans without being PID 1 (Linux's child subreaper),
    which lets the same code run outside a PID namespace.
    """
    if subreaper:
        _set_child_subreaper()
    watched = {signal.SIGCHLD, *FORWARDED_SIGNALS}
    # Blocked before the fork, so nothing can arrive between the fork and the first sigwait.
    # Blocked signals are queued even for an init process (which drops unhandled ones).
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        return
    code = supervise(pid, watched, grace)
    # No flushing of inherited stdio buffers and no atexit handlers: they belong to the child.
    os._exit(code)


def supervise(child: int, watched: set[signal.Signals], grace: float = ORPHAN_GRACE) -> int:
    """Forward signals to `child` and reap every child until `child` exits; return the exit
    status to end with (the child's, or 128 + the signal that killed it, as a shell does).

    `watched` must be blocked in this thread: the signals are taken with `sigwait`.
    """
    while True:
        signum = signal.sigwait(watched)
        if signum != signal.SIGCHLD:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)
            continue
        exited, others = reap()
        if child in exited:
            if others:
                drain(watched, grace)
            return exit_code(exited[child])


def drain(watched: set[signal.Signals], grace: float) -> None:
    """Once compute_ctl has gone, reap the orphans it left (say a postmaster finishing its
    shutdown) until none is left, `grace` seconds have passed, or a signal says to stop.
    As PID 1, whatever is left when we exit is then killed by the kernel."""
    deadline = time.monotonic() + grace
    while (left := deadline - time.monotonic()) > 0:
        info = signal.sigtimedwait(watched, left)
        if info is None or info.si_signo != signal.SIGCHLD:
            return
        if not reap()[1]:
            return


def reap() -> tuple[dict[int, int], bool]:
    """Wait for every child that has exited: their wait statuses by pid, and whether any
    child is still running. SIGCHLDs coalesce, so one signal may stand for several exits."""
    exited: dict[int, int] = {}
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return exited, False
        if pid == 0:
            return exited, True
        exited[pid] = wait_status


def exit_code(wait_status: int) -> int:
    """A `waitpid` status as a process exit status: the code, or 128 + the signal number."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.waitstatus_to_exitcode(wait_status)


def _set_child_subreaper() -> None:
    # ctypes.util imports subprocess, shutil and more: only where a subreaper is asked for,
    # never in the init of a container (docs/benchmarks.md, "PID 1").
    import ctypes  # noqa: PLC0415
    import ctypes.util  # noqa: PLC0415

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
