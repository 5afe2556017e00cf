"""compute_ctl against a storage process with injected faults (`compute-dev storage --fault`)."""

from __future__ import annotations

import shutil
import signal
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.harness import (
    Compute,
    Storage,
    children_of,
    http,
    running,
    shared_tempdir,
    start_storage,
    stop_process,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres


def spec_for(storage: Storage, compute: Compute, protocol: str) -> dict[str, Any]:
    shard = {"libpq_url": storage.libpq_url, "grpc_url": storage.grpc_url}
    return {
        "format_version": 1.0,
        "suspend_timeout_seconds": -1,
        "cluster": {"roles": [], "databases": [], "settings": compute.settings()},
        "skip_pg_catalog_updates": True,
        "tenant_id": storage.tenant_id,
        "timeline_id": storage.timeline_id,
        "safekeeper_connstrings": storage.safekeepers,
        "pageserver_connection_info": {
            "shard_count": 0,
            "shards": {"0000": {"pageservers": [shard]}},
            "prefer_protocol": protocol,
        },
    }


@pytest.fixture
def faulty_storage(request: pytest.FixtureRequest) -> Iterator[Storage]:
    root = shared_tempdir("e2e-faulty-storage-")
    running = start_storage(root, *request.param)
    try:
        yield running
    finally:
        stop_process(running.process)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize(
    ("faulty_storage", "protocol"),
    [
        (["--fault", "drop_mid_stream", "--fault-times", "2"], "libpq"),
        (["--fault", "error_after_end_marker", "--fault-times", "1"], "libpq"),
        (["--safekeeper-fault", "no_row"], "libpq"),
    ],
    indirect=["faulty_storage"],
    ids=["dropped-twice", "error-after-end-marker", "safekeepers-say-no-row"],
)
def test_transient_storage_faults_still_reach_running(
    faulty_storage: Storage, protocol: str, compute: Compute
) -> None:
    spec = spec_for(faulty_storage, compute, protocol)
    compute.start("-S", str(compute.write("spec.json", spec)))
    assert compute.wait_status("running", "failed")["status"] == "running", compute.log()


@pytest.mark.parametrize(
    ("faulty_storage", "protocol", "cause"),
    [
        (["--fault", "deny_tenant"], "libpq", "127.0.0.1"),
        (["--grpc-fault", "PERMISSION_DENIED"], "grpc", "grpc://no_user@127.0.0.1"),
    ],
    indirect=["faulty_storage"],
    ids=["libpq-permission", "grpc-permission"],
)
def test_permanent_storage_faults_fail_with_the_cause(
    faulty_storage: Storage, protocol: str, cause: str, compute: Compute
) -> None:
    spec = spec_for(faulty_storage, compute, protocol)
    compute.start("-S", str(compute.write("spec.json", spec)))
    status = compute.wait_status("failed")
    assert status["error"].startswith("failed to get basebackup@")
    assert cause in status["error"]
    assert compute.wait_exit() == 1
    assert "basebackup failed (try" not in compute.log()  # permanent: not retried


@pytest.mark.parametrize(
    "faulty_storage", [["--grpc-fault", "UNAVAILABLE"]], indirect=True, ids=["grpc-unavailable"]
)
def test_transient_grpc_fault_is_retried_then_reported(
    faulty_storage: Storage, compute: Compute
) -> None:
    """The gRPC client's child process reports UNAVAILABLE as transient, as the in-process
    client did: retried, then the start fails with it as the cause."""
    spec = spec_for(faulty_storage, compute, "grpc")
    compute.start(
        "-S",
        str(compute.write("spec.json", spec)),
        env={"NEON_COMPUTE_TESTING_BASEBACKUP_RETRIES": "1"},
    )
    status = compute.wait_status("failed")
    assert status["error"].startswith("failed to get basebackup@")
    assert "failed: UNAVAILABLE: " in status["error"]
    assert compute.wait_exit() == 1
    assert "basebackup failed (try 1 of 2), retrying" in compute.log()


def test_sigterm_during_a_grpc_basebackup_leaves_no_child(
    storage: Storage, compute: Compute
) -> None:
    """A pageserver that accepts the connection and never answers keeps the basebackup's
    child process waiting (20 s, grpc's connect timeout); SIGTERM cancels the start, and the
    child goes with it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshakes; nothing is ever read
        spec = spec_for(storage, compute, "grpc")
        shard = spec["pageserver_connection_info"]["shards"]["0000"]["pageservers"][0]
        shard["grpc_url"] = f"grpc://no_user@127.0.0.1:{silent.getsockname()[1]}"
        compute.start("-S", str(compute.write("spec.json", spec)))
        assert compute.process is not None
        compute_pid = compute.process.pid

        seen: list[int] = []

        def grpc_child_started() -> bool:
            found = children_of(compute_pid).items()
            seen[:] = [pid for pid, argv in found if "compute_ctl.storage.grpc_child" in argv]
            return len(seen) == 1

        wait_until("the basebackup's child process", grpc_child_started)
        (child,) = seen
        compute.process.send_signal(signal.SIGTERM)
        assert compute.wait_exit() == 1
        # Gone at once, not 20 s later when its connection attempt gives up: compute_ctl
        # killed and reaped it before exiting.
        assert not running(child)


@pytest.mark.parametrize(
    "faulty_storage", [["--basebackup-delay", "3"]], indirect=True, ids=["slow-basebackup"]
)
def test_wrong_state_answers_during_init(faulty_storage: Storage, compute: Compute) -> None:
    spec = spec_for(faulty_storage, compute, "libpq")
    compute.start("-S", str(compute.write("spec.json", spec)))
    assert compute.wait_status("init")["status"] == "init"
    request = {"spec": spec, "compute_ctl_config": {"jwks": {"keys": []}}}
    answer = http("POST", f"{compute.url}/configure", request)
    assert (answer.status, answer.json()) == (412, {"error": "invalid compute status: init"})
    answer = http("POST", f"{compute.url}/terminate")
    assert (answer.status, answer.json()) == (412, {"error": "invalid compute status: init"})
    metrics = http("GET", f"{compute.url}/metrics").body.decode()
    assert 'compute_ctl_up{build_tag="latest",status="init"} 1' in metrics.splitlines()
    assert compute.wait_status("running")["status"] == "running"
