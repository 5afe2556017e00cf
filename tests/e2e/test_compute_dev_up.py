"""`compute-dev up` as a newcomer runs it: a whole local compute, the psql line once it is
running, no gRPC fork warning, and Ctrl-C leaving nothing behind."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading

import psycopg
import pytest

from tests.support.harness import free_port, http, shared_tempdir
from tests.support.waiting import DEADLINE, wait_until

pytestmark = pytest.mark.postgres

FORK_WARNING = "skipping fork() handlers"


@pytest.mark.parametrize("protocol", ["libpq", "grpc"])
def test_up_announces_psql_once_running_and_stops_on_ctrl_c(protocol: str) -> None:
    state = shared_tempdir("compute-dev-up-")
    pg_port, http_port = free_port(), free_port()
    argv = [sys.executable, "-m", "compute_dev.cli", "up", "--protocol", protocol]
    argv += ["--dir", str(state), "--pg-port", str(pg_port), "--http-port", str(http_port)]
    # Its own session, as a terminal's foreground job: SIGINT is what Ctrl-C sends.
    up = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    assert up.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(up.stdout or ()), daemon=True)
    reader.start()
    connect = f"compute-dev: connect with: psql 'postgresql://cloud_admin@127.0.0.1:{pg_port}/"
    try:
        wait_until("the psql line", lambda: any(line.startswith(connect) for line in lines))
        # Printed once the compute is running: the status says so, and psql's URL answers.
        status = http("GET", f"http://127.0.0.1:{http_port}/status").json()
        assert status["status"] == "running", "".join(lines)
        url = f"postgresql://cloud_admin@127.0.0.1:{pg_port}/postgres"
        with psycopg.connect(url, connect_timeout=10) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        up.send_signal(signal.SIGINT)
        assert up.wait(DEADLINE) == 0, "".join(lines)
        spec = json.loads((state / "spec.json").read_text())
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        reader.join(DEADLINE)
        up.stdout.close()
        shutil.rmtree(state, ignore_errors=True)
    output = "".join(lines)
    assert "compute-dev: terminating the compute" in output
    assert FORK_WARNING not in output
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5).close()
    for safekeeper in spec["safekeeper_connstrings"]:  # the stand-ins are stopped too
        host, port = safekeeper.rsplit(":", 1)
        with pytest.raises(OSError):
            socket.create_connection((host, int(port)), timeout=5).close()
