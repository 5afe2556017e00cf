"""compute_ctl with a real pgbouncer in front of its Postgres and a real process standing in
for local_proxy: settings reach pgbouncer at start and on /configure, local_proxy gets its file
and a SIGHUP, and termination stops both, except on a signal in `--dev` mode.

The sidecars' paths are moved into the compute's directory with the COMPUTE_CTL_* variables,
so nothing here touches `/etc` or `/tmp/pgbouncer.pid`.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute, http
from tests.support.sidecar_standins import (
    PASSWORD,
    LockHolder,
    Pgbouncer,
    pgbouncer_binary,
    start_lock_holder,
    start_pgbouncer,
)
from tests.support.waiting import DEADLINE, wait_until

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(pgbouncer_binary() is None, reason="pgbouncer is not installed"),
]

LOCAL_PROXY_CONFIG = {
    "jwks": [
        {
            "id": "provider-1",
            "role_names": ["authenticated"],
            "jwks_url": "https://auth.example/.well-known/jwks.json",
            "provider_name": "example",
            "jwt_audience": "app",
        }
    ]
}


@dataclass
class Sidecars:
    bouncer: Pgbouncer
    proxy: LockHolder
    proxy_dir: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "COMPUTE_CTL_PGBOUNCER_INI": str(self.bouncer.ini),
            "COMPUTE_CTL_PGBOUNCER_PID_FILE": str(self.bouncer.pid_file),
            "COMPUTE_CTL_PGBOUNCER_ADMIN": self.bouncer.admin_conninfo,
            "COMPUTE_CTL_LOCAL_PROXY_DIR": str(self.proxy_dir),
            "PGBOUNCER_PASSWORD": PASSWORD,
        }

    def pool_size_is(self, value: str) -> bool:
        return self.bouncer.show_config()["default_pool_size"] == value


@pytest.fixture
def sidecars(compute: Compute) -> Iterator[Sidecars]:
    root = compute.workdir / "pgbouncer"
    root.mkdir()
    compute.run_as.chown(root)
    proxy_dir = compute.workdir / "local_proxy"
    proxy_dir.mkdir()
    compute.run_as.chown(proxy_dir)
    bouncer = start_pgbouncer(root, compute.pg_port, compute.run_as)
    try:
        proxy = start_lock_holder(proxy_dir / "pid", compute.workdir / "signals.log")
        try:
            yield Sidecars(bouncer, proxy, proxy_dir)
        finally:
            proxy.stop()
    finally:
        bouncer.stop()


def spec_with_sidecars(make_spec: SpecFactory, pool_size: str, **fields: Any) -> dict[str, Any]:
    return make_spec(
        pgbouncer_settings={"default_pool_size": pool_size, "pool_mode": "transaction"},
        local_proxy_config=LOCAL_PROXY_CONFIG,
        **fields,
    )


def test_sidecars_follow_the_compute_and_stop_on_terminate(
    compute: Compute, make_spec: SpecFactory, sidecars: Sidecars
) -> None:
    spec_path = compute.write("spec.json", spec_with_sidecars(make_spec, "13"))
    compute.start("-S", str(spec_path), env=sidecars.env)
    assert compute.wait_status("running", "failed")["status"] == "running", compute.log()

    wait_until("pgbouncer's new pool size", lambda: sidecars.pool_size_is("13"))
    assert sidecars.bouncer.show_config()["pool_mode"] == "transaction"
    assert "default_pool_size = 13\n" in sidecars.bouncer.ini.read_text()
    wait_until("local_proxy's SIGHUP", lambda: "SIGHUP" in sidecars.proxy.signals())
    written = json.loads((sidecars.proxy_dir / "config.json").read_text())
    assert written == LOCAL_PROXY_CONFIG  # no tls without tls_experimental
    # pgbouncer pools for the compute's Postgres
    conninfo = f"host=127.0.0.1 port={sidecars.bouncer.port} dbname=postgres user=postgres"
    with psycopg.connect(conninfo, password=PASSWORD, connect_timeout=10) as conn:
        assert conn.execute("select 40 + 2").fetchone() == (42,)

    # A new spec through /configure re-tunes pgbouncer.
    request = {
        "spec": spec_with_sidecars(make_spec, "17"),
        "compute_ctl_config": {"jwks": {"keys": []}},
    }
    answer = http("POST", f"{compute.url}/configure", request)
    assert answer.status == 200, compute.log()
    wait_until("pgbouncer's re-configured pool size", lambda: sidecars.pool_size_is("17"))

    answer = compute.call("POST", "/terminate")
    assert answer.status == 200, answer
    assert compute.wait_exit() == 0, compute.log()
    assert sidecars.bouncer.process.wait(DEADLINE) == -signal.SIGKILL
    assert sidecars.proxy.process.wait(DEADLINE) == 0
    assert sidecars.proxy.signals()[-1] == "SIGTERM"
    log = compute.log()
    assert "sent SIGKILL to pgbouncer" in log
    assert "sent SIGTERM to local_proxy" in log
    assert PASSWORD not in log


def test_a_signal_in_dev_mode_leaves_the_sidecars_running(
    compute: Compute, make_spec: SpecFactory, sidecars: Sidecars
) -> None:
    spec_path = compute.write("spec.json", spec_with_sidecars(make_spec, "11"))
    compute.start("-S", str(spec_path), env=sidecars.env)  # the harness passes --dev
    assert compute.wait_status("running", "failed")["status"] == "running", compute.log()
    wait_until("pgbouncer's new pool size", lambda: sidecars.pool_size_is("11"))
    assert compute.process is not None
    compute.process.send_signal(signal.SIGTERM)
    assert compute.wait_exit() == 1
    # compute_ctl has exited: whatever it signalled has been signalled
    assert sidecars.pool_size_is("11")
    assert sidecars.bouncer.alive()
    assert sidecars.proxy.process.poll() is None
    assert "SIGTERM" not in sidecars.proxy.signals()
    assert "not stopping pgbouncer and local_proxy: dev mode" in compute.log()


def test_local_proxy_failure_at_first_configuration_fails_the_start(
    compute: Compute, make_spec: SpecFactory
) -> None:
    spec = make_spec(local_proxy_config=LOCAL_PROXY_CONFIG, skip_pg_catalog_updates=False)
    spec_path = compute.write("spec.json", spec)
    missing = compute.workdir / "no-such-dir"
    compute.start("-S", str(spec_path), env={"COMPUTE_CTL_LOCAL_PROXY_DIR": str(missing)})
    status = compute.wait_status("running", "failed")
    assert status["status"] == "failed", compute.log()
    assert f"could not write {missing}/config.json" in status["error"]
