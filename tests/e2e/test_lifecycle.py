"""compute_ctl as a real process against the storage stand-ins and a real PostgreSQL."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.harness import (
    Compute,
    SigningKey,
    Storage,
    children_of,
    ctl_config,
    http,
    pid_alive,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres


def terminate_and_check(compute: Compute, mode: str = "fast") -> dict[str, object]:
    """/terminate, then the process exits 0 and no Postgres is left behind."""
    pid = compute.postmaster_pid()
    answer = compute.call("POST", f"/terminate?mode={mode}")
    assert answer.status == 200, answer
    assert compute.wait_exit() == 0, compute.log()
    assert not pid_alive(pid)
    body: dict[str, object] = answer.json()
    return body


@pytest.mark.parametrize("storage_form", ["libpq", "grpc", "legacy", "guc"])
def test_seed_command_line_reaches_running(
    storage_form: str, compute: Compute, make_spec: SpecFactory, storage: Storage
) -> None:
    spec_path = compute.write("spec.json", make_spec(storage_form))
    compute.start("-S", str(spec_path))
    status = compute.wait_status("running", "failed")
    assert status["status"] == "running", compute.log()
    assert status["tenant"] == storage.tenant_id
    assert status["timeline"] == storage.timeline_id
    assert status["error"] is None
    assert compute.sql("select 40 + 2") == 42
    metrics = http("GET", f"{compute.url}/metrics.json").json()
    assert metrics["basebackup_bytes"] > 0
    assert metrics["total_startup_ms"] >= metrics["basebackup_ms"]
    assert f"basebackup over {'grpc' if storage_form == 'grpc' else 'libpq'}" in compute.log()
    assert terminate_and_check(compute) == {"lsn": None}


def test_grpc_start_leaves_grpcio_unloaded(compute: Compute, make_spec: SpecFactory) -> None:
    """The gRPC basebackup ran in a child process: once `running`, compute_ctl has mapped
    neither grpcio's nor protobuf's extension modules, and the child is gone."""
    compute.start("-S", str(compute.write("spec.json", make_spec("grpc"))))
    assert compute.wait_status("running", "failed")["status"] == "running", compute.log()
    assert "basebackup over grpc" in compute.log()
    assert compute.process is not None
    maps = Path(f"/proc/{compute.process.pid}/maps").read_text()
    assert "cygrpc" not in maps
    assert "/google/_upb/" not in maps
    assert "psycopg" in maps  # the maps are really compute_ctl's (safekeepers: psycopg)
    assert not [c for c in children_of(compute.process.pid).values() if "grpc_child" in c]
    terminate_and_check(compute)


SPARE = {"COMPUTE_CTL_GRPC_CHILD_WHILE_EMPTY": "1"}


def grpc_children(compute: Compute) -> list[int]:
    assert compute.process is not None
    return [pid for pid, argv in children_of(compute.process.pid).items() if "grpc_child" in argv]


@pytest.mark.parametrize("protocol", ["grpc", "libpq"])
def test_an_empty_compute_keeps_a_grpc_child_ready_when_asked(
    protocol: str, compute: Compute, make_spec: SpecFactory
) -> None:
    """With `COMPUTE_CTL_GRPC_CHILD_WHILE_EMPTY=1` an empty compute starts the basebackup's
    child while it waits; a gRPC start uses that very child, a libpq start stops it, and a
    running compute has none."""
    compute.start("-i", "compute-1", env=SPARE)
    wait_until("the spare child starts", lambda: len(grpc_children(compute)) == 1)
    (spare,) = grpc_children(compute)
    request = {"spec": make_spec(protocol), "compute_ctl_config": {"jwks": {"keys": []}}}
    answer = http("POST", f"{compute.url}/configure", request)
    assert answer.status == 200, compute.log()
    assert f"basebackup over {protocol}" in compute.log()
    assert not pid_alive(spare)
    assert grpc_children(compute) == []
    used = f"the gRPC client process kept ready while empty (pid {spare}) is used"
    assert (used in compute.log()) == (protocol == "grpc"), compute.log()
    terminate_and_check(compute)


def test_an_empty_compute_stops_its_spare_child_when_terminated(compute: Compute) -> None:
    compute.start("-i", "compute-1", env=SPARE)
    wait_until("the spare child starts", lambda: len(grpc_children(compute)) == 1)
    (spare,) = grpc_children(compute)
    assert compute.call("POST", "/terminate").status == 200
    assert compute.wait_exit() == 0, compute.log()
    assert not pid_alive(spare)


def test_config_file_with_spec(
    compute: Compute, make_spec: SpecFactory, signing_key: SigningKey
) -> None:
    config = {"spec": make_spec(), "compute_ctl_config": ctl_config(signing_key)}
    path = compute.write("config.json", config)
    compute.token = signing_key.compute_token("compute-1")
    compute.start("-c", str(path), "-i", "compute-1")
    compute.wait_status("running")
    terminate_and_check(compute, "immediate")


def test_empty_compute_configured_then_reconfigured(
    compute: Compute, make_spec: SpecFactory
) -> None:
    compute.start("-i", "compute-1")
    assert compute.status()["status"] == "empty"
    assert compute.status()["tenant"] is None
    request = {"spec": make_spec(), "compute_ctl_config": {"jwks": {"keys": []}}}
    answer = http("POST", f"{compute.url}/configure", request)
    assert answer.status == 200, compute.log()
    assert answer.json()["status"] == "running"
    metrics = http("GET", f"{compute.url}/metrics.json").json()
    assert metrics["wait_for_spec_ms"] > 0

    spec = make_spec()
    spec["cluster"]["settings"].append({"name": "work_mem", "value": "7MB", "vartype": "string"})
    answer = http("POST", f"{compute.url}/configure", {**request, "spec": spec})
    assert answer.status == 200, compute.log()
    assert compute.sql("show work_mem") == "7MB"
    terminate_and_check(compute)


def test_bad_spec_via_configure_is_refused(compute: Compute, make_spec: SpecFactory) -> None:
    compute.start("-i", "compute-1")
    spec = make_spec(safekeeper_connstrings=["a:1", "a:1"])
    answer = http(
        "POST",
        f"{compute.url}/configure",
        {"spec": spec, "compute_ctl_config": {"jwks": {"keys": []}}},
    )
    assert answer.status == 400
    assert answer.json() == {"error": "duplicate entry in safekeeper_connstrings: a:1!"}
    spec = make_spec(skip_pg_catalog_updates=False)
    spec["cluster"]["roles"] = [{"name": "r", "encrypted_password": "hunter2"}]
    answer = http(
        "POST",
        f"{compute.url}/configure",
        {"spec": spec, "compute_ctl_config": {"jwks": {"keys": []}}},
    )
    assert answer.status == 400
    assert "hunter2" not in answer.json()["error"]
    answer = http(
        "POST", f"{compute.url}/configure", {"compute_ctl_config": {"jwks": {"keys": []}}}
    )
    assert answer.status == 422
    assert answer.json()["error"].startswith(
        "failed to deserialize the json body into the target type: spec:"
    )
    answer = http("POST", f"{compute.url}/configure", b"{not json")
    assert answer.status == 400
    answer = http("POST", f"{compute.url}/configure", b"{}", headers={"Content-Type": "text/plain"})
    assert answer.status == 415
    assert compute.status()["status"] == "empty"
    # Terminating an empty compute ends it promptly (upstream would hang).
    answer = http("POST", f"{compute.url}/terminate")
    assert answer.status == 200
    assert answer.json() == {"lsn": None}
    assert compute.wait_exit() == 0


def test_failing_basebackup(compute: Compute, make_spec: SpecFactory) -> None:
    spec = make_spec(timeline_id="00" * 16)
    compute.start(
        "-S",
        str(compute.write("spec.json", spec)),
        env={"NEON_COMPUTE_TESTING_BASEBACKUP_RETRIES": "1"},
    )
    status = compute.wait_status("failed")
    assert status["error"].startswith("failed to get basebackup@")
    assert "Caused by:" in status["error"]
    # Wrong-state answers while failed.
    answer = http(
        "POST",
        f"{compute.url}/configure",
        {"spec": make_spec(), "compute_ctl_config": {"jwks": {"keys": []}}},
    )
    assert (answer.status, answer.json()) == (412, {"error": "invalid compute status: failed"})
    answer = http("POST", f"{compute.url}/terminate")
    assert (answer.status, answer.json()) == (412, {"error": "invalid compute status: failed"})
    assert compute.wait_exit() == 1


def test_postgres_killed_while_running(compute: Compute, make_spec: SpecFactory) -> None:
    compute.start("-S", str(compute.write("spec.json", make_spec())))
    compute.wait_status("running")
    os.kill(compute.postmaster_pid(), signal.SIGKILL)
    assert compute.wait_exit() == 1


def test_sigterm_stops_everything(compute: Compute, make_spec: SpecFactory) -> None:
    compute.start("-S", str(compute.write("spec.json", make_spec())))
    compute.wait_status("running")
    pid = compute.postmaster_pid()
    assert compute.process is not None
    compute.process.send_signal(signal.SIGTERM)
    assert compute.wait_exit() == 1
    assert not pid_alive(pid)


def test_terminate_twice_and_http_conventions(compute: Compute, make_spec: SpecFactory) -> None:
    compute.start("-S", str(compute.write("spec.json", make_spec())))
    compute.wait_status("running")
    answer = http("GET", f"{compute.url}/nope", headers={"x-request-id": "abc"})
    assert (answer.status, answer.body, answer.headers["x-request-id"]) == (404, b"", "abc")
    answer = http("DELETE", f"{compute.url}/status")
    assert (answer.status, answer.body) == (405, b"")
    assert answer.headers["x-request-id"]
    answer = http("POST", f"{compute.url}/terminate?mode=slow")
    assert answer.status == 400
    assert b"unknown variant `slow`" in answer.body
    metrics = http("GET", f"{compute.url}/metrics").body.decode()
    assert 'compute_ctl_up{build_tag="latest",status="running"} 1' in metrics.splitlines()
    assert "_created" not in metrics
    assert "INFO request{method=GET uri=/nope" in compute.log()
    pid = compute.postmaster_pid()
    assert http("POST", f"{compute.url}/terminate?mode=fast").json() == {"lsn": None}
    wait_until("postgres gone", lambda: not pid_alive(pid))
    # A fast termination lingers (1 s with --dev) so that the control plane can read the
    # outcome; meanwhile a second request sees the terminated compute.
    second = http("POST", f"{compute.url}/terminate")
    assert (second.status, second.json()) == (201, {"lsn": None})
    assert compute.wait_exit() == 0


def test_root_is_refused() -> None:
    import subprocess
    import sys

    if os.geteuid() != 0:
        pytest.skip("only meaningful as root")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "compute_ctl.cli",
            "-D",
            "/nonexistent",
            "-C",
            "postgresql://cloud_admin@127.0.0.1:1/postgres",
            "-S",
            "x.json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "refusing to run as root" in result.stderr
    assert result.stderr.count("\n") == 1


def test_port_in_use_is_one_line(compute: Compute, make_spec: SpecFactory) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        compute.http_port = busy.getsockname()[1]
        compute.start("-S", str(compute.write("spec.json", make_spec())), wait=False)
        assert compute.wait_exit() == 1
    log = compute.log()
    assert "Traceback" not in log
    assert f"could not listen on port {compute.http_port}" in log
