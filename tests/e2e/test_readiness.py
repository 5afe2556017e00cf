"""`/readyz` and `/livez`: the status codes a kubelet or a load balancer reads, without a token
even when the API checks tokens (docs/compatibility.md)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute, SigningKey, ctl_config, http

pytestmark = pytest.mark.postgres

COMPUTE_ID = "compute-readiness"


def test_ready_only_when_running_alive_throughout(
    compute: Compute, make_spec: SpecFactory, signing_key: SigningKey
) -> None:
    path = compute.write(
        "config.json", {"spec": None, "compute_ctl_config": ctl_config(signing_key)}
    )
    compute.token = signing_key.compute_token(COMPUTE_ID)
    compute.start("-c", str(path), "-i", COMPUTE_ID)
    # The API checks tokens, the probes do not.
    assert http("GET", f"{compute.url}/status").status == 400
    ready = http("GET", f"{compute.url}/readyz")
    assert (ready.status, ready.json()) == (503, {"status": "empty"})
    alive = http("GET", f"{compute.url}/livez")
    assert (alive.status, alive.json()) == (200, {"status": "empty"})

    body = {"spec": make_spec(), "compute_ctl_config": ctl_config(signing_key)}
    answer = compute.call("POST", "/configure", body)
    assert answer.status == 200, answer
    compute.wait_status("running")
    ready = http("GET", f"{compute.url}/readyz")
    assert (ready.status, ready.json()) == (200, {"status": "running"})
    alive = http("GET", f"{compute.url}/livez")
    assert (alive.status, alive.json()) == (200, {"status": "running"})
    # Only on the external port, like /status.
    assert http("GET", f"{compute.internal_url}/readyz").status == 404

    assert compute.call("POST", "/terminate").status == 200
    assert compute.wait_exit() == 0
