"""rsyslog configuration: validation of every value written into a file, the files' text (checked
by rsyslogd's own configuration checker when it is installed), the restart, and the audit-log
garbage collector against a real directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from compute_ctl.logs_export import rsyslog
from compute_ctl.logs_export.rsyslog import RsyslogError, RsyslogSetup, parse_host_port
from compute_ctl.metrics import PromMetrics
from compute_ctl.spec.models import ComputeSpec
from tests.support.waiting import wait_until_async

# --------------------------------------------------------------------------------------------
# host:port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("collector.host.tld:5555", ("collector.host.tld", 5555)),
        ("Collector.Host.TLD:514", ("collector.host.tld", 514)),
        ("localhost:1", ("localhost", 1)),
        ("10.0.0.1:65535", ("10.0.0.1", 65535)),
        (
            "[7e60:82ed:cb2e:d617:f904:f395:aaca:e252]:5555",
            ("7e60:82ed:cb2e:d617:f904:f395:aaca:e252", 5555),
        ),
        ("[::1]:80", ("::1", 80)),
        ("a-b.c-d.example:6514", ("a-b.c-d.example", 6514)),
    ],
)
def test_host_port_accepted(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, "logs_export_host") == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("collector.host.tld", "the port is missing"),
        (":5555", "the host is missing"),
        ("collector.host.tld:90001", "from 1 to 65535"),
        ("collector.host.tld:0", "from 1 to 65535"),
        ("collector.host.tld:+514", "from 1 to 65535"),
        ("collector.host.tld: 514", "from 1 to 65535"),
        ("collector.host.tld:514 ", "from 1 to 65535"),
        ("collector.host.tld:", "from 1 to 65535"),
        ("-collector.host.tld:5555", "IP address or a DNS name"),
        ("collector-.host.tld:5555", "IP address or a DNS name"),
        ("collector..tld:5555", "IP address or a DNS name"),
        ("collector.host.tld.:5555", "IP address or a DNS name"),
        ("under_score.tld:5555", "IP address or a DNS name"),
        ("collector.host.tld:::5555", "[address]:port"),
        ("7e60::1:5555", "[address]:port"),
        ("[7e60::1:5555", "unclosed"),
        ("[not-v6]:5555", "IPv6"),
        ("[::1]5555", "the port is missing"),
        ("héllo.tld:514", "IP address or a DNS name"),
        ("x" * 64 + ".tld:514", "IP address or a DNS name"),
        # Anything that could end the quoted value and add directives.
        ('evil" port="1" template="x:514', "IP address or a DNS name"),
        ('collector:514"\nmodule(load="omprog")', "from 1 to 65535"),
        ("collector\n*.* /var/spool/x:514", "IP address or a DNS name"),
        ("collector}:514", "IP address or a DNS name"),
        ("a b:514", "IP address or a DNS name"),
    ],
)
def test_host_port_refused_naming_the_field(text: str, problem: str) -> None:
    with pytest.raises(RsyslogError) as info:
        parse_host_port(text, "logs_export_host")
    message = str(info.value)
    assert message.startswith("logs_export_host: expected host:port")
    assert problem in message
    assert text not in message  # the value is never echoed


def test_audit_endpoint_prefers_tls() -> None:
    both = {
        "AUDIT_LOGGING_ENDPOINT": "plaintext.host.tld:5555",
        "AUDIT_LOGGING_TLS_ENDPOINT": "tls.host.tld:5556",
    }
    assert rsyslog.audit_endpoint(both) == ("tls.host.tld", 5556, True)
    assert rsyslog.audit_endpoint({"AUDIT_LOGGING_TLS_ENDPOINT": "tls.host.tld:5556"}) == (
        "tls.host.tld",
        5556,
        True,
    )
    plain = {"AUDIT_LOGGING_ENDPOINT": "10.0.0.1:5555", "AUDIT_LOGGING_TLS_ENDPOINT": ""}
    assert rsyslog.audit_endpoint(plain) == ("10.0.0.1", 5555, False)
    with pytest.raises(RsyslogError, match="are both empty"):
        rsyslog.audit_endpoint({"AUDIT_LOGGING_ENDPOINT": ""})
    with pytest.raises(RsyslogError, match=r"^AUDIT_LOGGING_TLS_ENDPOINT: expected host:port"):
        rsyslog.audit_endpoint({"AUDIT_LOGGING_TLS_ENDPOINT": "tls.host.tld"})


def test_setup_from_environment(tmp_path: Path) -> None:
    assert RsyslogSetup.from_env({}) == RsyslogSetup(Path("/etc/rsyslog.d"), None)
    assert RsyslogSetup.from_env({"COMPUTE_CTL_RSYSLOG_DIR": ""}).directory == Path(
        "/etc/rsyslog.d"
    )
    setup = RsyslogSetup.from_env(
        {
            "COMPUTE_CTL_RSYSLOG_DIR": str(tmp_path),
            "COMPUTE_CTL_RSYSLOG_RESTART": "systemctl restart 'rsyslog.service'",
        }
    )
    assert setup == RsyslogSetup(tmp_path, ("systemctl", "restart", "rsyslog.service"))
    with pytest.raises(RsyslogError, match=r"^COMPUTE_CTL_RSYSLOG_RESTART: not a valid command"):
        RsyslogSetup.from_env({"COMPUTE_CTL_RSYSLOG_RESTART": "sh -c 'unclosed"})


# --------------------------------------------------------------------------------------------
# The files


def check_with_rsyslogd(path: Path, workdir: Path) -> None:
    """rsyslogd's configuration checker on `path`. The audit file names rsyslog's state
    directory of the image (/var/log/rsyslog), which the checker requires to exist; where it does
    not, a copy pointing at `workdir` is checked."""
    rsyslogd = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin:/sbin")
    if rsyslogd is None:
        pytest.skip("rsyslogd is not installed (scripts/install.sh test-tools installs it)")
    text = path.read_text()
    if "/var/log/rsyslog" in text and not Path("/var/log/rsyslog").is_dir():
        path = workdir / f"checked-{path.name}"
        path.write_text(text.replace('"/var/log/rsyslog"', f'"{workdir}"'))
    result = subprocess.run(
        [rsyslogd, "-N1", "-f", str(path)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "End of config validation run" in result.stderr


def marker_command(tmp_path: Path) -> tuple[str, Path]:
    marker = tmp_path / "restarts"
    return f"sh -c 'echo restarted >> {marker}'", marker


def restarts(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def spec(**fields: object) -> ComputeSpec:
    return ComputeSpec.model_validate(
        {
            "format_version": 1.0,
            "suspend_timeout_seconds": -1,
            "cluster": {"roles": [], "databases": []},
            **fields,
        }
    )


def test_postgres_logs_config_text(tmp_path: Path) -> None:
    text = rsyslog.render_postgres_logs_config("collector.cvc.local", 514)
    assert text.endswith("\n    stop\n}\n")
    assert "if $programname == 'postgres' then {\n" in text
    assert (
        '    action(type="omfwd" target="collector.cvc.local" port="514" protocol="tcp"\n'
        '           template="RSYSLOG_SyslogProtocol23Format"\n'
        '           action.resumeRetryCount="3"\n'
        '           queue.type="linkedList" queue.size="1000")\n'
    ) in text
    path = tmp_path / "postgres_logs.conf"
    path.write_text(text)
    check_with_rsyslogd(path, tmp_path)


@pytest.mark.parametrize("tls", [True, False])
def test_audit_config_text(tmp_path: Path, tls: bool) -> None:
    text = rsyslog.render_audit_config(
        log_directory=tmp_path / "pgdata" / "log",
        endpoint_id="ep-test-endpoint-id",
        project_id="test-project-id",
        host="collector.host.tld",
        port=5556,
        tls=tls,
    )
    assert text.startswith('# Load imfile module to read log files\nmodule(load="imfile")\n')
    assert f'input(type="imfile" File="{tmp_path}/pgdata/log/*.log"\n' in text
    assert (
        'startmsg.regex="^[[:digit:]]{4}-[[:digit:]]{2}-[[:digit:]]{2} '
        '[[:digit:]]{2}:[[:digit:]]{2}:[[:digit:]]{2}.[[:digit:]]{3} GMT,")\n'
    ) in text
    assert f'set $.remote_syslog_tls = "{"true" if tls else "false"}";\n' in text
    assert 'set $.json_log!endpoint_id = "ep-test-endpoint-id";\n' in text
    assert 'set $.json_log!project_id = "test-project-id";\n' in text
    assert text.count('target="collector.host.tld" port="5556" protocol="tcp"') == 2
    assert 'StreamDriverPermittedPeers="collector.host.tld"' in text
    assert text.endswith("    stop\n  }\n}\n")
    path = tmp_path / "compute_audit_rsyslog.conf"
    path.write_text(text)
    check_with_rsyslogd(path, tmp_path)


# --------------------------------------------------------------------------------------------
# Configuring


def test_audit_start_writes_the_file_and_restarts(tmp_path: Path) -> None:
    command, marker = marker_command(tmp_path)
    env = {
        "COMPUTE_CTL_RSYSLOG_DIR": str(tmp_path),
        "COMPUTE_CTL_RSYSLOG_RESTART": command,
        "AUDIT_LOGGING_ENDPOINT": "plain.host.tld:5555",
        "AUDIT_LOGGING_TLS_ENDPOINT": "tls.host.tld:6514",
    }
    prom = PromMetrics()
    the_spec = spec(audit_log_level="Hipaa", endpoint_id="ep-1", project_id="proj-1")
    pgdata = tmp_path / "pgdata"

    gc = asyncio.run(rsyslog.configure_at_start(the_spec, pgdata, prom.audit_log_dir_size, env))
    assert gc is not None
    gc.close()
    path = tmp_path / "compute_audit_rsyslog.conf"
    text = path.read_text()
    assert text == rsyslog.render_audit_config(
        log_directory=pgdata / "log",
        endpoint_id="ep-1",
        project_id="proj-1",
        host="tls.host.tld",
        port=6514,
        tls=True,
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert restarts(marker) == 1
    assert not (tmp_path / "postgres_logs.conf").exists()  # no logs_export_host
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "compute_audit_rsyslog.conf",
        "restarts",
    ]


@pytest.mark.parametrize("level", ["Disabled", "Log", "Base"])
def test_no_audit_rsyslog_below_hipaa(tmp_path: Path, level: str) -> None:
    env = {"COMPUTE_CTL_RSYSLOG_DIR": str(tmp_path), "COMPUTE_CTL_RSYSLOG_RESTART": "false"}
    gauge = PromMetrics().audit_log_dir_size
    assert (
        asyncio.run(rsyslog.configure_at_start(spec(audit_log_level=level), tmp_path, gauge, env))
        is None
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"endpoint_id": 'ep-1"; module(load="omprog")'}, "endpoint_id: only letters"),
        ({"project_id": "p\nq"}, "project_id: only letters"),
    ],
)
def test_audit_ids_that_could_inject_are_refused(
    tmp_path: Path, fields: dict[str, str], problem: str
) -> None:
    env = {
        "COMPUTE_CTL_RSYSLOG_DIR": str(tmp_path),
        "COMPUTE_CTL_RSYSLOG_RESTART": "false",
        "AUDIT_LOGGING_ENDPOINT": "plain.host.tld:5555",
    }
    gauge = PromMetrics().audit_log_dir_size
    with pytest.raises(RsyslogError, match=f"^{problem}"):
        asyncio.run(
            rsyslog.configure_at_start(spec(audit_log_level="Full", **fields), tmp_path, gauge, env)
        )
    assert list(tmp_path.iterdir()) == []


def test_audit_log_directory_with_a_quote_is_refused(tmp_path: Path) -> None:
    env = {"COMPUTE_CTL_RSYSLOG_DIR": str(tmp_path), "AUDIT_LOGGING_ENDPOINT": "h.tld:1"}
    setup = RsyslogSetup.from_env(env)
    with pytest.raises(RsyslogError, match=r"^--pgdata: the audit log directory"):
        rsyslog.configure_audit(setup, spec(), tmp_path / 'pg"data' / "log", env)
    assert list(tmp_path.iterdir()) == []


def test_logs_export(tmp_path: Path) -> None:
    marker = tmp_path / "restarts"
    setup = RsyslogSetup(tmp_path, ("sh", "-c", f"echo restarted >> {marker}"))
    path = tmp_path / "postgres_logs.conf"

    rsyslog.configure_postgres_logs_export(setup, "collector.cvc.local:514")
    assert path.read_text() == rsyslog.render_postgres_logs_config("collector.cvc.local", 514)
    assert restarts(marker) == 1

    # The same again: the file is up to date, rsyslog is left alone.
    rsyslog.configure_postgres_logs_export(setup, "collector.cvc.local:514")
    assert restarts(marker) == 1

    # A new collector: rewritten and restarted.
    rsyslog.configure_postgres_logs_export(setup, "10.1.2.3:6514")
    assert 'target="10.1.2.3" port="6514"' in path.read_text()
    assert restarts(marker) == 2

    # Unset: a no-op, the existing file stays.
    before = path.read_text()
    rsyslog.configure_postgres_logs_export(setup, None)
    assert path.read_text() == before
    assert restarts(marker) == 2

    # Refused values leave everything as it was.
    with pytest.raises(RsyslogError, match=r"^logs_export_host: expected host:port"):
        rsyslog.configure_postgres_logs_export(setup, "collector.cvc.local")
    assert path.read_text() == before
    assert restarts(marker) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["postgres_logs.conf", "restarts"]


def test_reconfigure_uses_the_environment(tmp_path: Path) -> None:
    env = {"COMPUTE_CTL_RSYSLOG_DIR": str(tmp_path), "COMPUTE_CTL_RSYSLOG_RESTART": "true"}
    asyncio.run(rsyslog.reconfigure(spec(logs_export_host="c.tld:514"), env))
    assert 'target="c.tld" port="514"' in (tmp_path / "postgres_logs.conf").read_text()


def test_unset_host_does_not_touch_the_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    rsyslog.configure_postgres_logs_export(RsyslogSetup(missing, ("false",)), None)
    assert not missing.exists()


def test_write_and_restart_failures_are_errors(tmp_path: Path) -> None:
    missing = RsyslogSetup(tmp_path / "no-such-dir", ("true",))
    with pytest.raises(RsyslogError, match=r"^could not write .*postgres_logs.conf: No such file"):
        rsyslog.configure_postgres_logs_export(missing, "c.tld:514")

    failing = RsyslogSetup(tmp_path, ("sh", "-c", "echo 'rsyslog.service not found' >&2; exit 5"))
    with pytest.raises(RsyslogError) as info:
        rsyslog.configure_postgres_logs_export(failing, "c.tld:514")
    assert str(info.value) == (
        "COMPUTE_CTL_RSYSLOG_RESTART: the restart command exited with code 5: "
        "rsyslog.service not found"
    )

    absent = RsyslogSetup(tmp_path, ("no-such-restart-program-here",))
    (tmp_path / "postgres_logs.conf").unlink()
    with pytest.raises(RsyslogError, match=r"^COMPUTE_CTL_RSYSLOG_RESTART: could not run"):
        rsyslog.configure_postgres_logs_export(absent, "c.tld:514")


def fake_tools(directory: Path, pkill: str, pgrep: str) -> None:
    for name, body in (("pkill", pkill), ("pgrep", pgrep)):
        path = directory / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)


def test_default_restart_kills_and_waits_for_rsyslogd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upstream's restart, with stand-ins for pkill and pgrep: rsyslogd "comes back" on the
    third look."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    fake_tools(
        bindir,
        pkill=f'echo "pkill $*" >> {calls}',
        pgrep=(
            f'echo "pgrep $*" >> {calls}\n'
            f'n=$(/bin/grep -c pgrep {calls})\n[ "$n" -ge 3 ] && echo 4242\nexit 0'
        ),
    )
    monkeypatch.setenv("PATH", str(bindir))
    rsyslog.restart_rsyslog(RsyslogSetup(tmp_path, None))
    assert calls.read_text().splitlines() == [
        "pkill rsyslogd",
        "pgrep rsyslogd",
        "pgrep rsyslogd",
        "pgrep rsyslogd",
    ]


def test_default_restart_fails_when_rsyslogd_stays_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_tools(bindir, pkill="exit 1", pgrep="exit 1")
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setattr(rsyslog, "RSYSLOG_WAIT", 0.05)
    started = time.monotonic()
    with pytest.raises(RsyslogError, match=r"^rsyslogd is not running after waiting for"):
        rsyslog._wait_for_rsyslogd(max_wait=0.05)
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------------------------
# Garbage collection


def dir_size(prom: PromMetrics) -> float | None:
    return prom.registry.get_sample_value("compute_audit_log_dir_size")


def make_log(path: Path, size: int, age: float, now: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (now - age, now - age))
    return path


def test_gc_deletes_only_old_audit_logs(tmp_path: Path) -> None:
    now = time.time()
    log_dir = tmp_path / "log"
    old = make_log(log_dir / "audit-2026-01-01_000000.log", 10, 15 * 60 + 1, now)
    fresh = make_log(log_dir / "audit-2026-01-01_001000.log", 20, 15 * 60 - 1, now)
    nested_old = make_log(log_dir / "sub" / "audit.log", 30, 3600, now)
    other_old = make_log(log_dir / "postgresql.log", 40, 3600, now)
    not_log = make_log(log_dir / "audit.log.1", 50, 3600, now)
    also_not = make_log(log_dir / "xaudit.log", 60, 3600, now)

    deleted = rsyslog.gc_audit_logs(log_dir, now=now)

    assert sorted(deleted) == sorted([old, nested_old])
    assert not old.exists() and not nested_old.exists()
    for kept in (fresh, other_old, not_log, also_not):
        assert kept.exists()
    # Directly in the directory, regular files whose name ends in "log".
    (log_dir / "catalog").write_bytes(b"y" * 7)
    (log_dir / "link.log").symlink_to(other_old)
    assert rsyslog.audit_log_dir_size(log_dir) == 20 + 40 + 60 + 7


def test_gc_loop_sets_the_gauge(tmp_path: Path) -> None:
    now = time.time()
    log_dir = tmp_path / "log"
    old = make_log(log_dir / "audit-old.log", 1000, 3600, now)
    make_log(log_dir / "audit-new.log", 123, 0, now)
    prom = PromMetrics()
    assert b"\ncompute_audit_log_dir_size 0\n" in prom.render()

    async def one_pass() -> None:
        task = asyncio.create_task(
            rsyslog.run_audit_log_gc(log_dir, prom.audit_log_dir_size, interval=0.01)
        )
        await wait_until_async("the GC", lambda: not old.exists() and dir_size(prom) == 123, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(one_pass())
    assert b"\ncompute_audit_log_dir_size 123\n" in prom.render()


def test_gc_loop_without_the_directory(tmp_path: Path) -> None:
    prom = PromMetrics()
    prom.audit_log_dir_size.set(5)

    async def one_pass() -> None:
        task = asyncio.create_task(
            rsyslog.run_audit_log_gc(tmp_path / "missing", prom.audit_log_dir_size, interval=10)
        )
        await wait_until_async("the gauge reset", lambda: dir_size(prom) == 0, 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(one_pass())
