"""compute_ctl with `-p/--control-plane-uri`: boot from the control-plane stand-in, refresh
through `POST /refresh_configuration` (internal port), and what errors and `empty` do."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.harness import (
    CONTROL_PLANE_TOKEN,
    Compute,
    ControlPlane,
    SigningKey,
    Storage,
    bearer,
    ctl_config,
    http,
    pid_alive,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres

COMPUTE_ID = "compute-cp"
TOKEN_ENV = {"NEON_CONTROL_PLANE_TOKEN": CONTROL_PLANE_TOKEN}
GET_CONFIG = 'compute_ctl_cplane_requests_total{http_status="%s",rpc="GetConfig"}'
PAGESTREAM_ERRORS = "pg_cctl_pagestream_request_errors_total"


def attached(spec: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    return {"status": "attached", "spec": spec, "compute_ctl_config": ctl_config(key)}


def start_from(
    compute: Compute,
    cp: ControlPlane,
    key: SigningKey,
    *,
    wait: bool = True,
    env: dict[str, str] = TOKEN_ENV,
) -> None:
    compute.token = key.compute_token(COMPUTE_ID)
    compute.start("-p", cp.url, "-i", COMPUTE_ID, env=env, wait=wait)


def refresh(compute: Compute) -> None:
    answer = http("POST", f"{compute.internal_url}/refresh_configuration")
    assert (answer.status, answer.body) == (200, b""), answer


def requests(compute: Compute, status: str = "200 OK") -> float:
    return compute.metric(GET_CONFIG % status) or 0.0


def with_setting(spec: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    spec["cluster"]["settings"].append({"name": name, "value": value, "vartype": "string"})
    return spec


def other_pageserver_address(spec: dict[str, Any], storage: Storage) -> dict[str, Any]:
    """The same pageserver under another name: new connection info, same data."""
    shard = spec["pageserver_connection_info"]["shards"]["0000"]["pageservers"][0]
    shard["libpq_url"] = storage.libpq_url.replace("127.0.0.1", "localhost")
    return spec


def test_boot_from_control_plane_and_refresh(
    compute: Compute,
    control_plane: ControlPlane,
    make_spec: SpecFactory,
    signing_key: SigningKey,
    storage: Storage,
) -> None:
    control_plane.put(COMPUTE_ID, attached(make_spec(), signing_key))
    start_from(compute, control_plane, signing_key)
    status = compute.wait_status("running", "failed")
    assert status["status"] == "running", compute.log()
    assert status["tenant"] == storage.tenant_id
    assert requests(compute) == 1
    # The keys of the control plane's answer guard the API.
    assert http("GET", f"{compute.url}/status").status == 400

    # Same pageserver connection info: nothing is applied.
    control_plane.put(
        COMPUTE_ID, attached(with_setting(make_spec(), "work_mem", "7MB"), signing_key)
    )
    refresh(compute)
    wait_until("the second fetch", lambda: requests(compute) == 2)
    compute.wait_status("running")
    assert compute.sql("show work_mem") != "7MB"
    wait_until("the log line", lambda: "connection info is unchanged" in compute.log())

    # New pageserver connection info: the spec is stored and applied.
    spec = other_pageserver_address(with_setting(make_spec(), "work_mem", "9MB"), storage)
    control_plane.put(COMPUTE_ID, attached(spec, signing_key))
    refresh(compute)
    wait_until("the new spec applied", lambda: compute.sql("show work_mem") == "9MB")
    compute.wait_status("running")
    assert requests(compute) == 3
    assert compute.metric(PAGESTREAM_ERRORS) == 2
    assert "localhost" in (compute.pgdata / "postgresql.conf").read_text()


def test_refresh_errors_and_empty(
    compute: Compute,
    control_plane: ControlPlane,
    make_spec: SpecFactory,
    signing_key: SigningKey,
    storage: Storage,
) -> None:
    control_plane.put(COMPUTE_ID, attached(make_spec(), signing_key))
    start_from(compute, control_plane, signing_key)
    compute.wait_status("running")

    # The control plane is unavailable: three attempts, then (after 5 s) pending again.
    control_plane.put(COMPUTE_ID, 503)
    refresh(compute)
    compute.wait_status("refresh_configuration_pending")
    assert requests(compute, "503 Service Unavailable") == 3
    assert "Exhausted all attempts to retrieve the config from the control plane" in compute.log()

    # The pending refresh is retried on the next request; a new spec is applied.
    spec = other_pageserver_address(with_setting(make_spec(), "work_mem", "11MB"), storage)
    control_plane.put(COMPUTE_ID, attached(spec, signing_key))
    refresh(compute)
    compute.wait_status("running")
    wait_until("the new spec applied", lambda: compute.sql("show work_mem") == "11MB")

    # The control plane says the compute is empty: compute_ctl exits 1 and stops Postgres.
    pid = compute.postmaster_pid()
    control_plane.put(
        COMPUTE_ID, {"status": "empty", "spec": None, "compute_ctl_config": ctl_config(signing_key)}
    )
    refresh(compute)
    assert compute.wait_exit() == 1
    assert not pid_alive(pid)
    assert "has no spec" in compute.log()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (404, "unexpected control plane response status code: 404 Not Found"),
        (503, "Exhausted all attempts to retrieve the config from the control plane"),
        (
            {"status": "attached", "spec": None, "compute_ctl_config": {"jwks": {"keys": []}}},
            "compute is attached, but spec is empty",
        ),
    ],
)
def test_boot_failures_exit_1(
    compute: Compute,
    control_plane: ControlPlane,
    signing_key: SigningKey,
    answer: Any,
    message: str,
) -> None:
    control_plane.put(COMPUTE_ID, answer)
    start_from(compute, control_plane, signing_key, wait=False)
    assert compute.wait_exit() == 1
    log = compute.log()
    assert message in log
    assert CONTROL_PLANE_TOKEN not in log


def test_boot_with_a_wrong_control_plane_token(
    compute: Compute, control_plane: ControlPlane, make_spec: SpecFactory, signing_key: SigningKey
) -> None:
    control_plane.put(COMPUTE_ID, attached(make_spec(), signing_key))
    wrong = {"NEON_CONTROL_PLANE_TOKEN": "not-the-token"}
    start_from(compute, control_plane, signing_key, wait=False, env=wrong)
    assert compute.wait_exit() == 1
    log = compute.log()
    assert "unexpected control plane response status code: 401 Unauthorized" in log
    assert "not-the-token" not in log


def test_boot_empty_then_configure(
    compute: Compute,
    control_plane: ControlPlane,
    make_spec: SpecFactory,
    signing_key: SigningKey,
) -> None:
    control_plane.put(COMPUTE_ID, {"spec": None, "compute_ctl_config": ctl_config(signing_key)})
    start_from(compute, control_plane, signing_key)
    assert compute.status()["status"] == "empty"
    answer = http("POST", f"{compute.internal_url}/refresh_configuration")
    assert (answer.status, answer.json()) == (
        500,
        {"error": "Cannot refresh compute configuration in state Empty"},
    )
    request = {"spec": make_spec(), "compute_ctl_config": ctl_config(signing_key)}
    answer = compute.call("POST", "/configure", request)
    assert answer.status == 200, compute.log()
    assert answer.json()["status"] == "running"
    assert compute.metric(PAGESTREAM_ERRORS) == 1
    answer = http("POST", f"{compute.url}/terminate", headers=bearer(signing_key.admin_token()))
    assert answer.status == 200
    assert compute.wait_exit() == 0
