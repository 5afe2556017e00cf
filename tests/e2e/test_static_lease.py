"""A static compute leases its LSN on the pageservers and keeps it leased."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute, Storage
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("protocol", ["libpq", "grpc"])
def test_static_compute_takes_a_lease(
    protocol: str, compute: Compute, make_spec: SpecFactory, storage: Storage
) -> None:
    spec = make_spec(protocol, mode={"Static": storage.lsn}, safekeeper_connstrings=[])
    compute.start("-S", str(compute.write("spec.json", spec)))
    assert compute.wait_status("running", "failed")["status"] == "running", compute.log()
    wait_until("a lease", lambda: f"lsn lease at {storage.lsn} valid until" in compute.log())
    assert compute.sql("select pg_is_in_recovery()") is True


def test_a_refused_lease_stops_for_good(
    compute: Compute, make_spec: SpecFactory, storage: Storage
) -> None:
    spec = make_spec("libpq", mode={"Static": "0/1"}, safekeeper_connstrings=[])
    compute.start("-S", str(compute.write("spec.json", spec)))
    wait_until(
        "the refusal",
        lambda: (
            "Permanent error: lease could not be obtained, LSN is behind the GC cutoff"
            in compute.log()
        ),
    )
