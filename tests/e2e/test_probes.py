"""`/hadron_liveness_probe`, `/failpoints`, and the LFC and promote routes of a compute that
lacks what they need (no spec yet; no endpoint-storage settings)."""

from __future__ import annotations

import shlex
from urllib.parse import quote

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
    compute.start("-c", str(path), "-i", COMPUTE_ID)
    assert compute.status()["status"] == "empty"

    # No Postgres yet: the probe fails, naming the command (aimed where --connstr says).
    answer = compute.call("GET", "/hadron_liveness_probe")
    conninfo = f"user=cloud_admin dbname=postgres host=127.0.0.1 port={compute.pg_port}"
    command = shlex.join([f"{compute.pg_bin}/pg_isready", "--dbname", conninfo])
    assert (answer.status, answer.json()) == (500, {"error": f"could not run `{command}`"})

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


def test_liveness_probe_through_a_socket_directory(
    compute: Compute, make_spec: SpecFactory
) -> None:
    # Postgres listens only on a unix socket in a directory of its own; --connstr names that
    # directory (`?host=`). pg_isready given the port alone would look in libpq's default
    # directory and find nothing.
    spec = make_spec()
    spec["cluster"]["settings"] = [
        {"name": "port", "value": str(compute.pg_port), "vartype": "integer"},
        {"name": "listen_addresses", "value": "", "vartype": "string"},
        {"name": "unix_socket_directories", "value": str(compute.workdir), "vartype": "string"},
    ]
    connstr = (
        f"postgresql://cloud_admin@/postgres?host={quote(str(compute.workdir), safe='')}"
        f"&port={compute.pg_port}"
    )
    compute.start("-S", str(compute.write("spec.json", spec)), "-C", connstr)
    compute.wait_status("running")
    answer = http("GET", f"{compute.url}/hadron_liveness_probe")
    assert (answer.status, answer.json()) == (200, "ok"), compute.log()[-3000:]
