"""pgbouncer tuning against a real pgbouncer in front of a real Postgres, and local_proxy's
configuration and termination against a real process holding its pid file locked.

What compute_ctl did is read back from the programs themselves: pgbouncer's `SHOW CONFIG`
after the RELOAD, the signals the lock holder recorded. Waits are on conditions with deadlines.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from compute_ctl.sidecars import SidecarLocations, Sidecars
from compute_ctl.sidecars.local_proxy import configure_local_proxy
from compute_ctl.sidecars.pgbouncer import PgbouncerError, tune_pgbouncer
from compute_ctl.spec.models import ComputeSpec, LocalProxySpec, TlsConfig
from compute_dev.pgbin import server_user
from tests.support.pgserver import PgServer, start_server
from tests.support.sidecar_standins import (
    PASSWORD,
    LockHolder,
    Pgbouncer,
    pgbouncer_binary,
    start_lock_holder,
    start_pgbouncer,
)
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(pgbouncer_binary() is None, reason="pgbouncer is not installed"),
]

DEADLINE = 30.0


@pytest.fixture(scope="module")
def server() -> Iterator[PgServer]:
    running = start_server()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="compute-ctl-sidecars-"))
    server_user().chown(path)
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def bouncer(workdir: Path, server: PgServer) -> Iterator[Pgbouncer]:
    running = start_pgbouncer(workdir, server.port)
    try:
        yield running
    finally:
        running.stop()


def locations_for(
    workdir: Path, bouncer: Pgbouncer | None, password: str | None = PASSWORD
) -> SidecarLocations:
    proxy_dir = workdir / "local_proxy"
    proxy_dir.mkdir(exist_ok=True)
    server_user().chown(proxy_dir)
    return SidecarLocations(
        pgbouncer_ini=bouncer.ini if bouncer else workdir / "pgbouncer.ini",
        pgbouncer_pid_file=bouncer.pid_file if bouncer else workdir / "pgbouncer.pid",
        pgbouncer_admin=bouncer.admin_conninfo if bouncer else "host=127.0.0.1 port=1",
        local_proxy_dir=proxy_dir,
        pgbouncer_password=password,
    )


# --------------------------------------------------------------------------------------------
# pgbouncer


def test_settings_land_in_the_ini_and_in_pgbouncer(
    bouncer: Pgbouncer, workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = bouncer.ini.read_text()
    owner = bouncer.ini.stat()
    settings = {"default_pool_size": "7", "server_idle_timeout": "42", "pool_mode": "transaction"}
    with caplog.at_level(logging.DEBUG):
        asyncio.run(tune_pgbouncer(settings, None, locations_for(workdir, bouncer)))
    after = bouncer.ini.read_text()
    assert "default_pool_size = 7\n" in after
    assert "default_pool_size = 20" not in after
    assert "server_idle_timeout = 42\npool_mode = transaction\n" in after
    # everything else is kept: comments, other sections, the file's owner and mode
    assert after.replace(
        "default_pool_size = 7\nserver_idle_timeout = 42\npool_mode = transaction\n", ""
    ) == before.replace("default_pool_size = 20\n", "")
    assert (bouncer.ini.stat().st_uid, bouncer.ini.stat().st_mode) == (owner.st_uid, owner.st_mode)
    config = bouncer.show_config()
    assert (config["default_pool_size"], config["server_idle_timeout"], config["pool_mode"]) == (
        "7",
        "42",
        "transaction",
    )
    assert "RELOAD command issued" in bouncer.log()
    # pgbouncer still pools for the Postgres behind it
    conninfo = f"host=127.0.0.1 port={bouncer.port} dbname=postgres user=postgres"
    with psycopg.connect(conninfo, password=PASSWORD, connect_timeout=10) as conn:
        assert conn.execute("select 40 + 2").fetchone() == (42,)
    assert PASSWORD not in caplog.text


def test_a_key_pgbouncer_does_not_know_is_refused_whole(bouncer: Pgbouncer, workdir: Path) -> None:
    before = bouncer.ini.read_text()
    settings = {"default_pool_size": "9", "no_such_setting": "1"}
    with pytest.raises(
        PgbouncerError, match=r"pgbouncer_settings\.no_such_setting: pgbouncer has no such setting"
    ):
        asyncio.run(tune_pgbouncer(settings, None, locations_for(workdir, bouncer)))
    assert bouncer.ini.read_text() == before
    assert bouncer.show_config()["default_pool_size"] == "20"


def test_an_injected_line_never_reaches_the_ini(bouncer: Pgbouncer, workdir: Path) -> None:
    before = bouncer.ini.read_text()
    with pytest.raises(PgbouncerError, match=r"pgbouncer_settings\.pool_mode: the value contains"):
        asyncio.run(
            tune_pgbouncer(
                {"pool_mode": "session\nadmin_users = mallory"},
                None,
                locations_for(workdir, bouncer),
            )
        )
    assert bouncer.ini.read_text() == before


def test_wrong_password_writes_nothing_and_is_never_logged(
    bouncer: Pgbouncer, workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = bouncer.ini.read_text()
    wrong = "wrong-pw-1234"
    with caplog.at_level(logging.DEBUG), pytest.raises(PgbouncerError) as raised:
        asyncio.run(
            tune_pgbouncer(
                {"default_pool_size": "5"},
                None,
                locations_for(workdir, bouncer, password=wrong),
                attempts=2,
                retry_delay=0,
            )
        )
    text = str(raised.value)
    assert "after 2 attempts" in text
    assert "authentication failed" in text
    assert wrong not in text
    assert wrong not in caplog.text
    assert bouncer.ini.read_text() == before


def test_unreachable_console_tries_four_times_and_writes_nothing(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ini = workdir / "pgbouncer.ini"
    ini.write_text("[pgbouncer]\ndefault_pool_size = 1\n")
    with caplog.at_level(logging.ERROR), pytest.raises(PgbouncerError, match="after 4 attempts"):
        asyncio.run(
            tune_pgbouncer(
                {"default_pool_size": "5"}, None, locations_for(workdir, None), retry_delay=0
            )
        )
    assert ini.read_text() == "[pgbouncer]\ndefault_pool_size = 1\n"
    retries = [r for r in caplog.records if "could not connect" in r.getMessage()]
    assert len(retries) == 3


def test_tls_settings_are_added_once_the_key_exists(bouncer: Pgbouncer, workdir: Path) -> None:
    from tests.support.tls_material import pair

    key_pem, cert_pem = pair()
    key, cert = workdir / "tls.key", workdir / "tls.crt"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    server_user().chown(key)
    server_user().chown(cert)
    tls = TlsConfig(key_path=str(key), cert_path=str(cert))
    asyncio.run(tune_pgbouncer({}, tls, locations_for(workdir, bouncer)))
    config = bouncer.show_config()
    assert config["client_tls_key_file"] == str(key)
    assert config["client_tls_cert_file"] == str(cert)
    assert config["client_tls_sslmode"] == "allow"


def test_background_tuning_logs_the_error(
    bouncer: Pgbouncer, workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = ComputeSpec.model_validate(
        {
            "format_version": 1.0,
            "suspend_timeout_seconds": -1,
            "cluster": {"roles": [], "databases": []},
            "pgbouncer_settings": {"bogus_key": "1"},
        }
    )

    async def run() -> None:
        tasks: list[asyncio.Task[None]] = []
        Sidecars(locations_for(workdir, bouncer)).configure_in_background(
            spec, None, lambda coro, name: tasks.append(asyncio.ensure_future(coro))
        )
        await asyncio.gather(*tasks)

    with caplog.at_level(logging.INFO):
        asyncio.run(run())
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "error while tuning pgbouncer: pgbouncer_settings.bogus_key: "
        "pgbouncer has no such setting (not listed by SHOW CONFIG)"
    ]


def test_termination_kills_pgbouncer_unless_dev(bouncer: Pgbouncer, workdir: Path) -> None:
    sidecars = Sidecars(locations_for(workdir, bouncer))
    sidecars.stop(dev=True)
    assert bouncer.show_config()  # still answering
    sidecars.stop(dev=False)
    assert bouncer.process.wait(DEADLINE) == -9


def test_a_stale_pgbouncer_pid_is_not_killed(workdir: Path) -> None:
    other = subprocess.Popen(["sleep", "300"])
    try:
        (workdir / "pgbouncer.pid").write_text(f"{other.pid}\n")
        Sidecars(locations_for(workdir, None)).stop(dev=False)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


# --------------------------------------------------------------------------------------------
# local_proxy


@pytest.fixture
def holder(workdir: Path) -> Iterator[LockHolder]:
    locations = locations_for(workdir, None)
    running = start_lock_holder(locations.local_proxy_pid_file, workdir / "signals.log")
    try:
        yield running
    finally:
        running.stop()


PROXY = LocalProxySpec.model_validate(
    {"jwks": [{"id": "a", "role_names": ["r"], "jwks_url": "https://a", "provider_name": "p"}]}
)


def test_local_proxy_gets_its_config_and_a_sighup(holder: LockHolder, workdir: Path) -> None:
    locations = locations_for(workdir, None)
    tls = TlsConfig(key_path="/k", cert_path="/c")
    configure_local_proxy(PROXY, tls, locations)
    assert locations.local_proxy_config.read_text().startswith('{\n  "jwks": [\n')
    assert '"tls": {\n    "key_path": "/k",\n    "cert_path": "/c"\n  }\n}' in (
        locations.local_proxy_config.read_text()
    )
    wait_until("the SIGHUP", lambda: holder.signals() == ["SIGHUP"])
    configure_local_proxy(PROXY, None, locations)
    wait_until("the second SIGHUP", lambda: holder.signals() == ["SIGHUP", "SIGHUP"])
    assert "tls" not in locations.local_proxy_config.read_text()


def test_termination_stops_local_proxy_only_while_locked(holder: LockHolder, workdir: Path) -> None:
    locations = locations_for(workdir, None)
    Sidecars(locations).stop(dev=True)
    Sidecars(locations).stop(dev=False)
    assert holder.process.wait(DEADLINE) == 0
    assert holder.signals() == ["SIGTERM"]


def test_an_unlocked_pid_file_is_not_signalled(workdir: Path) -> None:
    locations = locations_for(workdir, None)
    other = subprocess.Popen(["sleep", "300"])
    try:
        locations.local_proxy_pid_file.write_text(str(other.pid))
        configure_local_proxy(PROXY, None, locations)
        Sidecars(locations).stop(dev=False)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
    assert locations.local_proxy_config.exists()


def test_a_missing_local_proxy_directory_is_an_error(workdir: Path) -> None:
    locations = SidecarLocations(
        workdir / "i", workdir / "p", "", workdir / "nowhere", pgbouncer_password=None
    )
    with pytest.raises(Exception, match=r"could not write .*nowhere/config.json: No such file"):
        configure_local_proxy(PROXY, None, locations)
