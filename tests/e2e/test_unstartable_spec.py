"""A spec that resolves but could never start is refused before anything is touched.

`prefer_protocol: "grpc"` without a `grpc_url`, or a pageserver without the `libpq_url` it is to
be reached by: `compute-dev spec check` refuses these, and so do `compute_ctl -S` (exit 1, one
line, PGDATA left as it was) and `/configure` on an empty compute (400, still empty, so the next
valid spec is taken).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute, http

pytestmark = pytest.mark.postgres

CASES = {
    "grpc-without-url": (
        "grpc",
        "grpc_url",
        'pageserver_connection_info.shards["0000"].pageservers[0].grpc_url: '
        "no grpc_url for shard 0000",
    ),
    "libpq-without-url": (
        "libpq",
        "libpq_url",
        'pageserver_connection_info.shards["0000"].pageservers[0].libpq_url: '
        "no libpq_url for shard 0000",
    ),
}


def _unstartable(make_spec: SpecFactory, case: str) -> tuple[dict[str, Any], str]:
    protocol, missing, message = CASES[case]
    spec = make_spec(protocol)
    del spec["pageserver_connection_info"]["shards"]["0000"]["pageservers"][0][missing]
    return spec, message


@pytest.mark.parametrize("case", sorted(CASES))
def test_seed_spec_refused_with_one_line_before_pgdata_is_touched(
    case: str, compute: Compute, make_spec: SpecFactory
) -> None:
    spec, message = _unstartable(make_spec, case)
    compute.pgdata.mkdir(mode=0o700)
    marker = compute.pgdata / "left-alone"
    marker.write_text("a previous run's file")
    compute.run_as.chown(compute.pgdata)
    compute.start("-S", str(compute.write("spec.json", spec)), wait=False)
    assert compute.wait_exit() == 1
    assert compute.log() == f"compute_ctl: error: {message}\n"
    assert marker.read_text() == "a previous run's file"


@pytest.mark.parametrize("case", sorted(CASES))
def test_configure_refuses_it_and_the_compute_stays_empty(
    case: str, compute: Compute, make_spec: SpecFactory
) -> None:
    spec, message = _unstartable(make_spec, case)
    compute.start("-i", "compute-1")
    request: dict[str, Any] = {"spec": spec, "compute_ctl_config": {"jwks": {"keys": []}}}
    answer = http("POST", f"{compute.url}/configure", request)
    assert (answer.status, answer.json()) == (400, {"error": message.split(": ", 1)[1]})
    assert compute.status()["status"] == "empty"
    assert not compute.pgdata.exists()
    # Nothing was left half-done: the next, valid spec is taken and the compute starts.
    answer = http("POST", f"{compute.url}/configure", {**request, "spec": make_spec()})
    assert answer.status == 200, compute.log()
    assert answer.json()["status"] == "running"
    answer = http("POST", f"{compute.url}/terminate")
    assert answer.status == 200
    assert compute.wait_exit() == 0
