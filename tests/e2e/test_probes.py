"""`/hadron_liveness_probe`, `/failpoints`, and the LFC and promote routes of a compute that
lacks what they need (no spec yet; no endpoint-storage settings)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute, SigningKey, ctl_config, http

pytestmark = pytest.mark.postgres

COMPUTE_ID = "compute-probes"
NO_FAILPOINTS = "Cannot manage failpoints because neon was compiled without failpoints support"


def test_liveness_failpoints_and_missing_settings(
    compute: Compute, make_spec: SpecFactory, signing_key: SigningKey
) -> None:
    path = compute.write(
        "config.json", {"spec": None, "compute_ctl_config": ctl_config(signing_key)}
    )
    compute.token = signing_key.compute_token(COMPUTE_ID)
    # pg_isready gets only the port, as upstream: libpq finds the host in PGHOST.
    compute.start("-c", str(path), "-i", COMPUTE_ID, env={"PGHOST": "127.0.0.1"})
    assert compute.status()["status"] == "empty"

    # No Postgres yet: the probe fails.
    answer = compute.call("GET", "/hadron_liveness_probe")
    assert (answer.status, answer.json()) == (
        500,
        {"error": f"could not run `{compute.pg_bin}/pg_isready --port {compute.pg_port}`"},
    )

    # Failpoints: the body is checked, then refused (no failpoints in this build).
    url = f"{compute.internal_url}/failpoints"
    answer = http("POST", url, [{"name": "compute-prewarm", "actions": "return"}])
    assert (answer.status, answer.json()) == (412, {"error": NO_FAILPOINTS})
    answer = http("POST", url, [{"name": "compute-prewarm", "action": "return"}])
    assert (answer.status, answer.json()) == (
        422,
        {
            "error": "failed to deserialize the json body into the target type: "
            "[0].actions: required field is missing"
        },
    )
    answer = http("POST", url, b"[", headers={"Content-Type": "application/json"})
    assert answer.status == 400
    assert answer.json()["error"].startswith("failed to parse the request body as json: ")
    answer = http("POST", url, b"[]", headers={"Content-Type": "text/plain"})
    assert answer.status == 415

    # Without a spec, prewarm, offload and promote fail (upstream would panic).
    assert compute.call("POST", "/lfc/prewarm").status == 202
    no_spec = {"status": "failed", "error": "the compute has no spec"}
    assert compute.wait_lfc("/lfc/prewarm", "failed") == no_spec
    assert compute.call("POST", "/lfc/offload").status == 202
    assert compute.wait_lfc("/lfc/offload", "failed") == no_spec
    answer = compute.call("POST", "/promote", {"spec": make_spec(), "wal_flush_lsn": "0/0"})
    assert (answer.status, answer.json()) == (500, no_spec)

    answer = compute.call(
        "POST", "/configure", {"spec": make_spec(), "compute_ctl_config": ctl_config(signing_key)}
    )
    assert answer.status == 200, compute.log()
    answer = compute.call("GET", "/hadron_liveness_probe")
    assert (answer.status, answer.json()) == (200, "ok")

    # A spec without endpoint storage: prewarm and offload say what is missing.
    missing = {
        "status": "failed",
        "error": "pspec.endpoint_id missing, other endpoint_id not provided",
    }
    assert compute.call("POST", "/lfc/prewarm").status == 202
    assert compute.wait_lfc("/lfc/prewarm", "failed") == missing
    assert compute.call("POST", "/lfc/offload").status == 202
    assert compute.wait_lfc("/lfc/offload", "failed") == missing
    answer = compute.call("POST", "/lfc/prewarm?from_endpoint=ep-1")
    assert answer.status == 202
    assert compute.wait_lfc("/lfc/prewarm", "failed") == {
        "status": "failed",
        "error": "pspec.endpoint_storage_addr missing",
    }
