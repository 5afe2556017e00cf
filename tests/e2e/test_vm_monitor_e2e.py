"""compute_ctl serves the vm-monitor when, and only when, `AUTOSCALING` is set.

With `AUTOSCALING`, Postgres is started under `cgexec -g memory:neon-postgres`; this machine has
no cgexec, so a stand-in that only drops the `-g` option comes first on PATH. Stock PostgreSQL
has no file cache and the test machine may have no cgroup v2: the monitor then manages nothing,
says so in the log, and still answers the agent.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute, free_port, http
from tests.support.waiting import DEADLINE

pytestmark = pytest.mark.postgres

CGEXEC_STAND_IN = """#!/bin/sh
# cgexec stand-in: drop "-g <controllers>:<path>" and run the command as it is.
if [ "$1" = "-g" ]; then shift 2; fi
exec "$@"
"""


def cgexec_path(compute: Compute) -> str:
    """A PATH whose first directory holds the cgexec stand-in."""
    bindir = compute.workdir / "bin"
    bindir.mkdir()
    script = bindir / "cgexec"
    script.write_text(CGEXEC_STAND_IN)
    script.chmod(0o755)
    compute.run_as.chown(bindir)
    return f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def agent_connect(port: int) -> ClientConnection:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            return connect(
                f"ws://127.0.0.1:{port}/monitor",
                open_timeout=DEADLINE,
                ping_interval=None,
                proxy=None,
            )
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def exchange(ws: ClientConnection, message: dict[str, Any]) -> Any:
    ws.send(json.dumps(message))
    reply = ws.recv(timeout=DEADLINE)
    assert isinstance(reply, str)
    return json.loads(reply)


def start_autoscaling(compute: Compute, spec: dict[str, Any], monitor_port: int) -> None:
    filecache = (
        f"host=127.0.0.1 port={compute.pg_port} dbname=postgres user=cloud_admin "
        "sslmode=disable application_name=vm-monitor"
    )
    compute.start(
        "-S",
        str(compute.write("spec.json", spec)),
        "--vm-monitor-addr",
        f"127.0.0.1:{monitor_port}",
        "--filecache-connstr",
        filecache,
        env={"AUTOSCALING": "1", "PATH": cgexec_path(compute)},
    )
    status = compute.wait_status("running", "failed")
    assert status["status"] == "running", compute.log()


def test_autoscaling_compute_serves_the_monitor(compute: Compute, make_spec: SpecFactory) -> None:
    port = free_port()
    start_autoscaling(compute, make_spec(), port)

    with agent_connect(port) as ws:
        ws.send('{"min": 1, "max": 1}')
        assert json.loads(ws.recv(timeout=DEADLINE)) == {"version": 1}
        health = {"type": "HealthCheck", "content": {}, "id": 2}
        assert exchange(ws, health) == {"type": "HealthCheck", "id": 2}
        upscale = {
            "type": "UpscaleNotification",
            "content": {"granted": {"cpu": 2.0, "mem": 4 << 30}},
            "id": 4,
        }
        assert exchange(ws, upscale) == {"type": "UpscaleConfirmation", "id": 4}
        downscale = {
            "type": "DownscaleRequest",
            "content": {"target": {"cpu": 1.0, "mem": 1 << 30}},
            "id": 6,
        }
        assert exchange(ws, downscale) == {
            "type": "DownscaleResult",
            "Ok": True,
            "Status": "monitor is not managing cgroup or file cache",
            "id": 6,
        }

    log = compute.log()
    assert "the file cache is not managed" in log
    assert "memory pressure is not monitored" in log

    # The monitor stops with Postgres.
    assert http("POST", f"{compute.url}/terminate").status == 200
    assert compute.wait_exit() == 0
    assert not listening(port)


def test_without_autoscaling_nothing_listens(compute: Compute, make_spec: SpecFactory) -> None:
    port = free_port()
    compute.start(
        "-S",
        str(compute.write("spec.json", make_spec())),
        "--vm-monitor-addr",
        f"127.0.0.1:{port}",
    )
    compute.wait_status("running")
    assert not listening(port)
    assert "vm-monitor" not in compute.log()
    assert http("POST", f"{compute.url}/terminate").status == 200
    assert compute.wait_exit() == 0


def test_cgexec_stand_in_runs_the_command(compute: Compute) -> None:
    """The stand-in the autoscaling test relies on behaves like cgexec for our purposes."""
    import subprocess

    path = cgexec_path(compute)
    result = subprocess.run(
        ["cgexec", "-g", "memory:neon-postgres", "echo", "hello"],
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "hello\n"
    assert Path(path.split(os.pathsep)[0], "cgexec").exists()
