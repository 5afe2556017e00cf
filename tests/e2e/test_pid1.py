"""compute_ctl as PID 1: orphans are reaped, signals reach the lifecycle, the exit status passes.

The whole-process tests run compute_ctl as PID 1 of a new PID namespace (as a container runtime
would), with the compute itself running as the server user, and look at the namespace's
processes from outside through /proc. The subreaper tests run the same init code without a
namespace (Linux's child subreaper adopts orphans the way PID 1 does), so they show that the
lifecycle's own children still report their exit statuses while orphans are being reaped.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from compute_ctl.compute.node import STOP_TIMEOUT
from compute_dev.pgbin import RunAs, server_user
from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute, http
from tests.support.paths import PROJECT_ROOT
from tests.support.waiting import DEADLINE, wait_until

# ------------------------------------------------------------------------------------------------
# /proc from outside


def proc_status(pid: int) -> dict[str, str] | None:
    """The fields of /proc/PID/status, or None once the process is gone (reaped)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def namespace_members(namespace: str) -> dict[int, dict[str, str]]:
    """Every process (zombies included) in the PID namespace, by its pid as seen from here."""
    members: dict[int, dict[str, str]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and pid_namespace(int(name)) == namespace:
            status = proc_status(int(name))
            if status is not None:
                members[int(name)] = status
    return members


def zombies(processes: dict[int, dict[str, str]]) -> list[int]:
    return [pid for pid, status in processes.items() if status["State"].startswith("Z")]


def children_of(parent: int) -> dict[int, dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    for name in os.listdir("/proc"):
        status = proc_status(int(name)) if name.isdigit() else None
        if status is not None and status.get("PPid") == str(parent):
            found[int(name)] = status
    return found


# ------------------------------------------------------------------------------------------------
# A compute in its own PID namespace


def namespace_problem() -> str | None:
    """Why a PID namespace cannot be made here, or None when it can."""
    for tool in ("unshare", "nsenter", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"],
        capture_output=True,
        text=True,
        check=False,
        timeout=DEADLINE,
    )
    if probe.returncode != 0:
        return f"unshare is not permitted here: {probe.stderr.strip()}"
    return None


@dataclass
class Namespace:
    """compute_ctl started as PID 1 of a new PID namespace by `unshare`."""

    compute: Compute
    unshare: subprocess.Popen[bytes]
    init_pid: int  # the namespace's PID 1, as seen from here
    namespace: str

    def members(self) -> dict[int, dict[str, str]]:
        return namespace_members(self.namespace)

    def make_orphan(self) -> int:
        """Start `sleep` in the namespace from a shell that exits at once; return its pid."""
        user = self.compute.run_as
        subprocess.run(
            [
                *("nsenter", f"--target={self.init_pid}", "--pid"),
                *(f"--setuid={user.uid}", f"--setgid={user.gid}", "--"),
                *("sh", "-c", "sleep 1000 </dev/null >/dev/null 2>&1 & exit 0"),
            ],
            check=True,
            timeout=DEADLINE,
        )
        found: list[int] = []

        def started() -> bool:
            found[:] = [pid for pid in self.members() if cmdline(pid) == ["sleep", "1000"]]
            return len(found) == 1

        wait_until("the orphan", started)
        return found[0]


Starter = Callable[..., Namespace]


def as_pid1(user: RunAs) -> list[str]:
    """The command that runs compute_ctl as PID 1 of a new PID namespace, as `user`."""
    argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    if not user.is_self:  # setpriv execs (runuser would fork): PID 1 is compute_ctl itself
        argv += ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", "--"]
    return [*argv, sys.executable, "-m", "compute_ctl.entry"]


@pytest.fixture
def pid1(compute: Compute) -> Iterator[Starter]:
    problem = namespace_problem()
    if problem is not None:
        pytest.skip(problem)
    launched: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> Namespace:
        user = compute.run_as
        argv = [*as_pid1(user), "-D", str(compute.pgdata)]
        argv += ["-C", compute.connstr, "-b", str(compute.pg_bin / "postgres")]
        argv += ["--external-http-port", str(compute.http_port)]
        argv += ["--internal-http-port", str(compute.internal_port), "--dev", *args]
        with open(compute.log_path, "wb") as log:
            unshare = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=user.env(dict(os.environ)),
                cwd=compute.workdir,
            )
        compute.process = unshare
        launched.append(unshare)
        init: list[int] = []

        def init_started() -> bool:
            if unshare.poll() is not None:
                raise AssertionError(f"unshare exited early:\n{compute.log()}")
            init[:] = [
                pid for pid in children_of(unshare.pid) if "compute_ctl.entry" in cmdline(pid)
            ]
            return bool(init)

        wait_until("compute_ctl as PID 1", init_started)
        namespace = pid_namespace(init[0])
        assert namespace is not None and namespace != pid_namespace(os.getpid())
        wait_until("the HTTP API", lambda: _listening(compute, unshare))
        return Namespace(compute, unshare, init[0], namespace)

    try:
        yield start
    finally:
        for unshare in launched:
            if unshare.poll() is None:  # a failed test: SIGKILL to PID 1 ends the namespace
                for pid in children_of(unshare.pid):
                    os.kill(pid, signal.SIGKILL)
                unshare.kill()
            unshare.wait(DEADLINE)
        # postmaster.pid holds a pid of the namespace: the compute fixture must not act on it.
        compute.pgdata.joinpath("postmaster.pid").unlink(missing_ok=True)


def _listening(compute: Compute, unshare: subprocess.Popen[bytes]) -> bool:
    if unshare.poll() is not None:
        raise AssertionError(f"compute_ctl exited early:\n{compute.log()}")
    try:
        with socket.create_connection(("127.0.0.1", compute.http_port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.postgres
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_pid1_reaps_orphans_and_stops_on_signal(
    signum: signal.Signals, compute: Compute, make_spec: SpecFactory, pid1: Starter
) -> None:
    ns = pid1("-S", str(compute.write("spec.json", make_spec())))
    compute.wait_status("running")

    # PID 1 is compute_ctl's init; compute_ctl proper is its child, and Postgres is that
    # child's child (not PID 1's, which never waits on the lifecycle's processes).
    members = ns.members()
    assert members[ns.init_pid]["NSpid"].split()[-1] == "1"
    ctl = [
        pid
        for pid, status in members.items()
        if status["PPid"] == str(ns.init_pid) and "compute_ctl.entry" in cmdline(pid)
    ]
    assert len(ctl) == 1, members
    postmaster = [
        pid
        for pid, status in members.items()
        if status["PPid"] == str(ctl[0]) and status["Name"] == "postgres"
    ]
    assert len(postmaster) == 1, members
    assert members[ctl[0]]["Uid"].split()[0] == str(compute.run_as.uid)

    # An orphan is adopted by PID 1 and, once dead, reaped: no zombie is left.
    orphan = ns.make_orphan()
    assert (proc_status(orphan) or {}).get("PPid") == str(ns.init_pid)
    os.kill(orphan, signal.SIGKILL)
    wait_until("the orphan reaped", lambda: proc_status(orphan) is None)
    assert zombies(ns.members()) == []
    assert compute.status()["status"] == "running"

    # The signal reaches the lifecycle, which stops Postgres with a fast shutdown and exits 1
    # (upstream's code on a signal); the init ends with that status, and the namespace with it.
    os.kill(ns.init_pid, signum)
    assert compute.wait_exit(timeout=STOP_TIMEOUT) == 1, compute.log()
    wait_until("the namespace to be empty", lambda: not ns.members())
    log = compute.log()
    assert f"received signal {signum.name}" in log, log
    assert "received fast shutdown request" in log, log
    assert "Traceback" not in log, log
    assert not compute.pgdata.joinpath("postmaster.pid").exists()


@pytest.mark.postgres
def test_pid1_passes_the_exit_status_on(
    compute: Compute, make_spec: SpecFactory, pid1: Starter
) -> None:
    ns = pid1("-S", str(compute.write("spec.json", make_spec())))
    compute.wait_status("running")
    assert readiness_probe(compute).returncode == 0  # the container's probe, on the real API
    answer = http("POST", f"{compute.url}/terminate?mode=immediate")
    assert answer.status == 200, answer
    assert readiness_probe(compute).returncode == 1
    assert compute.wait_exit() == 0, compute.log()
    assert ns.members() == {}


def readiness_probe(compute: Compute) -> subprocess.CompletedProcess[str]:
    probe = PROJECT_ROOT / "deploy" / "compute_ctl_probe.py"
    env = {**os.environ, "EXTERNAL_HTTP_PORT": str(compute.http_port)}
    return subprocess.run(
        [sys.executable, str(probe), "ready"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=DEADLINE,
    )


def test_pid1_usage_error_exits_2() -> None:
    problem = namespace_problem()
    if problem is not None:
        pytest.skip(problem)
    argv = [*as_pid1(server_user()), "-D", "pgdata", "-C", "postgresql://u@localhost/postgres"]
    result = subprocess.run(
        [*argv, "--spec-path", "a.json", "--config", "b.json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=DEADLINE,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "compute_ctl: error: --config and --spec-path cannot be used together\n"
    )


# ------------------------------------------------------------------------------------------------
# The same init as a child subreaper, without a namespace

CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, subprocess, sys
    from compute_ctl.pid1 import become_init

    become_init(subreaper=True, grace=float(sys.argv[1]))
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(3))
    N = 30

    async def own_children():
        codes = []
        for code in range(N):
            # each shell leaves an orphan behind as it exits with its own code
            proc = await asyncio.create_subprocess_exec("sh", "-c", f"(exit 0) & exit {code}")
            codes.append(await proc.wait())
        return codes

    orphan = subprocess.run(
        ["sh", "-c", "sleep 1000 </dev/null >/dev/null 2>&1 & echo $!"],
        capture_output=True, text=True, check=True,
    )
    print("orphan", orphan.stdout.strip(), flush=True)
    print("asyncio", asyncio.run(own_children()) == list(range(N)), flush=True)
    codes = [subprocess.run(["sh", "-c", f"(exit 0) & exit {c}"]).returncode for c in range(N)]
    print("subprocess", codes == list(range(N)), flush=True)
    print("pid", os.getpid(), flush=True)
    sys.stdin.read()
    sys.exit(42)
    """
)


class Lines:
    """Lines from a child's stdout, each awaited with a deadline."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.fd = process.stdout.fileno()
        self.buffer = b""

    def next(self) -> str:
        deadline = time.monotonic() + DEADLINE
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise AssertionError("timed out waiting for a line from the child")
            chunk = os.read(self.fd, 4096)
            if not chunk:
                raise AssertionError(f"the child closed its output: {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


@dataclass
class Init:
    """The init (as a child subreaper) running CHILD, and what CHILD told."""

    process: subprocess.Popen[bytes]
    child: int
    orphan: int

    def end_child(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()


InitFactory = Callable[[float], Init]


@pytest.fixture
def init() -> Iterator[InitFactory]:
    running: list[tuple[subprocess.Popen[bytes], int]] = []

    def start(grace: float) -> Init:
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(grace)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        lines = Lines(process)
        orphan = int(lines.next().removeprefix("orphan "))
        running.append((process, orphan))
        # The lifecycle's own children reported their statuses while orphans were reaped.
        assert lines.next() == "asyncio True"
        assert lines.next() == "subprocess True"
        child = int(lines.next().removeprefix("pid "))
        assert (proc_status(orphan) or {}).get("PPid") == str(process.pid)
        wait_until("no zombie", lambda: zombies(children_of(process.pid)) == [])
        wait_until("the orphans gone", lambda: set(children_of(process.pid)) == {child, orphan})
        return Init(process, child, orphan)

    try:
        yield start
    finally:
        for process, orphan in running:
            if cmdline(orphan) == ["sleep", "1000"]:
                os.kill(orphan, signal.SIGKILL)
            if process.poll() is None:
                for pid in children_of(process.pid):  # while they are still its own
                    os.kill(pid, signal.SIGKILL)
                process.kill()
            process.wait(DEADLINE)
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()


def kill_orphan(init: Init) -> None:
    os.kill(init.orphan, signal.SIGKILL)
    wait_until("the orphan reaped", lambda: proc_status(init.orphan) is None)


def test_init_reaps_without_stealing_statuses_and_passes_exit_code(init: InitFactory) -> None:
    started = init(DEADLINE)
    kill_orphan(started)
    assert children_of(started.process.pid).keys() == {started.child}
    started.end_child()
    assert started.process.wait(DEADLINE) == 42


def test_init_forwards_signals(init: InitFactory) -> None:
    started = init(DEADLINE)
    kill_orphan(started)
    started.process.send_signal(signal.SIGTERM)
    assert started.process.wait(DEADLINE) == 3
    assert proc_status(started.child) is None


def test_init_reports_a_killed_child_as_128_plus_signal(init: InitFactory) -> None:
    started = init(DEADLINE)
    kill_orphan(started)
    os.kill(started.child, signal.SIGKILL)
    assert started.process.wait(DEADLINE) == 128 + signal.SIGKILL


def test_init_waits_for_orphans_left_behind(init: InitFactory) -> None:
    started = init(DEADLINE)
    started.end_child()
    wait_until("the child reaped", lambda: proc_status(started.child) is None)
    # The child is gone but an orphan still runs: the init keeps reaping, within its grace.
    assert started.process.poll() is None
    kill_orphan(started)
    assert started.process.wait(DEADLINE) == 42


def test_init_gives_up_on_orphans_after_its_grace(init: InitFactory) -> None:
    started = init(0.2)
    started.end_child()
    assert started.process.wait(DEADLINE) == 42
    assert cmdline(started.orphan) == ["sleep", "1000"]  # left to the kernel (or our init)
