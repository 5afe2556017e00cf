"""pgbouncer.ini rewriting, setting checks, where the files are, local_proxy's config.json and
the pid-file rules, without any real pgbouncer (tests/integration/test_sidecars.py has one)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path

import pytest

from compute_ctl.sidecars import SidecarLocations, Sidecars
from compute_ctl.sidecars.local_proxy import render_config
from compute_ctl.sidecars.pgbouncer import PgbouncerError, check_settings, update_ini, with_tls
from compute_ctl.sidecars.pidfile import read_pid_file
from compute_ctl.spec.models import LocalProxySpec, TlsConfig

INI = """\
; pgbouncer for this compute
[databases]
* = host=127.0.0.1 port=5432
default_pool_size = 99

[pgbouncer]
listen_port = 6432
# keep the pool small
default_pool_size = 20
pool_mode=session

; users
[users]
alice = pool_mode=session
"""


def test_update_ini_replaces_and_adds_keeping_everything_else() -> None:
    out = update_ini(INI, {"default_pool_size": "7", "max_client_conn": "500"})
    assert out == INI.replace("default_pool_size = 20", "default_pool_size = 7").replace(
        "pool_mode=session\n", "pool_mode=session\nmax_client_conn = 500\n", 1
    )
    # the [databases] line of the same name and other sections are untouched
    assert "default_pool_size = 99" in out
    assert out.endswith("[users]\nalice = pool_mode=session\n")


def test_update_ini_rewrites_every_occurrence_and_crlf() -> None:
    text = "[pgbouncer]\r\npool_mode = session\r\n[x]\r\n[PgBouncer]\r\npool_mode = statement"
    out = update_ini(text, {"pool_mode": "transaction", "verbose": "1"})
    assert out == (
        "[pgbouncer]\r\npool_mode = transaction\r\nverbose = 1\r\n[x]\r\n"
        "[PgBouncer]\r\npool_mode = transaction\r\n"
    )


def test_update_ini_empty_section_and_missing_newline() -> None:
    assert update_ini("[pgbouncer]", {"a_b": "1"}) == "[pgbouncer]\na_b = 1\n"
    assert update_ini("[pgbouncer]\n\n", {"x": ""}) == "[pgbouncer]\nx = \n\n"


def test_update_ini_without_section_is_an_error() -> None:
    with pytest.raises(PgbouncerError, match=r"no \[pgbouncer\] section"):
        update_ini("[databases]\n", {"x": "1"})


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"Pool": "1"}, "'Pool' is not a pgbouncer setting name"),
        ({"a\nb": "1"}, "is not a pgbouncer setting name"),
        ({"pool_mode": "session\nadmin_users = evil"}, "pgbouncer_settings.pool_mode: the value"),
        ({"pool_mode": "a\x00"}, "control character"),
        ({"pool_mode": " session"}, "starts or ends with a space"),
    ],
)
def test_check_settings_refuses_what_the_ini_cannot_hold(
    settings: dict[str, str], problem: str
) -> None:
    with pytest.raises(PgbouncerError, match=problem.replace("[", r"\[")):
        check_settings(settings)


def test_check_settings_against_known_keys() -> None:
    check_settings({"pool_mode": "x y", "server_check_query": "select 1; -- #"})
    with pytest.raises(PgbouncerError, match=r"pgbouncer_settings\.nope: pgbouncer has no such"):
        check_settings({"pool_mode": "x", "nope": "1"}, frozenset({"pool_mode"}))


def test_with_tls_adds_client_tls_settings() -> None:
    tls = TlsConfig(key_path="/k.pem", cert_path="/c.pem")
    assert with_tls({"a": "1"}, None) == {"a": "1"}
    assert with_tls({"a": "1"}, tls) == {
        "a": "1",
        "client_tls_cert_file": "/c.pem",
        "client_tls_key_file": "/k.pem",
        "client_tls_sslmode": "allow",
    }


def test_locations_defaults_and_overrides() -> None:
    pod = SidecarLocations.from_environ({"PGBOUNCER_PASSWORD": "pw"}, vm=False)
    assert pod.pgbouncer_ini == Path("/var/db/postgres/pgbouncer/pgbouncer.ini")
    assert pod.pgbouncer_pid_file == Path("/tmp/pgbouncer.pid")
    assert pod.pgbouncer_admin == (
        "host=localhost port=6432 dbname=pgbouncer user=postgres sslmode=disable"
    )
    assert pod.local_proxy_config == Path("/etc/local_proxy/config.json")
    assert pod.local_proxy_pid_file == Path("/etc/local_proxy/pid")
    assert pod.pgbouncer_password == "pw"
    assert "pw" not in repr(pod)
    vm = SidecarLocations.from_environ({"PGBOUNCER_PASSWORD": "pw"}, vm=True)
    assert vm.pgbouncer_ini == Path("/etc/pgbouncer.ini")
    assert vm.pgbouncer_admin == "host=/tmp port=6432 dbname=pgbouncer user=pgbouncer"
    assert vm.pgbouncer_password is None
    moved = SidecarLocations.from_environ(
        {
            "COMPUTE_CTL_PGBOUNCER_INI": "/x/pgb.ini",
            "COMPUTE_CTL_PGBOUNCER_PID_FILE": "/x/pgb.pid",
            "COMPUTE_CTL_PGBOUNCER_ADMIN": "host=/x port=1",
            "COMPUTE_CTL_LOCAL_PROXY_DIR": "/x/lp",
        },
        vm=False,
    )
    assert moved.pgbouncer_ini == Path("/x/pgb.ini")
    assert moved.pgbouncer_pid_file == Path("/x/pgb.pid")
    assert moved.pgbouncer_admin == "host=/x port=1"
    assert moved.local_proxy_pid_file == Path("/x/lp/pid")


def test_local_proxy_config_is_serdes_pretty_json_with_tls_injected() -> None:
    proxy = LocalProxySpec.model_validate(
        {
            "jwks": [
                {
                    "id": "1",
                    "role_names": ["r"],
                    "jwks_url": "https://x/ü",
                    "provider_name": "p",
                }
            ],
            "tls": {"key_path": "/old.key", "cert_path": "/old.crt"},
        }
    )
    without = render_config(proxy, None).decode()
    assert without == (
        '{\n  "jwks": [\n    {\n      "id": "1",\n      "role_names": [\n        "r"\n'
        '      ],\n      "jwks_url": "https://x/ü",\n      "provider_name": "p",\n'
        '      "jwt_audience": null\n    }\n  ]\n}'
    )
    tls = TlsConfig(key_path="/k", cert_path="/c")
    assert json.loads(render_config(proxy, tls))["tls"] == {"key_path": "/k", "cert_path": "/c"}


# --------------------------------------------------------------------------------------------
# Pid files: what is never signalled


@pytest.mark.parametrize(
    "content", [b"0", b"1", b"-5", b"abc", b"", b"12 34", b"99999999", b"0x10", b"\xff\n"]
)
def test_garbage_pid_files_are_never_signalled(
    content: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kills: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: kills.append((pid, sig)))
    pgb = tmp_path / "pgbouncer.pid"
    pgb.write_bytes(content)
    (tmp_path / "lp").mkdir()
    (tmp_path / "lp" / "pid").write_bytes(content)
    locations = SidecarLocations(pgb, pgb, "", tmp_path / "lp")
    # local_proxy's file must look locked for its content to matter
    fd = os.open(tmp_path / "lp" / "pid", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with caplog.at_level(logging.INFO, logger="compute_ctl.sidecars"):
            Sidecars(locations).stop(dev=False)
    finally:
        os.close(fd)
    assert kills == []
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert all("not signalled" in line for line in lines), lines


def test_own_pid_is_never_signalled(tmp_path: Path) -> None:
    path = tmp_path / "pid"
    path.write_text(f"{os.getpid()}\n")
    read = read_pid_file(path)
    assert read.pid is None
    assert read.problem == "holds our own process id"


def test_lock_is_seen_and_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "pid"
    path.write_text("4242\n")
    assert read_pid_file(path) == read_pid_file(path)
    assert read_pid_file(path).locked is False
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        read = read_pid_file(path)
    finally:
        os.close(fd)
    assert (read.locked, read.pid) == (True, 4242)
    # our test did not leave the file locked
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


def test_missing_files_and_dev_mode_are_one_line_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    kills: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: kills.append((pid, sig)))
    locations = SidecarLocations(tmp_path / "a", tmp_path / "b", "", tmp_path / "c")
    with caplog.at_level(logging.INFO, logger="compute_ctl.sidecars"):
        Sidecars(locations).stop(dev=False)
        Sidecars(locations).stop(dev=True)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "pgbouncer pid file" in messages[0]
    assert "not found" in messages[0]
    assert "local_proxy pid file" in messages[1]
    assert messages[2] == "not stopping pgbouncer and local_proxy: dev mode"
    assert kills == []
