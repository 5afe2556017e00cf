"""Swap resize and disk quota by a real compute_ctl, with stand-in NeonVM helpers relocated by
COMPUTE_CTL_NEONVM_BIN (and no sudo), so nothing outside the test's directory is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute

pytestmark = pytest.mark.postgres


def stand_ins(compute: Compute, swap_exit: int = 0) -> tuple[dict[str, str], Path]:
    """The environment, and the file each helper call is recorded in."""
    bin_dir = compute.workdir / "neonvm-bin"
    bin_dir.mkdir()
    calls = compute.workdir / "helper-calls"
    for name, code in (("resize-swap", swap_exit), ("set-disk-quota", 0)):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\nexit {code}\n')
        script.chmod(0o755)
    compute.run_as.chown(bin_dir)
    env = {"COMPUTE_CTL_NEONVM_BIN": str(bin_dir), "COMPUTE_CTL_SUDO": ""}
    return env, calls


def test_swap_and_quota_run_before_postgres(compute: Compute, make_spec: SpecFactory) -> None:
    env, calls = stand_ins(compute)
    spec = make_spec(swap_size_bytes=1 << 30, disk_quota_bytes=(1 << 30) + 512)
    args = ["--resize-swap-on-bind", "--set-disk-quota-for-fs", str(compute.workdir)]
    compute.start("-S", str(compute.write("spec.json", spec)), *args, env=env)
    compute.wait_status("running")
    lines = sorted(calls.read_text().splitlines())
    assert lines[0].startswith("resize-swap --once 1073741824")
    assert lines[1].startswith("set-disk-quota 1048576 /"), lines
    assert compute.sql("select 1") == 1


def test_without_the_flags_nothing_runs(compute: Compute, make_spec: SpecFactory) -> None:
    env, calls = stand_ins(compute)
    spec = make_spec(swap_size_bytes=1 << 30, disk_quota_bytes=1 << 30)
    compute.start("-S", str(compute.write("spec.json", spec)), env=env)
    compute.wait_status("running")
    assert not calls.exists()


def test_a_failed_swap_resize_fails_the_start(compute: Compute, make_spec: SpecFactory) -> None:
    env, calls = stand_ins(compute, swap_exit=2)
    spec = make_spec(swap_size_bytes=1 << 20)
    compute.start("-S", str(compute.write("spec.json", spec)), "--resize-swap-on-bind", env=env)
    status = compute.wait_status("failed")
    assert status["error"] == (
        "failed to resize swap\n\nCaused by:\n    process exited with exit status: 2"
    )
    assert calls.read_text() == f"resize-swap --once {1 << 20}\n"
    assert compute.wait_exit() == 1
