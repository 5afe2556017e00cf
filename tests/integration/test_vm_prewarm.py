"""The VM memory prewarm's scratch cluster on a real PostgreSQL, run as the server user.

Stock PostgreSQL has no neon library, which upstream's scratch cluster preloads: with it left
out the cluster starts, is stopped with SIGQUIT and removed; with it, Postgres refuses to start,
the prewarm fails with that cause and still removes its directory.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from compute_ctl.compute.vm_prewarm import warmup_dir
from compute_dev.pgbin import PgBinNotFoundError, find_pg_bin, server_user
from tests.support.paths import PROJECT_ROOT

pytestmark = pytest.mark.postgres

SCRIPT = """
import asyncio, logging, sys
from pathlib import Path
from compute_ctl.compute.vm_prewarm import prewarm_vm_memory
from compute_ctl.errors import ComputeError
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
try:
    asyncio.run(prewarm_vm_memory(
        Path(sys.argv[1]), Path(sys.argv[2]), preload_neon=sys.argv[3] == "neon"
    ))
except ComputeError as exc:
    print("error:", exc)
    sys.exit(1)
"""


def run_prewarm(tmp: Path, preload: str) -> subprocess.CompletedProcess[str]:
    try:
        bindir = find_pg_bin()
    except PgBinNotFoundError as exc:
        pytest.skip(str(exc))
    user = server_user()
    user.chown(tmp)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(bindir / "postgres"), str(tmp / "pgdata"), preload],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
        preexec_fn=user.preexec(),
        env=user.env(),
        check=False,
    )


@pytest.fixture
def tmp() -> Iterator[Path]:
    # Readable by the server user (pytest's tmp_path lives under root's private directory).
    directory = Path(tempfile.mkdtemp(prefix="vm-prewarm-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_scratch_cluster_starts_stops_and_is_removed(tmp: Path) -> None:
    done = run_prewarm(tmp, "none")
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [
        "prewarming VM memory",
        "running initdb",
        "starting postgres",
        "waiting for postgres",
        "sent SIGQUIT signal",
        "done prewarming vm memory",
    ]
    logged = [line for line in done.stdout.splitlines() if line in steps]
    assert logged == steps
    assert not warmup_dir(tmp / "pgdata").exists()
    assert list(tmp.iterdir()) == []


def test_without_the_neon_library_the_prewarm_fails_and_cleans_up(tmp: Path) -> None:
    done = run_prewarm(tmp, "neon")
    assert done.returncode == 1
    assert "error: Postgres exited unexpectedly with code 1" in done.stdout
    assert "Traceback" not in done.stderr
    assert list(tmp.iterdir()) == []
