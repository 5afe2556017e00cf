"""The hostile-input corpus (tests/hardening_corpus.py) through a real compute_ctl: `-S` and
`POST /configure` (on an empty and on a running compute), plus the HTTP edge and the log.

Every case is refused before anything is touched (PGDATA kept, the compute's status
unchanged), in one short line or a short JSON body naming the field, and no traceback reaches
the log.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.hardening_corpus import LONGEST_LINE, Case, corpus, with_envelope
from tests.support.harness import Compute, Storage, free_port, http, shared_tempdir

pytestmark = pytest.mark.postgres

CORPUS = corpus()
IDS = [case.name for case in CORPUS]
EMPTY_CONFIG: dict[str, Any] = {"jwks": {"keys": []}}


def _new_compute(prefix: str) -> Compute:
    workdir = shared_tempdir(prefix)
    return Compute(workdir, pg_port=free_port(), http_port=free_port(), internal_port=free_port())


def _discard(compute: Compute) -> None:
    compute.stop()
    shutil.rmtree(compute.workdir, ignore_errors=True)


def _no_traceback(compute: Compute) -> None:
    log = compute.log()
    assert "Traceback" not in log, log[-5000:]
    assert "\0" not in log


@pytest.fixture(scope="module")
def seed_dir() -> Iterator[Compute]:
    """One directory for the `-S` runs: each exits before binding anything."""
    compute = _new_compute("e2e-harden-seed-")
    try:
        yield compute
    finally:
        _discard(compute)


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_corpus_via_seed_spec(case: Case, seed_dir: Compute) -> None:
    compute = seed_dir
    if compute.pgdata.exists():
        shutil.rmtree(compute.pgdata)
    compute.pgdata.mkdir()
    marker = compute.pgdata / "PG_VERSION"
    marker.write_text("15\n")  # what a wipe would remove
    compute.run_as.chown(compute.pgdata)
    path = compute.workdir / "spec.json"
    path.write_text(case.text)
    compute.run_as.chown(path)
    compute.start("-S", str(path), wait=False)
    assert compute.wait_exit() == 1
    log = compute.log()
    errors = [line for line in log.splitlines() if line.startswith("compute_ctl: error:")]
    assert len(errors) == 1, log[:LONGEST_LINE]
    assert errors[0].startswith(f"compute_ctl: error: {case.field}"), errors[0]
    assert case.problem in errors[0], errors[0]
    assert len(log) < 2 * LONGEST_LINE, log[: 2 * LONGEST_LINE]
    _no_traceback(compute)
    assert marker.exists(), "PGDATA was touched"


def _expect_refused(compute: Compute, case: Case) -> None:
    answer = http("POST", f"{compute.url}/configure", with_envelope(case.text))
    assert len(answer.body) < LONGEST_LINE, answer.body[:LONGEST_LINE]
    message = answer.json()["error"]
    if case.kind == "text":
        assert answer.status == 400, answer
        assert message.startswith("failed to parse the request body as json: ")
        assert message.endswith(f" at spec.{case.field}".lower()) or case.field.startswith(
            "line "
        ), message
    elif case.kind == "shape":
        assert answer.status == 422, answer
        assert case.field.lower() in message, message
    else:
        assert answer.status == 400, answer
    assert case.problem.lower() in message.lower(), message


@pytest.fixture(scope="module")
def empty_compute() -> Iterator[Compute]:
    compute = _new_compute("e2e-harden-empty-")
    try:
        compute.start("-i", "compute-1")
        yield compute
    finally:
        _discard(compute)


@pytest.mark.parametrize("case", CORPUS, ids=IDS)
def test_corpus_via_configure_on_an_empty_compute(case: Case, empty_compute: Compute) -> None:
    _expect_refused(empty_compute, case)
    assert empty_compute.status()["status"] == "empty"
    _no_traceback(empty_compute)


def _valid_spec(compute: Compute, storage: Storage, **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "format_version": 1.0,
        "suspend_timeout_seconds": -1,
        "cluster": {"roles": [], "databases": [], "settings": compute.settings()},
        "tenant_id": storage.tenant_id,
        "timeline_id": storage.timeline_id,
        "pageserver_connstring": storage.libpq_url,
        "safekeeper_connstrings": storage.safekeepers,
    }
    spec.update(fields)
    return spec


def test_after_the_corpus_the_empty_compute_configures(
    empty_compute: Compute, storage: Storage
) -> None:
    # Nothing the corpus sent left the compute `failed` (a later valid spec would get 412).
    request = {"spec": _valid_spec(empty_compute, storage), "compute_ctl_config": EMPTY_CONFIG}
    answer = http("POST", f"{empty_compute.url}/configure", request)
    assert answer.status == 200, empty_compute.log()[-3000:]
    assert answer.json()["status"] == "running"
    _no_traceback(empty_compute)


def test_corpus_on_a_running_compute(compute: Compute, make_spec: SpecFactory) -> None:
    compute.start("-S", str(compute.write("spec.json", make_spec())))
    compute.wait_status("running")
    for case in CORPUS:
        if case.huge and case.name != "huge-role-name":
            continue  # one 50 MB body is enough here; all of them go to the empty compute
        _expect_refused(compute, case)
        assert compute.status()["status"] == "running", case.name
    _no_traceback(compute)


def test_an_apply_failure_answers_with_its_cause(compute: Compute, make_spec: SpecFactory) -> None:
    compute.start("-S", str(compute.write("spec.json", make_spec())))
    compute.wait_status("running")
    # Passes resolution, fails in Postgres: the answer carries Postgres' reason.
    spec = make_spec(skip_pg_catalog_updates=False)
    spec["cluster"]["databases"] = [{"name": "orphan", "owner": "ghost_owner"}]
    answer = http(
        "POST", f"{compute.url}/configure", {"spec": spec, "compute_ctl_config": EMPTY_CONFIG}
    )
    assert answer.status == 500, answer
    message = answer.json()["error"]
    assert message.startswith("compute configuration failed: "), message
    assert "unknown error" not in message
    assert "ghost_owner" in message, message
    status = compute.status()
    assert status["status"] == "failed"
    assert "ghost_owner" in status["error"]
    _no_traceback(compute)


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_http_edge_and_the_log(compute: Compute) -> None:
    compute.start("-i", "compute-1")
    for port in (compute.http_port, compute.internal_port):
        raw = _raw(port, b"GET /openapi.json HTTP/9.9\r\nHost: x\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 505 "), raw[:200]
    forged = "2026-01-01T00:00:00.000Z ERROR FORGED"
    target = "/status%0a" + forged.replace(" ", "%20") + "%00%0d"
    for path in (target, "/extension_server/x%0a" + forged.replace(" ", "%20")):
        port = compute.http_port if path.startswith("/status") else compute.internal_port
        request = f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert _raw(port, request.encode()).startswith(b"HTTP/1.1 ")
    answer = http("GET", f"{compute.url}/status?token=eyJsecret.payload.sig&access_token=s3cr3t")
    assert answer.status == 200
    # Half a request head: the connection is closed by the server, not kept forever.
    with socket.create_connection(("127.0.0.1", compute.http_port), timeout=60) as conn:
        conn.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        assert conn.recv(1) == b""
    log = compute.log()
    assert not any(line.startswith(forged) for line in log.splitlines()), log
    assert "FORGED" in log  # logged, escaped, inside the request's own line
    assert "eyJsecret" not in log and "s3cr3t" not in log
    assert "token=<redacted>" in log
    _no_traceback(compute)


@pytest.mark.parametrize(
    ("listener", "path"),
    [
        ("external", "/configure"),
        ("external", "/promote"),
        ("internal", "/extensions"),
        ("internal", "/grants"),
        ("internal", "/failpoints"),
    ],
)
@pytest.mark.parametrize(
    "body",
    [b"[" * 5000 + b"]" * 5000, b'{"a": ' * 5000, b'{"database": "\\ud800"}'],
    ids=["deep-arrays", "deep-objects", "surrogate"],
)
def test_every_json_body_is_bounded(
    empty_compute: Compute, listener: str, path: str, body: bytes
) -> None:
    base = empty_compute.url if listener == "external" else empty_compute.internal_url
    answer = http("POST", f"{base}{path}", body)
    assert answer.status == 400, answer
    text = answer.body.decode()
    assert "recursion limit exceeded" in text or "lone surrogate" in text, text
    assert len(text) < LONGEST_LINE
    _no_traceback(empty_compute)


# ------------------------------------------------------------------------------------------
# The API's own inputs and tools (issue 17, item 8), against one running compute.

# Names a client may send that Postgres would refuse or truncate: every one is a 400 naming
# the field, before pg_dump or a connection is tried.
BAD_NAMES = [
    ("", "name is empty"),
    ("d" * 70, "is 70 bytes long; Postgres allows at most 63"),
    ("\U0001f418" * 16, "is 64 bytes long"),
    ("app\x00db", "contains a NUL character"),
]


@pytest.fixture(scope="module")
def api_compute(storage: Storage) -> Iterator[Compute]:
    """A running compute with a database `app` and a role `alice`."""
    compute = _new_compute("e2e-harden-api-")
    try:
        compute.start("-S", str(compute.write("spec.json", _valid_spec(compute, storage))))
        compute.wait_status("running")
        compute.execute("CREATE DATABASE app")
        compute.execute("CREATE ROLE alice")
        yield compute
    finally:
        _discard(compute)


def _refused(answer: Any, field: str, problem: str) -> None:
    assert answer.status == 400, answer
    message = answer.json()["error"]
    assert message.startswith(f"{field}: {field} name"), message
    assert problem in message, message
    assert len(answer.body) < 200, answer.body  # a short excerpt, never the whole name


def test_database_schema_names(api_compute: Compute) -> None:
    compute = api_compute
    for name, problem in BAD_NAMES:
        answer = compute.call("GET", f"/database_schema?database={quote(name)}")
        _refused(answer, "database", problem)
    # A database that does not exist, whatever its name holds (pg_dump's message about it
    # spans two lines for the second); one that accepts no connections.
    for name in ("nope", "two\nlines", "x\"'= \U0001f418"):
        answer = compute.call("GET", f"/database_schema?database={quote(name)}")
        assert (answer.status, answer.json()) == (404, {"error": "database does not exist"})
    answer = compute.call("GET", "/database_schema?database=template0")
    assert (answer.status, answer.json()) == (
        400,
        {"error": "database does not accept connections"},
    )
    answer = compute.call("GET", "/database_schema?database=app")
    assert answer.status == 200
    assert "-- PostgreSQL database dump complete" in answer.body.decode()
    log = compute.log()
    assert "\nlines" not in log  # the name's newline is escaped in pg_dump's logged message
    _no_traceback(compute)


def _failed(compute: Compute, path: str, request: Any, status: int, expected: str) -> None:
    answer = http("POST", f"{compute.internal_url}{path}", request)
    assert answer.status == status, answer
    message = answer.json()["error"]
    prefix = {"/extensions": "failed to install extension: "}.get(
        path, "failed to grant role privileges to the schema: "
    )
    assert message.startswith(prefix), message
    assert expected in message, message
    # Never libpq's connection details.
    assert "127.0.0.1" not in message and str(compute.pg_port) not in message, message


INSTALL = {"extension": "citext", "database": "app", "version": "1.6"}
GRANT = {"database": "app", "schema": "public", "privileges": ["USAGE"], "role": "alice"}


def test_extension_names_and_refusals(api_compute: Compute) -> None:
    compute = api_compute
    for field in ("extension", "database", "version"):
        for name, problem in BAD_NAMES:
            answer = http("POST", f"{compute.internal_url}/extensions", {**INSTALL, field: name})
            _refused(answer, field, problem)
    cases = [
        ({"database": "nope"}, 404, 'database "nope" does not exist'),
        (
            {"database": "template0"},
            400,
            'database "template0" is not currently accepting connections',
        ),
        ({"extension": "no_such_ext"}, 404, 'extension "no_such_ext" is not available'),
        (
            {"version": "9.9"},
            400,
            'extension "citext" has no installation script nor update path for version "9.9"',
        ),
        ({"extension": "a--b"}, 400, 'Extension names must not contain "--".'),
    ]
    for change, status, expected in cases:
        _failed(compute, "/extensions", {**INSTALL, **change}, status, expected)
    answer = http("POST", f"{compute.internal_url}/extensions", INSTALL)
    assert (answer.status, answer.json()) == (201, {"extension": "citext", "version": "1.6"})
    _no_traceback(compute)


def test_grant_names_and_refusals(api_compute: Compute) -> None:
    compute = api_compute
    for field in ("database", "schema", "role"):
        for name, problem in BAD_NAMES:
            answer = http("POST", f"{compute.internal_url}/grants", {**GRANT, field: name})
            _refused(answer, field, problem)
    cases = [
        ({"database": "nope"}, 404, 'database "nope" does not exist'),
        ({"schema": "nope"}, 404, 'schema "nope" does not exist'),
        ({"role": "nobody"}, 404, 'role "nobody" does not exist'),
        ({"role": "none"}, 400, 'role name "none" is reserved'),
    ]
    for change, status, expected in cases:
        _failed(compute, "/grants", {**GRANT, **change}, status, expected)
    answer = http("POST", f"{compute.internal_url}/grants", GRANT)
    assert (answer.status, answer.json()) == (201, GRANT)
    _no_traceback(compute)


def test_liveness_probe_connects_where_the_connstr_says(api_compute: Compute) -> None:
    # --connstr names 127.0.0.1; libpq's default (a socket in /var/run/postgresql) has no
    # server, and PGHOST is not set.
    answer = http("GET", f"{api_compute.url}/hadron_liveness_probe")
    assert (answer.status, answer.json()) == (200, "ok"), api_compute.log()[-3000:]


def test_autoscaling_metrics_without_the_communicator(api_compute: Compute) -> None:
    answer = http("GET", f"{api_compute.url}/autoscaling_metrics")
    assert answer.status == 412, answer
    assert answer.json() == {
        "error": "failed to get autoscaling metrics: the communicator socket "
        f"{api_compute.pgdata}/neon-communicator.socket does not exist "
        "(the neon extension's communicator is not running)"
    }
    assert api_compute.status()["status"] == "running"
