"""Traces of a real compute_ctl, received by a real OTLP/HTTP receiver (tests/otlp_receiver.py):
the start-up span tree, its parents (TRACEPARENT, a /configure request's traceparent header),
the attributes, a collector that is down, and no OpenTelemetry at all without an exporter."""

from __future__ import annotations

import re
import signal
import time

import pytest

from tests.e2e.conftest import SpecFactory
from tests.e2e.test_catalog_e2e import catalog_spec
from tests.support.harness import Compute, http
from tests.support.otlp_receiver import (
    ReceivedSpan,
    Receiver,
    closed_port_url,
    running_receiver,
    silent_collector,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
STATUS_UNSET, STATUS_ERROR = 0, 2  # OTLP's span status codes


def otel_env(endpoint: str, **extra: str) -> dict[str, str]:
    # A short batch delay: spans reach the receiver while the compute runs, not only at exit.
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100", **extra}


def terminate(compute: Compute) -> None:
    answer = compute.call("POST", "/terminate")
    assert answer.status == 200, answer
    assert compute.wait_exit() == 0, compute.log()


def child(receiver: Receiver, parent: ReceivedSpan, name: str) -> ReceivedSpan:
    found = [s for s in receiver.children(parent) if s.name == name]
    assert len(found) == 1, f"{name!r} under {parent.name!r}:\n{receiver.tree()}"
    return found[0]


def test_start_up_span_tree_parented_on_traceparent(
    compute: Compute, make_spec: SpecFactory
) -> None:
    spec = catalog_spec(make_spec, "alice")
    path = compute.write("spec.json", spec)
    with running_receiver() as receiver:
        compute.start("-S", str(path), env=otel_env(receiver.url, TRACEPARENT=TRACEPARENT))
        assert compute.wait_status("running", "failed")["status"] == "running", compute.log()
        terminate(compute)
        print(receiver.tree())  # docs/deploying.md shows this tree

        start = receiver.one("start_compute")
        assert (start.trace_id, start.parent_id) == (TRACE_ID, PARENT_ID)
        assert start.service == "compute_ctl"
        prepare = child(receiver, start, "prepare_pgdata")
        child(receiver, prepare, "config")
        child(receiver, prepare, "check_safekeepers_synced")
        basebackup = child(receiver, prepare, "get_basebackup")
        assert basebackup.attributes["protocol"] == "libpq"
        assert basebackup.attributes["bytes"] > 0
        assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", basebackup.attributes["lsn"])
        child(receiver, start, "download_preload_extensions")
        child(receiver, start, "start_postgres")
        primary = child(receiver, start, "configure_as_primary")
        apply = child(receiver, primary, "apply_config")
        assert apply.attributes["statements"] > 0
        assert apply.attributes["statements_planned"] >= apply.attributes["statements"]
        child(receiver, primary, "handle_migrations")
        assert {s.trace_id for s in receiver.spans if s.name != "GET /status"} >= {TRACE_ID}

        # Every request has a server span with its request id; /terminate's work is its child.
        server = receiver.one("POST /terminate")
        assert server.kind == "SERVER"
        assert server.attributes["http.response.status_code"] == 200
        assert re.fullmatch(r"[0-9a-f-]{36}", server.attributes["request_id"])
        assert child(receiver, server, "terminate").attributes["mode"] == "fast"
        statuses = receiver.named("GET /status")
        assert statuses and all(s.parent_id == "" for s in statuses)


def test_configure_request_parents_the_start_up(compute: Compute, make_spec: SpecFactory) -> None:
    with running_receiver() as receiver:
        compute.start("-i", "compute-1", env=otel_env(receiver.url, TRACEPARENT=TRACEPARENT))
        # The exporter loads after the listeners serve: a request before that is not traced.
        wait_until("the exporter", lambda: "tracing: exporting spans" in compute.log())
        trace_id, caller = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
        answer = http(
            "POST",
            f"{compute.url}/configure",
            {"spec": make_spec(), "compute_ctl_config": {"jwks": {"keys": []}}},
            headers={"traceparent": f"00-{trace_id}-{caller}-01", "x-request-id": "cfg-1"},
        )
        assert answer.status == 200, compute.log()
        terminate(compute)

        configure = receiver.one("POST /configure")
        assert (configure.trace_id, configure.parent_id) == (trace_id, caller)
        assert configure.attributes["request_id"] == "cfg-1"
        start = receiver.one("start_compute")  # the request's child, not TRACEPARENT's
        assert (start.trace_id, start.parent_id) == (trace_id, configure.span_id)
        child(receiver, start, "prepare_pgdata")


@pytest.mark.parametrize("collector", ["refusing", "silent"])
def test_a_collector_that_is_down_neither_fails_nor_holds_up_the_compute(
    collector: str, compute: Compute, make_spec: SpecFactory
) -> None:
    path = compute.write("spec.json", make_spec())
    with silent_collector() as silent:
        url = closed_port_url() if collector == "refusing" else silent
        # Each export may take 30 s: only the exit's bound (2 s) can make the exit prompt.
        compute.start("-S", str(path), env=otel_env(url, OTEL_EXPORTER_OTLP_TIMEOUT="30"))
        assert compute.wait_status("running", "failed")["status"] == "running", compute.log()
        started = time.monotonic()
        answer = compute.call("POST", "/terminate")
        assert answer.status == 200, compute.log()
        assert compute.wait_exit(timeout=20) == 0, compute.log()
        assert time.monotonic() - started < 20
    assert "timed out while shutting down tracing, exiting anyway" in compute.log()


def test_no_opentelemetry_is_imported_without_an_exporter(
    compute: Compute, make_spec: SpecFactory
) -> None:
    """P2 stays where it was: a compute without OTEL_* never imports OpenTelemetry (nor the
    JSON log formatter). Python reports every import on stderr with PYTHONPROFILEIMPORTTIME."""
    path = compute.write("spec.json", make_spec())
    compute.start("-S", str(path), env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert compute.wait_status("running", "failed")["status"] == "running", compute.log()
    terminate(compute)
    imported = re.findall(r"^import time:.*\|\s*(\S+)$", compute.log(), re.MULTILINE)
    assert "compute_ctl.compute.node" in {name.strip() for name in imported}
    assert not [m for m in imported if m.startswith(("opentelemetry", "pythonjsonlogger"))]


def test_opentelemetry_loads_after_the_listeners_serve(
    compute: Compute, make_spec: SpecFactory
) -> None:
    path = compute.write("spec.json", make_spec())
    with running_receiver() as receiver:
        compute.start("-S", str(path), env=otel_env(receiver.url, PYTHONPROFILEIMPORTTIME="1"))
        compute.wait_status("running")
        terminate(compute)
    log = compute.log()
    serving = log.index("serving the external API")
    first_otel = re.search(r"^import time:.*\|\s*opentelemetry", log, re.MULTILINE)
    assert first_otel is not None and first_otel.start() > serving


def test_spans_are_flushed_on_a_signal(compute: Compute, make_spec: SpecFactory) -> None:
    path = compute.write("spec.json", make_spec())
    with running_receiver() as receiver:
        # The SDK's default batch delay (5 s): only the exit's flush sends the spans in time.
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "60000"}
        compute.start("-S", str(path), env=env)
        compute.wait_status("running")
        assert compute.process is not None
        compute.process.send_signal(signal.SIGTERM)
        assert compute.wait_exit() == 1
        assert receiver.one("start_compute").status_code == STATUS_UNSET
        assert receiver.named("get_basebackup")


def test_a_failed_start_is_an_error_span_flushed_at_exit(
    compute: Compute, make_spec: SpecFactory
) -> None:
    # Compliance audit logging with no endpoint to ship to: the start fails inside its span.
    path = compute.write("spec.json", make_spec(audit_log_level="Hipaa"))
    with running_receiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "60000"}
        compute.start("-S", str(path), env=env)
        assert compute.wait_status("running", "failed")["status"] == "failed"
        assert compute.wait_exit() == 1
        start = receiver.one("start_compute")
        assert start.status_code == STATUS_ERROR
        assert "AUDIT_LOGGING_ENDPOINT" in compute.log()
