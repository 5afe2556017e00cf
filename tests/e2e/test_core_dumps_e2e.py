"""A postmaster that crashes leaves a core in PGDATA, and compute_ctl logs its backtrace.

Real parts only: compute_ctl lifts the core size limit for Postgres, the kernel writes the core
(this needs a `core_pattern` that writes `core` or `core.<pid>` into the crashing process's
directory, as on EKS nodes), and gdb reads it."""

from __future__ import annotations

import os
import resource
import shutil
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute

pytestmark = pytest.mark.postgres

CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")


def skip_reason() -> str | None:
    try:
        pattern = CORE_PATTERN.read_text().strip()
    except OSError:
        return f"{CORE_PATTERN} cannot be read: not Linux"
    if pattern.startswith("|"):
        return (
            f"kernel.core_pattern pipes cores to a program ({pattern.split()[0][1:]}), "
            "so none is written into PGDATA"
        )
    if "/" in pattern or "%" in pattern.split(".", 1)[0] or not pattern.startswith("core"):
        return (
            f"kernel.core_pattern is {pattern!r}: cores are not written as core or core.* "
            "into the crashing process's directory"
        )
    if shutil.which("gdb") is None and shutil.which("lldb") is None:
        return "neither gdb nor lldb is installed (scripts/install.sh test-tools installs gdb)"
    return None


def core_limits(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = line.split()[4:6]
            return soft, hard
    raise AssertionError(f"no core limit in /proc/{pid}/limits")


def test_crashed_postmaster_core_is_reported(compute: Compute, make_spec: SpecFactory) -> None:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    spec = make_spec()
    # A small shared memory segment keeps the core small.
    spec["cluster"]["settings"].append(
        {"name": "shared_buffers", "value": "16MB", "vartype": "string"}
    )
    compute.start("-S", str(compute.write("spec.json", spec)))
    status = compute.wait_status("running", "failed")
    assert status["status"] == "running", compute.log()

    pid = compute.postmaster_pid()
    soft, hard = core_limits(pid)
    assert soft == hard, "compute_ctl raises the soft core limit as far as it may"
    assert soft != "0"
    if resource.getrlimit(resource.RLIMIT_CORE)[1] == resource.RLIM_INFINITY:
        assert soft == "unlimited"

    os.kill(pid, signal.SIGABRT)
    assert compute.wait_exit(timeout=120) == 1, compute.log()

    cores = [p for p in compute.pgdata.iterdir() if p.name == "core" or p.name.startswith("core.")]
    assert len(cores) == 1, sorted(p.name for p in compute.pgdata.iterdir())
    log = compute.log()
    assert f"checking for core dumps in {compute.pgdata}" in log
    assert f"core dump found: {cores[0]}, collecting backtrace" in log
    backtrace = log.split("core dump backtrace: ", 1)[1]
    assert "#0 " in backtrace.split("debugger stderr: ", 1)[0], log
