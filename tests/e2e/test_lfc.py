"""LFC prewarm and offload through the HTTP API of a real compute_ctl, with endpoint storage
stood in for.

Stock PostgreSQL has no neon extension, so the plain paths end `failed` with Postgres' error.
The `completed` paths use test-only functions, created by the test in a `neon` schema with the
extension's signatures: compute_ctl calls them by name and cannot tell the difference.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.endpoint_storage import EndpointStorage, unzstd, zstd
from tests.support.harness import Compute, SigningKey, ctl_config
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres

COMPUTE_ID = "compute-lfc"
ENDPOINT = "ep-lfc"
PREWARM = "/lfc/prewarm"
OFFLOAD = "/lfc/offload"
PREWARM_ENDED = ("completed", "failed", "skipped", "cancelled")
OFFLOAD_ENDED = ("completed", "failed", "skipped")

NEON_FUNCTIONS = """
CREATE SCHEMA neon;
CREATE TABLE neon.test_loaded (n serial, state bytea);
CREATE TABLE neon.test_cache (state bytea);
CREATE FUNCTION neon.prewarm_local_cache(state bytea, n_workers integer DEFAULT 1)
    RETURNS void LANGUAGE sql AS $$ INSERT INTO neon.test_loaded (state) VALUES (state) $$;
CREATE FUNCTION neon.get_prewarm_info(
    OUT total_pages integer, OUT prewarmed_pages integer, OUT skipped_pages integer,
    OUT active_workers integer
) RETURNS record LANGUAGE sql AS $$ SELECT 10, 7, 3, 0 $$;
CREATE FUNCTION neon.get_local_cache_state(max_chunks integer DEFAULT NULL)
    RETURNS bytea LANGUAGE sql AS $$ SELECT state FROM neon.test_cache LIMIT 1 $$;
"""
SLOW_PREWARM = """
CREATE OR REPLACE FUNCTION neon.prewarm_local_cache(state bytea, n_workers integer DEFAULT 1)
    RETURNS void LANGUAGE sql AS $$ SELECT pg_catalog.pg_sleep(600) $$;
"""


def create_neon_functions(compute: Compute, sql: str = NEON_FUNCTIONS) -> None:
    with psycopg.connect(compute.connstr, connect_timeout=10, autocommit=True) as conn:
        for statement in sql.split(";\n"):
            if statement.strip():
                conn.execute(statement.encode())


def set_cache_state(compute: Compute, state: bytes | None) -> None:
    with psycopg.connect(compute.connstr, connect_timeout=10, autocommit=True) as conn:
        conn.execute("DELETE FROM neon.test_cache")
        if state is not None:
            conn.execute("INSERT INTO neon.test_cache VALUES (%s)", [state])


def loaded(compute: Compute) -> bytes:
    """The last state `neon.prewarm_local_cache` received."""
    state: bytes = compute.sql("SELECT state FROM neon.test_loaded ORDER BY n DESC LIMIT 1")
    return state


def start(
    compute: Compute,
    key: SigningKey,
    make_spec: SpecFactory,
    storage: EndpointStorage,
    **fields: Any,
) -> None:
    spec = make_spec(
        endpoint_id=ENDPOINT,
        endpoint_storage_addr=storage.addr,
        endpoint_storage_token=storage.token,
        **fields,
    )
    path = compute.write("config.json", {"spec": spec, "compute_ctl_config": ctl_config(key)})
    compute.token = key.compute_token(COMPUTE_ID)
    compute.start("-c", str(path), "-i", COMPUTE_ID)
    compute.wait_status("running")


def post(compute: Compute, path: str) -> None:
    answer = compute.call("POST", path)
    assert (answer.status, answer.body) == (202, b""), answer


def counters(compute: Compute) -> dict[str, float | None]:
    names = ("prewarms", "prewarm_errors", "offloads", "offload_errors")
    return {name: compute.metric(f"compute_ctl_lfc_{name}_total") for name in names}


def pg_running(compute: Compute, query_prefix: str) -> bool:
    """Whether a backend is running a query that starts with `query_prefix`."""
    with psycopg.connect(compute.connstr, connect_timeout=10, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
            "AND starts_with(query, %s)",
            [query_prefix],
        ).fetchone()
    return bool(row and row[0])


def test_stock_postgres_ends_failed_with_the_postgres_error(
    compute: Compute,
    make_spec: SpecFactory,
    signing_key: SigningKey,
    endpoint_storage: EndpointStorage,
    storage: Any,
) -> None:
    start(compute, signing_key, make_spec, endpoint_storage, autoprewarm=True)
    # autoprewarm: nothing stored for this endpoint yet, so the prewarm is skipped.
    assert compute.wait_lfc(PREWARM, *PREWARM_ENDED) == {"status": "skipped"}
    assert compute.call("GET", OFFLOAD).json() == {"status": "not_offloaded"}

    post(compute, OFFLOAD)
    assert compute.wait_lfc(OFFLOAD, *OFFLOAD_ENDED) == {
        "status": "failed",
        "error": 'querying LFC state: db error: ERROR: schema "neon" does not exist',
    }

    endpoint_storage.put(storage.tenant_id, storage.timeline_id, ENDPOINT, zstd(b"pages"))
    post(compute, PREWARM)
    assert compute.wait_lfc(PREWARM, *PREWARM_ENDED) == {
        "status": "failed",
        "error": 'loading LFC state into postgres: db error: ERROR: schema "neon" does not exist',
    }
    assert counters(compute) == {
        "prewarms": 2,
        "prewarm_errors": 1,
        "offloads": 1,
        "offload_errors": 1,
    }


def test_completed_paths_with_neon_functions(
    compute: Compute,
    make_spec: SpecFactory,
    signing_key: SigningKey,
    endpoint_storage: EndpointStorage,
    storage: Any,
) -> None:
    start(compute, signing_key, make_spec, endpoint_storage)
    assert compute.call("GET", PREWARM).json() == {"status": "not_prewarmed"}
    assert counters(compute) == dict.fromkeys(
        ("prewarms", "prewarm_errors", "offloads", "offload_errors"), 0
    )
    create_neon_functions(compute)
    tenant, timeline = storage.tenant_id, storage.timeline_id

    # Prewarm from this endpoint's state: the decompressed bytes reach Postgres.
    endpoint_storage.put(tenant, timeline, ENDPOINT, zstd(b"own pages"))
    post(compute, PREWARM)
    state = compute.wait_lfc(PREWARM, *PREWARM_ENDED)
    assert list(state) == [
        "status",
        "total",
        "prewarmed",
        "skipped",
        "state_download_time_ms",
        "uncompress_time_ms",
        "prewarm_time_ms",
    ]
    assert (state["status"], state["total"], state["prewarmed"], state["skipped"]) == (
        "completed",
        10,
        7,
        3,
    )
    assert all(isinstance(state[k], int) and state[k] >= 0 for k in list(state)[4:])
    assert loaded(compute) == b"own pages"

    # ... and from another endpoint's.
    endpoint_storage.put(tenant, timeline, "ep-other", zstd(b"other pages"))
    post(compute, f"{PREWARM}?from_endpoint=ep-other")
    assert compute.wait_lfc(PREWARM, *PREWARM_ENDED)["status"] == "completed"
    assert loaded(compute) == b"other pages"
    answer = compute.call("POST", f"{PREWARM}?from=ep-other")
    assert answer.status == 400
    assert answer.body == b"Failed to deserialize query string: missing field `from_endpoint`"

    # Offload: nothing in the cache is skipped; a state is compressed and stored.
    post(compute, OFFLOAD)
    assert compute.wait_lfc(OFFLOAD, *OFFLOAD_ENDED) == {"status": "skipped"}
    cache = bytes(range(256)) * 64
    set_cache_state(compute, cache)
    post(compute, OFFLOAD)
    state = compute.wait_lfc(OFFLOAD, *OFFLOAD_ENDED)
    assert list(state) == [
        "status",
        "state_query_time_ms",
        "compress_time_ms",
        "state_upload_time_ms",
    ]
    assert state["status"] == "completed"
    stored = endpoint_storage.get(tenant, timeline, ENDPOINT)
    assert stored is not None
    assert unzstd(stored) == cache
    assert len(stored) < len(cache)

    # What was offloaded prewarms again.
    post(compute, PREWARM)
    assert compute.wait_lfc(PREWARM, *PREWARM_ENDED)["status"] == "completed"
    assert loaded(compute) == cache

    # Endpoint storage refusing: the state says so.
    endpoint_storage.fail(tenant, timeline, ENDPOINT, 503)
    post(compute, OFFLOAD)
    assert compute.wait_lfc(OFFLOAD, *OFFLOAD_ENDED) == {
        "status": "failed",
        "error": "request to endpoint storage failed: 503 Service Unavailable",
    }
    post(compute, PREWARM)
    assert compute.wait_lfc(PREWARM, *PREWARM_ENDED) == {
        "status": "failed",
        "error": "503 Service Unavailable querying endpoint storage",
    }
    assert counters(compute) == {
        "prewarms": 4,
        "prewarm_errors": 1,
        "offloads": 3,
        "offload_errors": 1,
    }


def test_one_at_a_time_and_cancellation(
    compute: Compute,
    make_spec: SpecFactory,
    signing_key: SigningKey,
    endpoint_storage: EndpointStorage,
    storage: Any,
) -> None:
    start(compute, signing_key, make_spec, endpoint_storage)
    create_neon_functions(compute)
    tenant, timeline = storage.tenant_id, storage.timeline_id
    endpoint_storage.put(tenant, timeline, ENDPOINT, zstd(b"pages"))

    # A second prewarm while one downloads: 429. DELETE cancels the download.
    with endpoint_storage.held(tenant, timeline, ENDPOINT):
        post(compute, PREWARM)
        assert compute.call("GET", PREWARM).json() == {"status": "prewarming"}
        answer = compute.call("POST", PREWARM)
        assert (answer.status, answer.json()) == (
            429,
            {"error": "Multiple requests for prewarm are not allowed"},
        )
        answer = compute.call("DELETE", PREWARM)
        assert (answer.status, answer.body) == (202, b"")
        assert compute.wait_lfc(PREWARM, *PREWARM_ENDED) == {"status": "cancelled"}

    # A second offload while one uploads: 429.
    set_cache_state(compute, b"cache")
    with endpoint_storage.held(tenant, timeline, ENDPOINT):
        post(compute, OFFLOAD)
        assert compute.call("GET", OFFLOAD).json() == {"status": "offloading"}
        answer = compute.call("POST", OFFLOAD)
        assert (answer.status, answer.json()) == (
            429,
            {"error": "Multiple requests for prewarm offload are not allowed"},
        )
    assert compute.wait_lfc(OFFLOAD, *OFFLOAD_ENDED)["status"] == "completed"

    # DELETE while idle: the next prewarm ends cancelled, the one after completes.
    assert compute.call("DELETE", PREWARM).status == 202
    post(compute, PREWARM)
    assert compute.wait_lfc(PREWARM, *PREWARM_ENDED) == {"status": "cancelled"}
    post(compute, PREWARM)
    assert compute.wait_lfc(PREWARM, *PREWARM_ENDED)["status"] == "completed"

    # DELETE while Postgres loads the state: the query itself is cancelled.
    create_neon_functions(compute, SLOW_PREWARM)
    post(compute, PREWARM)
    wait_until("the prewarm query", lambda: pg_running(compute, "select neon.prewarm_local_cache"))
    assert compute.call("DELETE", PREWARM).status == 202
    assert compute.wait_lfc(PREWARM, *PREWARM_ENDED) == {"status": "cancelled"}
    wait_until(
        "the prewarm query cancelled",
        lambda: not pg_running(compute, "select neon.prewarm_local_cache"),
    )
    assert counters(compute)["prewarm_errors"] == 0


def test_periodic_offload(
    compute: Compute,
    make_spec: SpecFactory,
    signing_key: SigningKey,
    endpoint_storage: EndpointStorage,
    storage: Any,
) -> None:
    start(compute, signing_key, make_spec, endpoint_storage, offload_lfc_interval_seconds=1)
    # No neon functions yet: the first ticks fail; then a state appears and is stored.
    wait_until("a failed periodic offload", lambda: (counters(compute)["offload_errors"] or 0) > 0)
    assert compute.call("GET", OFFLOAD).json()["status"] in ("failed", "offloading")
    create_neon_functions(compute)
    set_cache_state(compute, b"periodic state")
    tenant, timeline = storage.tenant_id, storage.timeline_id
    wait_until(
        "the periodic offload stored the state",
        lambda: endpoint_storage.get(tenant, timeline, ENDPOINT) is not None,
    )
    stored = endpoint_storage.get(tenant, timeline, ENDPOINT)
    assert stored is not None
    assert unzstd(stored) == b"periodic state"
    assert compute.wait_lfc(OFFLOAD, *OFFLOAD_ENDED)["status"] == "completed"
    assert "spawning LFC offload worker with 1s interval" in compute.log()
