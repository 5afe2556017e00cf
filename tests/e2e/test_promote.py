"""`POST /promote` on real computes: a replica started from the stand-ins (basebackup plus
`standby.signal`, Postgres in recovery) is promoted to primary; the refusals keep their
upstream texts and shapes."""

from __future__ import annotations

import json
import socket
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.endpoint_storage import EndpointStorage, zstd
from tests.support.harness import (
    Compute,
    SigningKey,
    Storage,
    bearer,
    ctl_config,
    http,
    pid_alive,
)

pytestmark = pytest.mark.postgres

COMPUTE_ID = "compute-promote"
ENDPOINT = "ep-promote"


def start(compute: Compute, key: SigningKey, spec: dict[str, Any]) -> None:
    path = compute.write("config.json", {"spec": spec, "compute_ctl_config": ctl_config(key)})
    compute.token = key.compute_token(COMPUTE_ID)
    compute.start("-c", str(path), "-i", COMPUTE_ID)
    compute.wait_status("running")


def send_and_leave(compute: Compute, path: str, body: Any) -> None:
    """Send a request and close the connection without waiting for the answer."""
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {compute.token}\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", compute.http_port), timeout=10) as client:
        client.sendall(head.encode() + data)


def test_promote_a_replica(
    compute: Compute,
    make_spec: SpecFactory,
    signing_key: SigningKey,
    endpoint_storage: EndpointStorage,
    storage: Storage,
) -> None:
    lfc = {
        "endpoint_id": ENDPOINT,
        "endpoint_storage_addr": endpoint_storage.addr,
        "endpoint_storage_token": endpoint_storage.token,
    }
    # A stored LFC state but no neon extension: the autoprewarm fails, which only warns.
    endpoint_storage.put(storage.tenant_id, storage.timeline_id, ENDPOINT, zstd(b"pages"))
    start(compute, signing_key, make_spec(mode="Replica", autoprewarm=True, **lfc))
    assert compute.wait_lfc("/lfc/prewarm", "failed", "completed", "skipped")["status"] == "failed"
    assert (compute.pgdata / "standby.signal").exists()
    assert compute.sql("SELECT pg_catalog.pg_is_in_recovery()") is True
    replayed = compute.sql("SELECT pg_catalog.pg_last_wal_replay_lsn()::text")
    body = {"spec": make_spec(**lfc), "wal_flush_lsn": replayed}

    # A client that goes away at once does not stop the promotion ...
    send_and_leave(compute, "/promote", body)
    # ... and the next call gets its outcome.
    answer = compute.call("POST", "/promote", body)
    assert answer.status == 200, compute.log()
    outcome = answer.json()
    assert list(outcome) == [
        "status",
        "lsn_wait_time_ms",
        "pg_promote_time_ms",
        "reconfigure_time_ms",
    ]
    assert outcome["status"] == "completed"
    assert all(isinstance(outcome[k], int) and outcome[k] >= 0 for k in list(outcome)[1:])
    # Later calls, whatever they ask, get the same outcome: one promotion per compute.
    again = compute.call("POST", "/promote", {**body, "wal_flush_lsn": "FF/0"})
    assert (again.status, again.json()) == (200, outcome)
    log = compute.log()
    assert log.count("promoting the replica") == 1
    assert "compute prewarm failed" in log

    # Postgres is a primary now, pointed at the safekeepers, with the new spec's config.
    assert compute.sql("SELECT pg_catalog.pg_is_in_recovery()") is False
    assert not (compute.pgdata / "standby.signal").exists()
    assert compute.sql("SHOW synchronous_standby_names") == "walproposer"
    assert compute.sql("SHOW neon.safekeepers") == ",".join(storage.safekeepers)
    assert "neon.compute_mode=primary" in (compute.pgdata / "postgresql.conf").read_text()
    # Commits wait for the walproposer (absent on stock PostgreSQL): write locally.
    with psycopg.connect(
        compute.connstr, connect_timeout=10, autocommit=True, options="-c synchronous_commit=local"
    ) as conn:
        conn.execute("CREATE TABLE promoted (id int)")
        conn.execute("INSERT INTO promoted VALUES (1)")
    assert compute.sql("SELECT count(*) FROM promoted") == 1
    assert compute.status()["status"] == "running"

    pid = compute.postmaster_pid()
    answer = compute.call("POST", "/terminate?mode=immediate")
    assert answer.status == 200
    assert compute.wait_exit() == 0
    assert not pid_alive(pid)


def test_promote_refusals_on_a_replica(
    compute: Compute, make_spec: SpecFactory, signing_key: SigningKey
) -> None:
    start(compute, signing_key, make_spec(mode="Replica"))
    url = f"{compute.url}/promote"
    auth = bearer(compute.token)
    body = {"spec": make_spec(), "wal_flush_lsn": "0/0"}

    # Bodies are checked first, with the plain framework's plain-text rejections ...
    text = {**auth, "Content-Type": "text/plain"}
    answer = http("POST", url, json.dumps(body).encode(), headers=text)
    assert answer.status == 415
    assert answer.body == b"Expected request with `Content-Type: application/json`"
    json_auth = {**auth, "Content-Type": "application/json"}
    answer = http("POST", url, b"{not json", headers=json_auth)
    assert answer.status == 400
    assert answer.body.startswith(b"Failed to parse the request body as JSON: ")
    answer = http("POST", url, {"spec": body["spec"]}, headers=auth)
    assert answer.status == 422
    assert answer.body.startswith(b"Failed to deserialize the JSON body into the target type: ")
    assert b"wal_flush_lsn" in answer.body
    # ... and a spec that does not resolve is a JSON 400.
    bad = make_spec(safekeeper_connstrings=["a:1", "a:1"])
    answer = compute.call("POST", "/promote", {**body, "spec": bad})
    assert (answer.status, answer.json()) == (
        400,
        {"error": "duplicate entry in safekeeper_connstrings: a:1!"},
    )

    # Never prewarmed: refused, and that outcome is final.
    for _ in range(2):
        answer = compute.call("POST", "/promote", body)
        assert (answer.status, answer.json()) == (
            500,
            {"status": "failed", "error": "compute NotPrewarmed"},
        )
    assert compute.sql("SELECT pg_catalog.pg_is_in_recovery()") is True


def test_promote_refused_on_a_primary(
    compute: Compute, make_spec: SpecFactory, signing_key: SigningKey
) -> None:
    start(compute, signing_key, make_spec())
    answer = compute.call("POST", "/promote", {"spec": make_spec(), "wal_flush_lsn": "0/0"})
    assert (answer.status, answer.json()) == (
        500,
        {"status": "failed", "error": 'compute mode "primary" is not replica'},
    )
