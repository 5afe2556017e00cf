"""Swap resize and disk quota, run against stand-in helper programs (real processes)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from compute_ctl.compute.vm_tools import (
    VmTools,
    exit_text,
    find_mountpoint,
    resize_swap,
    set_disk_quota,
)
from compute_ctl.errors import ComputeError, chain_text


def helper(bin_dir: Path, name: str, exit_code: int = 0) -> Path:
    """A stand-in helper that records its arguments, one line per call, and exits."""
    record = bin_dir / f"{name}.calls"
    script = bin_dir / name
    script.write_text(f'#!/bin/sh\necho "$*" >> {record}\nexit {exit_code}\n')
    script.chmod(0o755)
    return record


def tools(tmp_path: Path) -> VmTools:
    return VmTools(bin_dir=tmp_path, sudo=())


def test_environment_relocates_the_helpers() -> None:
    assert VmTools.from_environ({}) == VmTools(Path("/neonvm/bin"), ("/usr/bin/sudo",))
    relocated = VmTools.from_environ({"COMPUTE_CTL_NEONVM_BIN": "/opt/vm", "COMPUTE_CTL_SUDO": ""})
    assert relocated == VmTools(Path("/opt/vm"), ())
    assert relocated.resize_swap_bin == Path("/opt/vm/resize-swap")


def test_resize_swap_runs_once_with_the_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = helper(tmp_path, "resize-swap")
    with caplog.at_level(logging.INFO):
        asyncio.run(resize_swap(tools(tmp_path), 1 << 30))
    assert record.read_text() == f"--once {1 << 30}\n"
    assert "resized swap: size_bytes=1073741824 size_mib=1024.0" in caplog.text


def test_resize_swap_failure_fails_with_the_exit_status(tmp_path: Path) -> None:
    helper(tmp_path, "resize-swap", exit_code=3)
    with pytest.raises(ComputeError) as caught:
        asyncio.run(resize_swap(tools(tmp_path), 4096))
    assert chain_text(caught.value) == (
        "failed to resize swap\n\nCaused by:\n    process exited with exit status: 3"
    )


def test_missing_resize_swap_is_tolerated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    asyncio.run(resize_swap(tools(tmp_path), 4096))  # run directly: the program is missing
    # through a sudo stand-in that fails because the helper is missing
    sudo = tmp_path / "sudo"
    sudo.write_text('#!/bin/sh\n[ -x "$1" ] || exit 1\nexec "$@"\n')
    sudo.chmod(0o755)
    asyncio.run(resize_swap(VmTools(tmp_path, (str(sudo),)), 4096))
    assert caplog.text.count('ignoring "not found" error from resize-swap') == 2


def test_disk_quota_in_kib_for_the_mountpoint(tmp_path: Path) -> None:
    record = helper(tmp_path, "set-disk-quota")
    asyncio.run(set_disk_quota(tools(tmp_path), 10 * 1024 * 1024 + 5, str(tmp_path)))
    mountpoint = asyncio.run(find_mountpoint(str(tmp_path)))
    assert os.path.ismount(mountpoint)
    assert record.read_text() == f"10240 {mountpoint}\n"


def test_disk_quota_failures_name_the_step(tmp_path: Path) -> None:
    helper(tmp_path, "set-disk-quota", exit_code=1)
    with pytest.raises(ComputeError) as caught:
        asyncio.run(set_disk_quota(tools(tmp_path), 1 << 20, str(tmp_path)))
    assert chain_text(caught.value) == (
        "failed to set disk quota\n\nCaused by:\n"
        f"    0: could not run `{tmp_path / 'set-disk-quota'}`\n"
        "    1: process exited with exit status: 1"
    )
    with pytest.raises(ComputeError) as missing_dir:
        asyncio.run(set_disk_quota(tools(tmp_path), 1 << 20, str(tmp_path / "absent")))
    assert chain_text(missing_dir.value).startswith(
        "failed to set disk quota\n\nCaused by:\n    process exited with exit status: 1"
    )
    (tmp_path / "set-disk-quota").unlink()
    with pytest.raises(ComputeError, match="failed to set disk quota"):
        asyncio.run(set_disk_quota(tools(tmp_path), 1 << 20, str(tmp_path)))


def test_exit_text_reads_like_upstreams() -> None:
    assert exit_text(0) == "exit status: 0"
    assert exit_text(-9) == "signal: 9 (SIGKILL)"
