"""The shutdown sync with the safekeepers, on an installation that looks like Neon's.

Stock PostgreSQL has neither the neon extension nor `postgres --sync-safekeepers`, so the test
builds a bin directory whose `postgres` answers `--sync-safekeepers` itself (and runs the real
server otherwise) and whose `pg_config` reports a library directory holding a `neon.so`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute, http

pytestmark = pytest.mark.postgres


def neon_like_bindir(compute: Compute, sync_output: str, sync_status: int) -> Path:
    real = compute.pg_bin
    bindir = compute.workdir / "neon-bin"
    libdir = compute.workdir / "neon-lib"
    bindir.mkdir()
    libdir.mkdir()
    (libdir / "neon.so").write_bytes(b"")
    scripts = {
        "postgres": f"""#!/bin/sh
if [ "$1" = "--sync-safekeepers" ]; then
    echo '{sync_output}'
    exit {sync_status}
fi
exec '{real}/postgres' "$@"
""",
        "pg_config": f"""#!/bin/sh
if [ "$1" = "--pkglibdir" ]; then
    echo '{libdir}'
    exit 0
fi
exec '{real}/pg_config' "$@"
""",
    }
    for name, text in scripts.items():
        path = bindir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.symlink(real / "pg_ctl", bindir / "pg_ctl")
    for path in (bindir, libdir):
        compute.run_as.chown(path)
    return bindir


def test_terminate_answers_the_synced_lsn(compute: Compute, make_spec: SpecFactory) -> None:
    compute.pg_bin = neon_like_bindir(compute, "0/16B5A50", 0)
    compute.start("-S", str(compute.write("spec.json", make_spec())))
    compute.wait_status("running")
    answer = http("POST", f"{compute.url}/terminate?mode=immediate")
    assert (answer.status, answer.json()) == (200, {"lsn": "0/16B5A50"})
    assert compute.wait_exit() == 0
    assert "safekeepers synced at 0/16B5A50 after Postgres exited" in compute.log()


def test_a_failed_shutdown_sync_exits_1_at_once(compute: Compute, make_spec: SpecFactory) -> None:
    compute.pg_bin = neon_like_bindir(compute, "no quorum", 1)
    compute.start("-S", str(compute.write("spec.json", make_spec())))
    compute.wait_status("running")
    assert compute.process is not None
    pid = compute.postmaster_pid()
    os.kill(pid, 2)  # a fast shutdown of Postgres from outside, as `pg_ctl stop -m fast` does
    assert compute.wait_exit(timeout=10) == 1
    assert "shutdown sync with the safekeepers failed" in compute.log()
    assert "exited with non-zero status: exit status: 1. stdout: no quorum" in compute.log()
