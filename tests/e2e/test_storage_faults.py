"""compute_ctl against a storage process with injected faults (`compute-dev storage --fault`)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.harness import (
    Compute,
    Storage,
    http,
    shared_tempdir,
    start_storage,
    stop_process,
)

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
