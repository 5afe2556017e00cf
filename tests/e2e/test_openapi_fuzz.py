"""A third-party fuzzer (schemathesis) against the OpenAPI document each listener serves.

One running compute (a real Postgres behind the storage stand-ins); for every operation of both
listeners, schemathesis generates requests from the served `/openapi.json`, valid ones and
malformed ones, and every answer must be no 5xx, have a documented status and content type,
and match the documented schema. `/terminate` is left out: it would end the compute the other
operations are tried against (its answers are covered in test_lifecycle.py).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from compute_ctl.http.app import EXTERNAL_ROUTES, INTERNAL_ROUTES
from tests.support.harness import Compute, Storage, free_port, shared_tempdir

pytestmark = pytest.mark.postgres

EXAMPLES_PER_OPERATION = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

LEFT_OUT = {("POST", "/terminate")}


def _operations() -> list[Any]:
    params = []
    for listener, routes in (("external", EXTERNAL_ROUTES), ("internal", INTERNAL_ROUTES)):
        for route in routes:
            key = (route.method, route.path)
            if key in LEFT_OUT:
                continue
            name = f"{listener}-{route.method}-{route.path}"
            params.append(pytest.param(listener, route.method, route.path, id=name))
    return params


@pytest.fixture(scope="module")
def running(storage: Storage) -> Iterator[Compute]:
    workdir = shared_tempdir("e2e-fuzz-")
    compute = Compute(
        workdir, pg_port=free_port(), http_port=free_port(), internal_port=free_port()
    )
    spec = {
        "format_version": 1.0,
        "suspend_timeout_seconds": -1,
        "cluster": {"roles": [], "databases": [], "settings": compute.settings()},
        "skip_pg_catalog_updates": False,  # the catalog step makes public.health_check
        "tenant_id": storage.tenant_id,
        "timeline_id": storage.timeline_id,
        "pageserver_connstring": storage.libpq_url,
        "safekeeper_connstrings": storage.safekeepers,
    }
    try:
        compute.start("-S", str(compute.write("spec.json", spec)))
        compute.wait_status("running")
        yield compute
    finally:
        compute.stop()
        shutil.rmtree(workdir, ignore_errors=True)


_schemas: dict[str, Any] = {}


def _schema(compute: Compute, listener: str) -> Any:
    base = compute.url if listener == "external" else compute.internal_url
    if base not in _schemas:
        _schemas[base] = schemathesis.openapi.from_url(f"{base}/openapi.json")
    return _schemas[base], base


@pytest.mark.parametrize(("listener", "method", "path"), _operations())
def test_fuzzed_requests_get_documented_answers(
    running: Compute, listener: str, method: str, path: str
) -> None:
    schema, base = _schema(running, listener)
    operation = schema[re.sub(r":\w+}", "}", path)][method]
    strategy = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        case.call_and_validate(base_url=base, checks=CHECKS, timeout=30)

    fuzz()
    # The compute survived the run (a refresh it was asked for ends in `running`).
    status = running.wait_status("running", "refresh_configuration_pending", "failed")
    assert status["status"] != "failed", status
