"""SIGINT before the lifecycle installs its handlers: one line and exit status 1.

Each case is a real `compute_ctl` process that delivers a real SIGINT to itself at one point of
start-up (the point is chosen by wrapping the function that runs there, so the signal arrives
there every time, not by a timing race).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from compute_dev.pgbin import server_user
from tests.support.paths import PROJECT_ROOT

ARGS = ["-D", "/nonexistent/pgdata", "-C", "postgresql://cloud_admin@127.0.0.1:1/postgres"]

SCRIPT = """
import signal, sys
import {module} as target
original = target.{name}

def interrupted(*args, **kwargs):
    signal.raise_signal(signal.SIGINT)
    return original(*args, **kwargs)

{patch}
from compute_ctl.cli import main
sys.exit(main({args!r}))
"""

ASYNC_PATCH = """
import asyncio
async def interrupted_run(*args, **kwargs):
    signal.raise_signal(signal.SIGINT)
    await asyncio.sleep(30)
target.{name} = interrupted_run
"""


def run_interrupted(module: str, name: str, args: list[str], *, is_async: bool = False) -> str:
    patch = ASYNC_PATCH.format(name=name) if is_async else f"target.{name} = interrupted"
    code = SCRIPT.format(module=module, name=name, patch=patch, args=args)
    user = server_user()
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=60,
        check=False,
        preexec_fn=user.preexec(),  # compute_ctl refuses root
        env=user.env(),
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "KeyboardInterrupt" not in result.stderr, result.stderr
    assert result.returncode == 1, (result.returncode, result.stderr)
    return result.stderr


@pytest.mark.parametrize(
    ("module", "name", "is_async"),
    [
        ("compute_ctl.cli", "init_if_pid1", False),  # the first thing main does
        ("compute_ctl.cli", "parse_params", False),
        ("compute_ctl.cli", "setup_logging", False),
        ("compute_ctl.cli", "_load_inputs", False),  # reading the spec
        ("compute_ctl.main", "run_compute", True),  # in the event loop, early
    ],
)
def test_early_sigint_is_one_line_and_exit_1(module: str, name: str, is_async: bool) -> None:
    # An empty compute (no spec to read) gets as far as the event loop; with a spec path the
    # interrupted loader runs, and reading the absent file is never reached.
    args = [*ARGS, "-i", "compute-1"] if is_async else [*ARGS, "-S", "/nonexistent/spec.json"]
    stderr = run_interrupted(module, name, args, is_async=is_async)
    lines = [line for line in stderr.splitlines() if "interrupted" in line]
    assert lines == ["compute_ctl: error: interrupted (SIGINT) during start-up"], stderr
