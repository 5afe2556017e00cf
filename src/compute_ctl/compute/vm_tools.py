"""Swap size and disk quota: the two start-up steps that belong to the VM a compute runs in.

A NeonVM image ships helper programs under `/neonvm/bin` that may only be run through sudo.
When the operator passes `--resize-swap-on-bind` and the spec has `swap_size_bytes`, the swap
is resized with `resize-swap --once <bytes>` before Postgres starts (`--once` makes the helper
delete itself afterwards, so a restarted compute_ctl cannot swapoff under a running Postgres).
With `--set-disk-quota-for-fs <dir>` and `disk_quota_bytes`, `set-disk-quota <KiB> <mountpoint>`
sets the quota of the file system holding that directory. A failure of either fails the start,
as upstream; a missing resize-swap helper is tolerated (an image without swap support).

`COMPUTE_CTL_NEONVM_BIN` (default `/neonvm/bin`) and `COMPUTE_CTL_SUDO` (default
`/usr/bin/sudo`; empty: run the helper directly) relocate both for tests and other installs.
Every program gets a time limit, so a stuck helper fails the start instead of hanging it.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from compute_ctl.errors import ComputeError
from compute_ctl.subprocesses import PIPE, run_bounded

log = logging.getLogger(__name__)

NEONVM_BIN_ENV = "COMPUTE_CTL_NEONVM_BIN"
SUDO_ENV = "COMPUTE_CTL_SUDO"
DEFAULT_NEONVM_BIN = "/neonvm/bin"
DEFAULT_SUDO = "/usr/bin/sudo"
STAT = "/usr/bin/stat"
# Turning a large swap file off and on again can take minutes; anything longer is stuck.
HELPER_TIMEOUT = 600.0
STAT_TIMEOUT = 30.0


@dataclass(frozen=True)
class VmTools:
    """Where the helpers are and how they are run."""

    bin_dir: Path = Path(DEFAULT_NEONVM_BIN)
    sudo: tuple[str, ...] = (DEFAULT_SUDO,)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> VmTools:
        bin_dir = Path(environ.get(NEONVM_BIN_ENV) or DEFAULT_NEONVM_BIN)
        sudo_value = environ.get(SUDO_ENV, DEFAULT_SUDO)
        sudo = (sudo_value,) if sudo_value else ()
        return cls(bin_dir, sudo)

    @property
    def resize_swap_bin(self) -> Path:
        return self.bin_dir / "resize-swap"

    @property
    def disk_quota_bin(self) -> Path:
        return self.bin_dir / "set-disk-quota"


def exit_text(returncode: int) -> str:
    """A child's end as upstream prints it (`exit status: 1`, `signal: 9 (SIGKILL)`)."""
    if returncode >= 0:
        return f"exit status: {returncode}"
    number = -returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"signal: {number}"
    return f"signal: {number} ({name})"


async def _run(argv: Sequence[str], timeout: float, *, capture: bool = False) -> tuple[int, bytes]:
    """Run `argv`; its exit code and (with `capture`) its stdout, which otherwise goes where
    ours goes, as upstream's helpers' output does. FileNotFoundError if the program does not
    exist; ComputeError on a timeout."""
    try:
        done = await run_bounded(argv, timeout, stdout=PIPE if capture else None)
    except TimeoutError:
        raise ComputeError(f"still running after {timeout:.0f} s: killed") from None
    return done.returncode, done.stdout


async def resize_swap(tools: VmTools, size_bytes: int) -> None:
    """`sudo resize-swap --once <bytes>`; ComputeError("failed to resize swap") with the
    cause, unless the helper does not exist (a warning, as upstream)."""
    argv = [*tools.sudo, str(tools.resize_swap_bin), "--once", str(size_bytes)]
    try:
        try:
            code, _ = await _run(argv, HELPER_TIMEOUT)
        except FileNotFoundError:
            code = None
        if code != 0 and not tools.resize_swap_bin.exists():
            log.warning(
                'ignoring "not found" error from resize-swap to avoid swapoff while compute '
                "is running"
            )
            return
        if code is None:
            raise ComputeError("spawn() failed: No such file or directory")
        if code != 0:
            raise ComputeError(f"process exited with {exit_text(code)}")
    except ComputeError as exc:
        raise ComputeError("failed to resize swap") from exc
    log.info("resized swap: size_bytes=%d size_mib=%.1f", size_bytes, size_bytes / (1 << 20))


async def find_mountpoint(directory: str) -> str:
    """The mount point of the file system holding `directory` (`stat -c %m`)."""
    try:
        code, out = await _run([STAT, "-c", "%m", directory], STAT_TIMEOUT, capture=True)
    except FileNotFoundError:
        raise ComputeError(f"spawn() failed: {STAT} not found") from None
    if code != 0:
        raise ComputeError(f"process exited with {exit_text(code)}")
    mountpoint = out.decode(errors="replace").strip()
    if not mountpoint:
        raise ComputeError("failed to parse mountpoint")
    return mountpoint


async def set_disk_quota(tools: VmTools, size_bytes: int, directory: str) -> None:
    """`sudo set-disk-quota <KiB> <mountpoint>` (0 KiB lifts the quota);
    ComputeError("failed to set disk quota") with the cause."""
    try:
        mountpoint = await find_mountpoint(directory)
        argv = [*tools.sudo, str(tools.disk_quota_bin), str(size_bytes // 1024), mountpoint]
        what = f"could not run `{' '.join([*tools.sudo, str(tools.disk_quota_bin)])}`"
        try:
            code, _ = await _run(argv, HELPER_TIMEOUT)
        except FileNotFoundError:
            raise ComputeError(what) from ComputeError("spawn() failed: No such file or directory")
        except ComputeError as exc:
            raise ComputeError(what) from exc
        if code != 0:
            raise ComputeError(what) from ComputeError(f"process exited with {exit_text(code)}")
    except ComputeError as exc:
        raise ComputeError("failed to set disk quota") from exc
    log.info(
        "set disk quota: disk_quota_bytes=%d size_mib=%.1f mountpoint=%s",
        size_bytes,
        size_bytes / (1 << 20),
        mountpoint,
    )
