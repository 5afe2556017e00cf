"""The catalog step inside the lifecycle: roles and databases at start-up and on re-configure,
migrations, and the internal `/extensions` and `/grants` routes."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute, http
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres


def md5_password(role: str, password: str) -> str:
    return hashlib.md5((password + role).encode()).hexdigest()  # noqa: S324 - Postgres' md5


def catalog_spec(make_spec: SpecFactory, *roles: str) -> dict[str, Any]:
    spec = make_spec(skip_pg_catalog_updates=False)
    spec["cluster"]["roles"] = [
        {"name": r, "encrypted_password": md5_password(r, "pw"), "options": None} for r in roles
    ]
    spec["cluster"]["databases"] = [{"name": "app db", "owner": roles[0], "options": None}]
    return spec


def test_catalog_applied_at_start_and_on_reconfigure(
    compute: Compute, make_spec: SpecFactory
) -> None:
    spec = catalog_spec(make_spec, "alice", 'we"ird role')
    compute.start("-S", str(compute.write("spec.json", spec)))
    assert compute.wait_status("running", "failed")["status"] == "running", compute.log()
    assert (
        compute.sql("select count(*) from pg_roles where rolname in ('alice', 'we\"ird role')") == 2
    )
    assert compute.sql(
        "select pg_get_userbyid(datdba) from pg_database where datname = 'app db'"
    ) == ("alice")
    assert compute.sql("select count(*) from pg_roles where rolname = 'neon_superuser'") == 1
    wait_until(
        "migrations",
        lambda: (
            "Running migration id=" in compute.log() or "Skipping migration id=" in compute.log()
        ),
    )
    assert compute.sql(
        "select pg_catalog.pg_read_file('postgresql.conf') like '%subscribers=false%'"
    )

    spec = catalog_spec(make_spec, "alice", 'we"ird role', "bob")
    answer = http(
        "POST",
        f"{compute.url}/configure",
        {"spec": spec, "compute_ctl_config": {"jwks": {"keys": []}}},
    )
    assert answer.status == 200, compute.log()
    assert compute.sql("select count(*) from pg_roles where rolname = 'bob'") == 1
    assert "catalog: 0 statements executed" not in compute.log().rsplit("POST /configure", 1)[-1]


def test_extensions_and_grants(compute: Compute, make_spec: SpecFactory) -> None:
    spec = catalog_spec(make_spec, "alice")
    compute.start("-S", str(compute.write("spec.json", spec)))
    compute.wait_status("running")
    request = {"extension": "citext", "database": "app db", "version": "1.6"}
    answer = http("POST", f"{compute.internal_url}/extensions", request)
    assert (answer.status, answer.json()) == (201, {"extension": "citext", "version": "1.6"})
    answer = http("POST", f"{compute.internal_url}/extensions", request)
    assert answer.status == 201  # already there: nothing to do

    grant = {"database": "app db", "schema": "public", "privileges": ["USAGE"], "role": "alice"}
    answer = http("POST", f"{compute.internal_url}/grants", grant)
    assert (answer.status, answer.json()) == (201, grant)
    answer = http("POST", f"{compute.internal_url}/grants", {**grant, "privileges": ["FLY"]})
    assert answer.status == 422
    answer = http(
        "POST", f"{compute.internal_url}/extensions", {**request, "extension": "no_such_ext"}
    )
    assert answer.status == 404
    assert answer.json()["error"].startswith(
        'failed to install extension: extension "no_such_ext" is not available'
    )


def test_nul_in_request_names_is_refused(compute: Compute, make_spec: SpecFactory) -> None:
    spec = catalog_spec(make_spec, "alice")
    compute.start("-S", str(compute.write("spec.json", spec)))
    compute.wait_status("running")
    answer = http(
        "POST",
        f"{compute.internal_url}/extensions",
        {"extension": "citext", "database": "app\u0000db", "version": "1.6"},
    )
    assert answer.status == 400
    assert answer.json()["error"].startswith("database: database name ")
    answer = http("GET", f"{compute.url}/database_schema?database=app%00db")
    assert answer.status == 400
    assert "database" in answer.json()["error"]
