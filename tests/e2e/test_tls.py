"""TLS for Postgres (`tls_experimental` + `compute_ctl_config.tls`): the key and certificate are
copied into PGDATA before Postgres starts, clients can require TLS, and a renewed certificate
is picked up by a re-configure (the watcher interval is shortened through
`COMPUTE_CTL_TLS_WATCH_INTERVAL`)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute, SigningKey, ctl_config
from tests.support.tls_material import pair
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres

INSTALLED = "TLS key and certificate installed into"


def put_pair(compute: Compute, directory: Path, key: bytes, cert: bytes) -> None:
    """Write the pair the way a renewal would: each file replaced atomically, key first."""
    for name, data in (("tls.key", key), ("tls.crt", cert)):
        tmp = directory / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.chmod(0o644)  # Postgres would refuse this key file as it is: it must be copied
        compute.run_as.chown(tmp)
        tmp.replace(directory / name)


def connect(compute: Compute, **params: Any) -> bool:
    """Whether a TLS connection with `params` succeeds and really uses TLS."""
    try:
        with psycopg.connect(compute.connstr, connect_timeout=10, autocommit=True, **params) as c:
            row = c.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
            return row is not None and row[0] is True
    except psycopg.OperationalError:
        return False


def test_tls_start_and_renewal(
    compute: Compute, make_spec: SpecFactory, signing_key: SigningKey
) -> None:
    certs = compute.workdir / "certs"
    certs.mkdir()
    compute.run_as.chown(certs)
    key, cert = pair()
    put_pair(compute, certs, key, cert)
    config = {
        "spec": make_spec(features=["tls_experimental"]),
        "compute_ctl_config": {
            **ctl_config(signing_key),
            "tls": {"key_path": str(certs / "tls.key"), "cert_path": str(certs / "tls.crt")},
        },
    }
    path = compute.write("config.json", config)
    compute.token = signing_key.compute_token("compute-1")
    compute.start("-c", str(path), "-i", "compute-1", env={"COMPUTE_CTL_TLS_WATCH_INTERVAL": "0.2"})
    compute.wait_status("running")

    for name, data in (("server.key", key), ("server.crt", cert)):
        copied = compute.pgdata / name
        assert copied.read_bytes() == data
        assert stat.S_IMODE(copied.stat().st_mode) == 0o600
        assert copied.stat().st_uid == compute.run_as.uid
    assert connect(compute, sslmode="require"), compute.log()
    assert connect(compute, sslmode="verify-ca", sslrootcert=str(certs / "tls.crt"))
    # With TLS configured, one re-configure follows the first `running`.
    wait_until("the re-configure after start", lambda: compute.log().count(INSTALLED) >= 2)
    compute.wait_status("running")

    new_key, new_cert = pair()
    put_pair(compute, certs, new_key, new_cert)
    wait_until(
        "the renewed certificate in PGDATA",
        lambda: (compute.pgdata / "server.crt").read_bytes() == new_cert,
    )
    assert (compute.pgdata / "server.key").read_bytes() == new_key
    # The reload after the copy makes Postgres present the new certificate.
    wait_until(
        "Postgres presenting the renewed certificate",
        lambda: connect(compute, sslmode="verify-ca", sslrootcert=str(certs / "tls.crt")),
    )
    compute.wait_status("running")
    assert "TLS certificate" in compute.log() and "changed: re-configuring" in compute.log()
    assert compute.call("POST", "/terminate?mode=fast").status == 200
    assert compute.wait_exit() == 0, compute.log()


def test_missing_certificate_fails_the_start(
    compute: Compute, make_spec: SpecFactory, signing_key: SigningKey
) -> None:
    missing = compute.workdir / "missing.crt"
    config = {
        "spec": make_spec(features=["tls_experimental"]),
        "compute_ctl_config": {
            **ctl_config(signing_key),
            "tls": {"key_path": str(compute.workdir / "missing.key"), "cert_path": str(missing)},
        },
    }
    path = compute.write("config.json", config)
    compute.token = signing_key.compute_token("compute-1")
    compute.start("-c", str(path), "-i", "compute-1", env={"COMPUTE_CTL_TLS_WAIT_TIMEOUT": "1"})
    status = compute.wait_status("failed")
    assert "gave up waiting for the TLS certificate" in status["error"]
    assert str(missing) in status["error"]
    assert compute.wait_exit() == 1
