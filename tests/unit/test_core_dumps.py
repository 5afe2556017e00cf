"""Core dumps: the core size limit, finding cores, and running the debugger with stand-ins for
gdb and lldb (found through PATH, as the real ones are), including one that hangs."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compute_ctl.compute import core_dumps
from compute_dev.pgbin import server_user

LIMIT_PROBE = """
import logging, resource, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
resource.setrlimit(resource.RLIMIT_CORE, (0, int(sys.argv[1])))
from compute_ctl.compute.core_dumps import raise_core_limit
raise_core_limit()
soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
print("limits", soft, hard)
"""


def probe_limits(hard: int, *, unprivileged: bool) -> tuple[list[str], tuple[int, int]]:
    run_as = server_user()
    result = subprocess.run(
        [sys.executable, "-c", LIMIT_PROBE, str(hard)],  # RLIM_INFINITY is -1
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        preexec_fn=run_as.preexec() if unprivileged else None,
        env=run_as.env(dict(os.environ)) if unprivileged else None,
        cwd="/",
    )
    lines = result.stdout.splitlines()
    soft_text, hard_text = lines[-1].split()[1:]
    return lines[:-1], (int(soft_text), int(hard_text))


def test_limit_raised_to_unlimited_within_the_hard_limit() -> None:
    """Soft 0, hard unlimited (the usual shell default): soft goes up, nothing logged."""
    logged, limits = probe_limits(resource.RLIM_INFINITY, unprivileged=False)
    assert limits == (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    assert logged == []


def test_limit_raised_to_the_hard_limit_without_the_privilege() -> None:
    """A finite hard limit that this user may not raise: soft goes up to it, one warning."""
    run_as = server_user()
    if os.geteuid() == 0 and run_as.is_self:
        pytest.skip("no unprivileged user to run as")
    logged, limits = probe_limits(1 << 20, unprivileged=True)
    assert limits == (1 << 20, 1 << 20)
    assert logged == [
        "WARNING core file size limit raised to the hard limit 1048576 bytes only: "
        "not allowed to make it unlimited"
    ]


def test_find_core_dumps(tmp_path: Path) -> None:
    for name in ("core", "core.1234", "core.postgres.77", "corefile", "xcore", "PG_VERSION"):
        (tmp_path / name).write_text("x")
    (tmp_path / "core.d").mkdir()
    assert core_dumps.find_core_dumps(tmp_path) == [
        tmp_path / "core",
        tmp_path / "core.1234",
        tmp_path / "core.postgres.77",
    ]


def test_core_dump_dir() -> None:
    pgdata = Path("/data/pgdata")
    if sys.platform == "darwin":
        assert core_dumps.core_dump_dir(pgdata, lakebase=False) == Path("/cores")
    else:
        assert core_dumps.core_dump_dir(pgdata, lakebase=False) == pgdata
        assert core_dumps.core_dump_dir(pgdata, lakebase=True) == Path(
            "/databricks/logs/brickstore"
        )


def fake_debugger(bindir: Path, name: str, body: str) -> None:
    path = bindir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def bindir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only the stand-ins a test puts there."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    return path


def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records]


def test_backtrace_with_gdb(tmp_path: Path, bindir: Path, caplog: pytest.LogCaptureFixture) -> None:
    fake_debugger(bindir, "gdb", 'echo "#0  0x1 in abort () args: $*"; echo "gdb note" >&2')
    fake_debugger(bindir, "lldb", "echo lldb must not run; exit 1")
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "core.42").write_bytes(b"\x7fELF")
    caplog.set_level(logging.INFO, logger="compute_ctl")
    asyncio.run(core_dumps.check_for_core_dumps(pgdata, "/usr/bin/postgres"))
    assert messages(caplog) == [
        ("INFO", f"checking for core dumps in {pgdata}"),
        ("WARNING", f"core dump found: {pgdata}/core.42, collecting backtrace"),
        (
            "WARNING",
            "core dump backtrace: #0  0x1 in abort () args: "
            f"--batch -q -ex bt /usr/bin/postgres {pgdata}/core.42\n",
        ),
        ("WARNING", "debugger stderr: gdb note\n"),
    ]


def test_lldb_when_gdb_is_missing(
    tmp_path: Path, bindir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_debugger(bindir, "lldb", 'echo "frame #0: args: $*"')
    (tmp_path / "core").write_bytes(b"\x7fELF")
    caplog.set_level(logging.INFO, logger="compute_ctl")
    asyncio.run(core_dumps.check_for_core_dumps(tmp_path, "/usr/bin/postgres"))
    assert ("WARNING", "cannot find gdb, trying lldb") in messages(caplog)
    assert (
        "WARNING",
        f"core dump backtrace: frame #0: args: -c {tmp_path}/core --batch -o bt all -o quit\n",
    ) in messages(caplog)


def test_no_debugger_is_only_logged(
    tmp_path: Path, bindir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "core").write_bytes(b"\x7fELF")
    (tmp_path / "core.2").write_bytes(b"\x7fELF")
    caplog.set_level(logging.INFO, logger="compute_ctl")
    asyncio.run(core_dumps.check_for_core_dumps(tmp_path, "/usr/bin/postgres"))
    errors = [m for level, m in messages(caplog) if level == "ERROR"]
    assert len(errors) == 2  # each core is tried
    assert all(m.startswith("error while checking for core dumps: ") for m in errors)


def test_a_hanging_debugger_is_killed(
    tmp_path: Path, bindir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pid_file = tmp_path / "gdb.pid"
    fake_debugger(bindir, "gdb", f"echo $$ > {pid_file}; exec /bin/sleep 60")
    (tmp_path / "core").write_bytes(b"\x7fELF")
    caplog.set_level(logging.INFO, logger="compute_ctl")
    started = time.monotonic()
    asyncio.run(core_dumps.check_for_core_dumps(tmp_path, "/usr/bin/postgres", timeout=0.5))
    assert time.monotonic() - started < 10
    assert (
        "ERROR",
        f"no backtrace of {tmp_path}/core: the debugger did not finish in 0.5 s",
    ) in messages(caplog)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


def test_long_output_is_capped(
    tmp_path: Path, bindir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_debugger(bindir, "gdb", "/usr/bin/head -c 70000 /dev/zero | /usr/bin/tr '\\0' a")
    (tmp_path / "core").write_bytes(b"\x7fELF")
    caplog.set_level(logging.INFO, logger="compute_ctl")
    asyncio.run(core_dumps.check_for_core_dumps(tmp_path, "/usr/bin/postgres"))
    backtrace = next(m for _, m in messages(caplog) if m.startswith("core dump backtrace: "))
    assert backtrace.endswith("a\n[4464 more bytes not shown]")


def test_missing_directory_is_quiet(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="compute_ctl")
    asyncio.run(core_dumps.check_for_core_dumps(tmp_path / "missing", "postgres"))
    assert [level for level, _ in messages(caplog)] == ["INFO"]
