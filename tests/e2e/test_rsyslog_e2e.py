"""rsyslog set-up by a real compute_ctl, relocated with COMPUTE_CTL_RSYSLOG_DIR and
COMPUTE_CTL_RSYSLOG_RESTART so that nothing is written to /etc and no rsyslogd is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from compute_ctl.logs_export import rsyslog
from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute, http

pytestmark = pytest.mark.postgres


def relocated(compute: Compute) -> tuple[dict[str, str], Path, Path]:
    """The environment, the rsyslog directory and the file counting restarts."""
    directory = compute.workdir / "rsyslog.d"
    directory.mkdir()
    compute.run_as.chown(directory)
    marker = compute.workdir / "rsyslog-restarts"
    env = {
        "COMPUTE_CTL_RSYSLOG_DIR": str(directory),
        "COMPUTE_CTL_RSYSLOG_RESTART": f"sh -c 'echo restarted >> {marker}'",
    }
    return env, directory, marker


def restarts(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def test_logs_export_host(compute: Compute, make_spec: SpecFactory) -> None:
    env, directory, marker = relocated(compute)
    spec = make_spec(logs_export_host="collector.example.com:6514")
    compute.start("-S", str(compute.write("spec.json", spec)), env=env)
    status = compute.wait_status("running", "failed")
    assert status["status"] == "running", compute.log()

    text = (directory / "postgres_logs.conf").read_text()
    assert text == rsyslog.render_postgres_logs_config("collector.example.com", 6514)
    assert restarts(marker) == 1
    assert compute.sql("show log_destination") == "stderr,syslog"
    # Without audit logging the gauge is still exposed, at 0 (as upstream's).
    assert compute.metric("compute_audit_log_dir_size") == 0
    assert sorted(p.name for p in directory.iterdir()) == ["postgres_logs.conf"]


def test_bad_logs_export_host_is_refused_before_anything_runs(
    compute: Compute, make_spec: SpecFactory
) -> None:
    """Upstream writes the value into rsyslog's configuration; we refuse it with the spec."""
    env, directory, marker = relocated(compute)
    bad = 'collector.example.com:514"\n*.* action(type="omfile" file="/var/spool/x")'
    spec_file = compute.write("spec.json", make_spec(logs_export_host=bad))
    compute.start("-S", str(spec_file), env=env, wait=False)
    assert compute.wait_exit() == 1
    log = compute.log()
    assert "logs_export_host: expected host:port" in log, log
    assert "omfile" not in log and "Traceback" not in log
    assert list(directory.iterdir()) == []
    assert restarts(marker) == 0


def test_configure_refuses_a_bad_logs_export_host(compute: Compute, make_spec: SpecFactory) -> None:
    env, directory, marker = relocated(compute)
    compute.start("-i", "compute-1", env=env)
    request = {
        "spec": make_spec(logs_export_host="collector.example.com"),
        "compute_ctl_config": {"jwks": {"keys": []}},
    }
    answer = http("POST", f"{compute.url}/configure", request)
    assert answer.status == 400
    assert answer.json() == {"error": "expected host:port: the port is missing"}
    assert compute.status()["status"] == "empty"
    assert list(directory.iterdir()) == []
    assert restarts(marker) == 0


def test_audit_logging_configures_rsyslog(compute: Compute, make_spec: SpecFactory) -> None:
    """Hipaa: the audit rsyslog file is written and rsyslog restarted before Postgres starts.
    (Stock PostgreSQL has no pgaudit, so the start itself may then fail.)"""
    env, directory, marker = relocated(compute)
    env["AUDIT_LOGGING_TLS_ENDPOINT"] = "audit.example.com:6514"
    spec = make_spec(audit_log_level="Hipaa", endpoint_id="ep-e2e-1", project_id="proj-e2e")
    compute.start("-S", str(compute.write("spec.json", spec)), env=env)
    compute.wait_status("running", "failed")

    text = (directory / "compute_audit_rsyslog.conf").read_text()
    assert text == rsyslog.render_audit_config(
        log_directory=compute.pgdata / "log",
        endpoint_id="ep-e2e-1",
        project_id="proj-e2e",
        host="audit.example.com",
        port=6514,
        tls=True,
    )
    assert restarts(marker) == 1
    assert "running pgaudit GC main loop" in compute.log()


def test_bad_audit_endpoint_fails_the_start(compute: Compute, make_spec: SpecFactory) -> None:
    env, directory, _marker = relocated(compute)
    env["AUDIT_LOGGING_ENDPOINT"] = "audit.example.com"
    spec = make_spec(audit_log_level="Full")
    compute.start("-S", str(compute.write("spec.json", spec)), env=env)
    status = compute.wait_status("failed")
    assert status["error"] == ("AUDIT_LOGGING_ENDPOINT: expected host:port: the port is missing"), (
        status
    )
    assert list(directory.iterdir()) == []
    assert compute.wait_exit() == 1
