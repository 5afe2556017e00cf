"""compute_ctl's command line: upstream's flags and defaults, the seed's -S, usage errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from compute_ctl.cli import UsageError, normalize_remote_ext_base_url, parse_params

BASE = ["-D", "/tmp/pgdata", "-C", "postgresql://cloud_admin@localhost:55433/postgres"]


def test_defaults_with_config() -> None:
    params = parse_params([*BASE, "-c", "config.json", "-i", "compute-1"])
    assert (params.external_http_port, params.internal_http_port) == (3080, 3081)
    assert params.privileged_role_name == "neon_superuser"
    assert params.pgbin == "postgres"
    assert params.config_path == Path("config.json")
    assert params.installed_extensions_collection_interval == 3600
    assert not params.lakebase_mode


def test_seed_form_needs_no_compute_id() -> None:
    params = parse_params([*BASE, "-S", "spec.json", "-b", "/usr/lib/postgresql/15/bin/postgres"])
    assert params.spec_path == Path("spec.json")
    assert params.pg_bindir == Path("/usr/lib/postgresql/15/bin")
    assert params.compute_id is None


def test_pgbin_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_PATH", "/opt/pg/bin/postgres")
    assert parse_params([*BASE, "-S", "s.json"]).pgbin == "/opt/pg/bin/postgres"


def test_lakebase_http_port() -> None:
    args = [*BASE, "-S", "s", "--http-port", "4000"]
    assert parse_params(args).external_http_port == 3080  # ignored outside lakebase mode
    params = parse_params([*args, "--lakebase-mode", "true"])
    assert (params.external_http_port, params.internal_http_port) == (4000, 4001)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-c", "a", "-p", "http://cp", "-i", "x"], "--config and --control-plane-uri"),
        (["-p", "http://cp"], "--control-plane-uri requires --compute-id"),
        (["-c", "a"], "--compute-id is required"),
        (["-S", "s", "--privileged-role-name", "Admin"], "can only contain lowercase letters"),
        (["-S", "s", "--http-port", "1", "--external-http-port", "2"], "--http-port cannot"),
    ],
)
def test_usage_errors(extra: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_params([*BASE, *extra])


def test_connstr_must_be_a_url() -> None:
    with pytest.raises(UsageError, match="cannot parse connstr as a URL"):
        parse_params(["-D", "d", "-C", "host=localhost", "-S", "s"])


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("https://example.com/subpath", "https://example.com/subpath/"),
        ("https://example.com//", "https://example.com/"),
        ("https://example.com", "https://example.com/"),
    ],
)
def test_remote_ext_base_url(url: str, normalized: str) -> None:
    assert normalize_remote_ext_base_url(url) == normalized


def test_remote_ext_base_url_rejects_queries() -> None:
    with pytest.raises(UsageError, match="parameters detected in remote extensions base URL"):
        normalize_remote_ext_base_url("https://example.com/?a=b")


def test_usage_error_is_one_line_and_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "compute_ctl.cli", "-D", "d"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "the following arguments are required: -C/--connstr" in result.stderr


def test_autoscaling_is_read_once_at_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """`AUTOSCALING` in the environment makes a VM compute: its children (Postgres,
    sync-safekeepers) run under cgexec in the vm-monitor's cgroup."""
    monkeypatch.delenv("AUTOSCALING", raising=False)
    pod = parse_params([*BASE, "-S", "spec.json"])
    assert (pod.autoscaling, pod.cgroup_prefix) == (False, ())
    monkeypatch.setenv("AUTOSCALING", "true")
    vm = parse_params([*BASE, "-S", "spec.json"])
    assert vm.autoscaling
    assert vm.cgroup_prefix == ("cgexec", "-g", "memory:neon-postgres")
