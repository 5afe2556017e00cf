"""The built image, run: its entrypoint against the storage stand-ins on the host's network
reaches `running` over gRPC, answers SQL, reports healthy, and terminates with status 0.

`make image-test` builds the image (`make image`) and names it in COMPUTE_CTL_IMAGE; without
that variable the test is skipped. It runs with `buildah run --isolation chroot`, which needs
no daemon and shares the host's network, so the stand-ins on 127.0.0.1 are reachable and the
compute's ports are the host's.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from compute_ctl import __version__
from tests.support.harness import Storage, free_port, http, shared_tempdir
from tests.support.waiting import DEADLINE, wait_until

pytestmark = pytest.mark.postgres

IMAGE = os.environ.get("COMPUTE_CTL_IMAGE", "")


def buildah(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["buildah", *args], capture_output=True, text=True, check=check, timeout=DEADLINE
    )


@pytest.fixture
def container() -> Iterator[str]:
    if not IMAGE:
        pytest.skip("no image to run: `make image-test` builds one and names it")
    if shutil.which("buildah") is None:
        pytest.fail("buildah is missing: run scripts/install.sh image-tools")
    name = buildah("from", "--pull-never", IMAGE).stdout.strip()
    try:
        yield name
    finally:
        buildah("rm", name, check=False)


def image_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", IMAGE).stdout)[
        "Docker"
    ]["config"]
    return config


def test_the_image_runs_a_compute(container: str, storage: Storage) -> None:
    config = image_config()
    assert config["User"] == "postgres"
    assert config["Healthcheck"]["Test"] == ["CMD", "compute-ctl-healthcheck"]
    pg_port, http_port, internal_port = free_port(), free_port(), free_port()
    spec = {
        "format_version": 1.0,
        "suspend_timeout_seconds": -1,
        "cluster": {
            "roles": [],
            "databases": [],
            "settings": [
                {"name": "port", "value": str(pg_port), "vartype": "integer"},
                {"name": "listen_addresses", "value": "127.0.0.1", "vartype": "string"},
                {
                    "name": "unix_socket_directories",
                    "value": "/var/db/postgres",
                    "vartype": "string",
                },
            ],
        },
        "tenant_id": storage.tenant_id,
        "timeline_id": storage.timeline_id,
        "pageserver_connection_info": {
            "shard_count": 0,
            "shards": {
                "0000": {
                    "pageservers": [
                        {"id": 1, "libpq_url": storage.libpq_url, "grpc_url": storage.grpc_url}
                    ]
                }
            },
            "prefer_protocol": "grpc",
        },
        "safekeeper_connstrings": storage.safekeepers,
        "skip_pg_catalog_updates": True,
    }
    spec_dir = shared_tempdir("image-spec-")
    (spec_dir / "spec.json").write_text(json.dumps(spec))
    (spec_dir / "spec.json").chmod(0o644)
    connstr = f"postgresql://cloud_admin@127.0.0.1:{pg_port}/postgres"
    env = {
        "SPEC_PATH": "/etc/compute_ctl/spec.json",
        "CONNSTR": connstr,
        "EXTERNAL_HTTP_PORT": str(http_port),
        "INTERNAL_HTTP_PORT": str(internal_port),
    }
    argv = ["buildah", "run", "--isolation", "chroot"]
    argv += ["-v", f"{spec_dir}:/etc/compute_ctl:ro"]
    for name, value in env.items():
        argv += ["--env", f"{name}={value}"]
    log_path = spec_dir / "compute.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*argv, container, "--", *config["Entrypoint"]],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def log_text() -> str:
        return log_path.read_text(errors="replace")

    def status() -> str | None:
        if process.poll() is not None:
            raise AssertionError(f"the image's compute_ctl exited early:\n{log_text()}")
        try:
            answer = http("GET", f"http://127.0.0.1:{http_port}/status")
        except OSError:
            return None
        value: str = answer.json()["status"]
        return value

    try:
        wait_until("the compute running in the image", lambda: status() == "running")
        with psycopg.connect(connstr, connect_timeout=10, autocommit=True) as conn:
            row = conn.execute("SELECT current_setting('port'), 6 * 7").fetchone()
        assert row == (str(pg_port), 42)
        # The HEALTHCHECK's command, inside the container, with the image's environment.
        health = buildah(
            "run",
            "--isolation",
            "chroot",
            "--env",
            f"EXTERNAL_HTTP_PORT={http_port}",
            container,
            "--",
            "compute-ctl-healthcheck",
            check=False,
        )
        assert health.returncode == 0, health.stderr
        version = buildah("run", "--isolation", "chroot", container, "--", "compute_ctl", "-V")
        assert version.stdout == f"compute_ctl {__version__} (build tag latest)\n"

        answer = http("POST", f"http://127.0.0.1:{http_port}/terminate")
        assert answer.status == 200, answer
        assert process.wait(DEADLINE) == 0, log_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(spec_dir, ignore_errors=True)
    # Nothing is left listening on the compute's ports: Postgres was stopped too.
    for port in (pg_port, http_port, internal_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
