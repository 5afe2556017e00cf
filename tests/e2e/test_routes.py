"""The remaining routes of the external API against a running compute, the compatibility
checklist's shapes, and the OpenAPI document each listener serves."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from pydantic import TypeAdapter
from starlette.routing import Route

from compute_ctl.compute.node import ComputeNode
from compute_ctl.http.app import external_app, internal_app
from compute_ctl.http.openapi import openapi_path
from compute_ctl.http.schemas import ComputeStatusResponse, GenericError
from compute_ctl.spec.responses import DbsAndRoles
from compute_ctl.state import ComputeMetrics
from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute, SigningKey, ctl_config, http
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres

COMPUTE_ID = "compute-routes"
ODD_NAME = "my \"odd\" db=1 'x' \U0001f418"


def start(compute: Compute, key: SigningKey, spec: dict[str, Any] | None) -> None:
    path = compute.write("config.json", {"spec": spec, "compute_ctl_config": ctl_config(key)})
    compute.token = key.compute_token(COMPUTE_ID)
    compute.start("-c", str(path), "-i", COMPUTE_ID)


def pg_dump_running(port: int) -> bool:
    """Whether a pg_dump aimed at this compute's Postgres is alive (procfs)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"pg_dump") and str(port).encode() in argv:
            return True
    return False


def test_routes_on_a_running_compute(
    compute: Compute, make_spec: SpecFactory, signing_key: SigningKey
) -> None:
    start(compute, signing_key, make_spec())
    status = compute.wait_status("running")
    ComputeStatusResponse.model_validate(status)
    TypeAdapter(ComputeMetrics).validate_python(compute.call("GET", "/metrics.json").json())

    # check_writability needs the health-check table the catalog step creates.
    answer = compute.call("POST", "/check_writability")
    assert answer.status == 500
    assert answer.json() == {
        "error": 'db error: ERROR: relation "public.health_check" does not exist'
    }
    compute.execute(
        "CREATE TABLE public.health_check (id integer PRIMARY KEY, updated_at timestamptz)"
    )
    answer = compute.call("POST", "/check_writability")
    assert (answer.status, answer.body) == (200, b"true")
    assert compute.sql("SELECT count(*) FROM public.health_check") == 1

    # dbs_and_roles: every role and database.
    compute.execute("CREATE ROLE alice LOGIN PASSWORD 'alice-pw'")
    quoted = '"' + ODD_NAME.replace('"', '""') + '"'
    compute.execute(f"CREATE DATABASE {quoted} OWNER alice")
    answer = compute.call("GET", "/dbs_and_roles")
    assert answer.status == 200
    body = DbsAndRoles.model_validate(answer.json())
    roles = {role.name: role for role in body.roles}
    assert "cloud_admin" in roles
    assert (roles["alice"].encrypted_password or "").startswith("SCRAM-SHA-256$")
    databases = {db["name"]: db for db in answer.json()["databases"]}
    assert databases[ODD_NAME] == {
        "name": ODD_NAME,
        "owner": "alice",
        "options": None,
        "restrict_conn": False,
        "invalid": False,
    }
    assert databases["template0"]["restrict_conn"] is True

    # database_schema: streamed pg_dump of one database, any name.
    compute.execute("CREATE TABLE odd_table (id int)", dbname=ODD_NAME)
    answer = compute.call("GET", f"/database_schema?database={quote(ODD_NAME)}")
    assert answer.status == 200, answer
    assert answer.headers["content-type"] == "application/json"
    text = answer.body.decode()
    assert "CREATE TABLE public.odd_table" in text
    assert "-- PostgreSQL database dump complete" in text
    answer = compute.call("GET", "/database_schema?database=nope")
    assert (answer.status, answer.json()) == (404, {"error": "database does not exist"})
    answer = compute.call("GET", "/database_schema")
    assert (answer.status, answer.json()) == (
        400,
        {"error": "failed to deserialize query string: missing field `database`"},
    )

    # insights: a JSON string holding JSON (no pg_stat_statements here: an empty list).
    answer = compute.call("GET", "/insights")
    assert answer.status == 200
    inner = answer.json()
    assert isinstance(inner, str)
    assert json.loads(inner) == {"pg_stat_statements": []}


def test_database_schema_stops_pg_dump_when_the_client_leaves(
    compute: Compute, make_spec: SpecFactory, signing_key: SigningKey
) -> None:
    start(compute, signing_key, make_spec())
    compute.wait_status("running")
    compute.execute("CREATE DATABASE lockdb")
    compute.execute("CREATE TABLE t (id int)", dbname="lockdb")
    locker = psycopg.connect(make_conninfo(compute.connstr, dbname="lockdb"))
    try:
        locker.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")  # pg_dump will wait for it
        with socket.create_connection(("127.0.0.1", compute.http_port), timeout=10) as client:
            request = (
                "GET /database_schema?database=lockdb HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nAuthorization: Bearer {compute.token}\r\n\r\n"
            )
            client.sendall(request.encode())
            wait_until("pg_dump waiting for the lock", lambda: pg_dump_running(compute.pg_port))
        wait_until("pg_dump killed", lambda: not pg_dump_running(compute.pg_port))
    finally:
        locker.rollback()
        locker.close()
    answer = compute.call("GET", "/database_schema?database=lockdb")
    assert answer.status == 200
    assert "CREATE TABLE public.t" in answer.body.decode()
    assert "client went away" in compute.log()


def test_running_only_routes_refuse_other_states(compute: Compute, signing_key: SigningKey) -> None:
    start(compute, signing_key, None)
    assert compute.status()["status"] == "empty"
    for method, path in [("POST", "/check_writability"), ("GET", "/insights")]:
        answer = compute.call(method, path)
        assert (answer.status, answer.json()) == (412, {"error": "invalid compute status: empty"})
        GenericError.model_validate(answer.json())
    # Stock PostgreSQL runs no communicator: the proxy answers 412 (unauthenticated route).
    answer = http("GET", f"{compute.url}/autoscaling_metrics")
    assert answer.status == 412
    assert answer.json()["error"].startswith("failed to get autoscaling metrics: ")


# ------------------------------------------------------------------------------------------
# OpenAPI


def app_operations(routes: list[Any]) -> set[tuple[str, str]]:
    operations = set()
    for route in routes:
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                operations.add((openapi_path(route.path), method.lower()))
    return operations


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item}


def resolve_refs(node: Any, document: dict[str, Any]) -> None:
    """Every `$ref` in the document points at a schema it defines."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.removeprefix("#/components/schemas/")
            assert name in document["components"]["schemas"], ref
        for value in node.values():
            resolve_refs(value, document)
    elif isinstance(node, list):
        for value in node:
            resolve_refs(value, document)


def docstring_statuses(doc: str) -> set[str]:
    return set(re.findall(r"^\s*(\d{3}):", doc, flags=re.MULTILINE))


def test_served_openapi_matches_the_routes(compute: Compute, signing_key: SigningKey) -> None:
    start(compute, signing_key, None)
    node = cast(ComputeNode, object())
    for base, app in [
        (compute.url, external_app(node)),
        (compute.internal_url, internal_app(node)),
    ]:
        answer = http("GET", f"{base}/openapi.json")
        assert answer.status == 200
        document = answer.json()
        assert document["openapi"].startswith("3.1")
        assert documented_operations(document) == app_operations(app.routes)
        resolve_refs(document, document)
        for route in app.routes:
            assert isinstance(route, Route)
            for method in route.methods or ():
                if method == "HEAD":
                    continue
                operation = document["paths"][openapi_path(route.path)][method.lower()]
                statuses = set(operation["responses"])
                # The handler's docstring names every status it answers; the document has
                # those plus the JWT refusals of a guarded route.
                assert docstring_statuses(operation["description"]) <= statuses, route.path
                if operation["security"]:
                    assert {"400", "401", "403"} <= statuses
                    assert http(method, f"{base}{route.path}").status == 400, route.path
    started = time.monotonic()
    assert http("GET", f"{compute.url}/openapi.json").status == 200
    assert time.monotonic() - started < 5
