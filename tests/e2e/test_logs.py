"""compute_ctl's own log lines as an operator sees them: RUST_LOG levels, the stderr line shape,
JSON lines, lakebase's pgcctl files, and no secret at any level."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tests.e2e.conftest import SpecFactory
from tests.e2e.test_catalog_e2e import catalog_spec
from tests.support.harness import Compute, SigningKey, ctl_config, shared_tempdir
from tests.support.otlp_receiver import running_receiver

pytestmark = pytest.mark.postgres

# Upstream's shape: RFC 3339 with microseconds, the level in five columns, spans, message.
LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z (TRACE|DEBUG| INFO| WARN|ERROR) (\S+: )?\S.*"
)


def ours(log: str) -> list[str]:
    """compute_ctl's lines (not Postgres' `PG:` ones, nor continuation lines)."""
    return [line for line in log.splitlines() if line[:4].isdigit()]


def run_to_running(compute: Compute, spec: dict[str, object], **env: str) -> str:
    path = compute.write("spec.json", spec)
    compute.start("-S", str(path), env=env)
    assert compute.wait_status("running", "failed")["status"] == "running", compute.log()
    answer = compute.call("POST", "/terminate")
    assert answer.status == 200, answer
    assert compute.wait_exit() == 0, compute.log()
    return compute.log()


def test_default_is_info_in_upstreams_line_shape(compute: Compute, make_spec: SpecFactory) -> None:
    lines = ours(run_to_running(compute, catalog_spec(make_spec, "alice")))
    assert lines and all(LINE.fullmatch(line) for line in lines), lines
    assert not [line for line in lines if " DEBUG " in line]
    assert any(" INFO start_compute:prepare_pgdata:get_basebackup{lsn=" in x for x in lines)
    # Inside a request, upstream's request span prefixes the lines.
    assert any(
        " INFO request{method=POST uri=/terminate version=HTTP/1.1}:terminate{mode=fast}: " in x
        for x in lines
    ), lines


def test_rust_log_debug_for_compute_ctl_shows_debug_lines(
    compute: Compute, make_spec: SpecFactory
) -> None:
    log = run_to_running(compute, catalog_spec(make_spec, "alice"), RUST_LOG="compute_ctl=debug")
    debug = [line for line in ours(log) if " DEBUG " in line]
    assert any('executing: CREATE DATABASE "app db"' in line for line in debug), log


def test_rust_log_warn_hides_info_lines(compute: Compute, make_spec: SpecFactory) -> None:
    lines = ours(run_to_running(compute, make_spec(), RUST_LOG="warn"))
    assert lines  # the no-authentication warning at least
    assert all(" WARN " in line or " ERROR " in line for line in lines), lines


def test_json_lines_on_stderr(compute: Compute, make_spec: SpecFactory) -> None:
    log = run_to_running(compute, make_spec(), COMPUTE_CTL_LOG_FORMAT="json")
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert records
    for record in records:
        assert {"timestamp", "level", "logger", "message"} <= record.keys(), record
    started = [r for r in records if r["message"].startswith("starting compute for tenant")]
    assert started[0]["spans"] == "start_compute"
    assert started[0]["logger"] == "compute_ctl.compute.startup"
    assert started[0]["level"] == "INFO"
    # Lines logged while a request is served carry its id.
    within = "request{method=POST uri=/terminate version=HTTP/1.1}:terminate{mode=fast}"
    terminating = [r for r in records if r.get("spans") == within]
    assert terminating and all(r.get("request_id") for r in terminating), records


def test_lakebase_daily_json_files(compute: Compute, make_spec: SpecFactory) -> None:
    log_dir = shared_tempdir("e2e-cctl-logs-")
    try:
        compute.start(
            "-S",
            str(compute.write("spec.json", make_spec())),
            "--lakebase-mode",
            "true",
            "-i",
            "compute-7",
            env={"COMPUTE_CTL_LOG_DIRECTORY": str(log_dir), "INSTANCE_ID": "instance-3"},
        )
        assert compute.wait_status("running", "failed")["status"] == "running", compute.log()
        assert compute.call("POST", "/terminate").status == 200
        assert compute.wait_exit() == 0, compute.log()
        files = list(log_dir.iterdir())
        assert [f.name for f in files] == [f"pgcctl.{files[0].name[7:]}"]
        assert re.fullmatch(r"pgcctl\.\d{4}-\d\d-\d\d", files[0].name)
        records = [json.loads(line) for line in files[0].read_text().splitlines()]
        shape = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} GMT")
        for record in records:
            assert list(record) == [
                "timestamp",
                "error_severity",
                "file_name",
                "backend_type",
                "pg_instance_id",
                "pg_compute_id",
                "message",
            ]
            assert shape.fullmatch(record["timestamp"]) and record["backend_type"] == (
                "compute_ctl_self"
            )
        assert records[0]["pg_instance_id"] == ""  # no spec known yet, as upstream
        started = [r for r in records if r["message"].startswith("starting compute")]
        assert started, compute.log()
        assert (started[0]["pg_instance_id"], started[0]["pg_compute_id"]) == (
            "instance-3",
            "compute-7",
        )
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


def test_no_secret_in_the_log_at_debug(
    compute: Compute, make_spec: SpecFactory, signing_key: SigningKey
) -> None:
    spec = catalog_spec(make_spec, "alice")
    password = spec["cluster"]["roles"][0]["encrypted_password"]
    spec["storage_auth_token"] = "storage-token-sekret-4711"
    config = {"spec": spec, "compute_ctl_config": ctl_config(signing_key)}
    path = compute.write("config.json", config)
    compute.token = user_token = signing_key.compute_token("compute-1")
    with running_receiver() as receiver:  # the exporter's requests are logged at debug too
        env = {
            "RUST_LOG": "debug",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer otel-sekret-0815",
        }
        compute.start("-c", str(path), "-i", "compute-1", env=env)
        assert compute.wait_status("running", "failed")["status"] == "running", compute.log()
        compute.token = signing_key.admin_token()
        assert compute.call("POST", "/terminate").status == 200
        assert compute.wait_exit() == 0, compute.log()
        assert receiver.named("start_compute")
    log = compute.log()
    assert " DEBUG " in log
    secrets = (password, "storage-token-sekret-4711", user_token, compute.token, "otel-sekret-0815")
    for secret in secrets:
        assert secret not in log, secret
