"""The memory of compute_ctl's init when it is a container's PID 1 (docs/benchmarks.md, "PID 1").

compute_ctl is started as PID 1 of a new PID namespace (`unshare`, then `setpriv` to the server
user, which execs: PID 1 is compute_ctl itself, as in a container) with no spec, so it waits for
`/configure` with its HTTP API up. Once `/status` answers, the init (PID 1) and the compute_ctl
it forked are read from /proc: VmRSS and VmHWM of each. Two ways in are measured, a few starts
each: the installed `compute_ctl` command (compute_ctl/entry.py, which forks before importing
anything heavy) and `python -m compute_ctl.cli`, which forks only after the command line's
imports. Goal: the init's VmRSS ≤ 15 MiB.

    python bench/pid1_memory.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (
    ROOT,
    compile_bytecode,
    compute_ctl_argv,
    get,
    machine,
    now_iso,
    progress,
    rss_kib,
    write_result,
)
from tests.support.harness import free_port, shared_tempdir

from compute_dev.pgbin import RunAs, find_pg_bin, server_user

TAG = "pid1"
GOAL_MIB = 15.0


def children(parent: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            text = Path(f"/proc/{name}/status").read_text()
        except OSError:
            continue
        if f"\nPPid:\t{parent}\n" in text:
            found.append(int(name))
    return found


def one_start(command: list[str], user: RunAs, workdir: Path) -> dict[str, float]:
    """Start `command` as PID 1, wait for /status, return the two processes' memory (MiB)."""
    port, internal = free_port(), free_port()
    argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    if not user.is_self:
        argv += ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", "--"]
    argv += [*command, "-D", str(workdir / "pgdata"), "-i", "bench-pid1"]
    argv += ["-C", "postgresql://cloud_admin@127.0.0.1:55432/postgres"]
    argv += ["-b", str(find_pg_bin() / "postgres")]
    argv += ["--external-http-port", str(port), "--internal-http-port", str(internal)]
    with open(workdir / "compute_ctl.log", "ab") as log:
        unshare = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=user.env(dict(os.environ)), cwd=workdir
        )
    try:
        deadline = time.monotonic() + 60
        while (answer := get(port, "/status", timeout=2)) is None or answer[0] != 200:
            if unshare.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"compute_ctl did not answer; see {workdir}/compute_ctl.log")
            time.sleep(0.05)
        time.sleep(0.5)  # let the start-up settle: the idle figures are wanted
        (init,) = children(unshare.pid)
        (ctl,) = children(init)
        init_rss, init_hwm = rss_kib(init)
        ctl_rss, ctl_hwm = rss_kib(ctl)
        return {
            "init_rss_mib": init_rss / 1024,
            "init_hwm_mib": init_hwm / 1024,
            "compute_ctl_rss_mib": ctl_rss / 1024,
            "compute_ctl_hwm_mib": ctl_hwm / 1024,
        }
    finally:
        for pid in children(unshare.pid):  # SIGKILL to PID 1 ends the whole namespace
            os.kill(pid, signal.SIGKILL)
        unshare.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("unshare") is None or shutil.which("setpriv") is None:
        print("pid1_memory: unshare and setpriv (util-linux) are needed", file=sys.stderr)
        return 2
    compile_bytecode(TAG)
    user = server_user()
    workdir = shared_tempdir("bench-pid1-")
    ways = {
        "compute_ctl (entry.py)": compute_ctl_argv(),
        "python -m compute_ctl.cli": [sys.executable, "-m", "compute_ctl.cli"],
    }
    results: dict[str, dict[str, float]] = {}
    for name, command in ways.items():
        samples = [one_start(command, user, workdir) for _ in range(args.runs)]
        medians = {key: round(statistics.median(s[key] for s in samples), 1) for key in samples[0]}
        results[name] = medians
        progress(TAG, f"{name}: {medians}")
    shutil.rmtree(workdir, ignore_errors=True)
    init = results["compute_ctl (entry.py)"]["init_rss_mib"]
    report = {
        "date": now_iso(),
        "machine": machine(),
        "runs": args.runs,
        "goal_init_rss_mib": GOAL_MIB,
        "met": init <= GOAL_MIB,
        "results": results,
        "source": str(Path(__file__).relative_to(ROOT)),
    }
    write_result("pid1_memory", report, TAG)
    return 0 if init <= GOAL_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
