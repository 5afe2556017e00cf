"""Fixtures for whole-process tests: one storage stand-in process per session, and a fresh
compute directory (owned by the server user) per test."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.endpoint_storage import EndpointStorage, running_endpoint_storage
from tests.support.harness import (
    CONTROL_PLANE_TOKEN,
    Compute,
    ControlPlane,
    SigningKey,
    Storage,
    free_port,
    shared_tempdir,
    start_control_plane,
    start_storage,
    stop_process,
)


@pytest.fixture(scope="session")
def storage() -> Iterator[Storage]:
    root = shared_tempdir("e2e-storage-")
    running = start_storage(root)
    try:
        yield running
    finally:
        stop_process(running.process)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def compute() -> Iterator[Compute]:
    workdir = shared_tempdir("e2e-compute-")
    ports: list[int] = []
    while len(ports) < 3:  # free_port may hand out the same port twice in a row
        if (port := free_port()) not in ports:
            ports.append(port)
    node = Compute(workdir, pg_port=ports[0], http_port=ports[1], internal_port=ports[2])
    try:
        yield node
    finally:
        node.stop()
        pid_file = node.pgdata / "postmaster.pid"
        if pid_file.exists():  # never leave a server behind, whatever the test did
            try:
                pid = int(pid_file.read_text().split("\n", 1)[0])
                os.kill(pid, signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def control_plane() -> Iterator[ControlPlane]:
    """A control-plane stand-in serving specs from a fresh directory; it requires
    `CONTROL_PLANE_TOKEN` as the bearer token."""
    root = shared_tempdir("e2e-cplane-")
    spec_dir = root / "specs"
    spec_dir.mkdir()
    running = start_control_plane(spec_dir, token=CONTROL_PLANE_TOKEN)
    try:
        yield running
    finally:
        stop_process(running.process)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey()


SpecFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def make_spec(storage: Storage, compute: Compute) -> SpecFactory:
    """A primary spec for the stand-ins; `storage_form` picks how storage is described."""

    def build(storage_form: str = "libpq", **fields: Any) -> dict[str, Any]:
        settings = compute.settings()
        spec: dict[str, Any] = {
            "format_version": 1.0,
            "suspend_timeout_seconds": -1,
            "cluster": {"roles": [], "databases": [], "settings": settings},
            "skip_pg_catalog_updates": True,
        }
        shard = {"libpq_url": storage.libpq_url, "grpc_url": storage.grpc_url}
        if storage_form in ("libpq", "grpc"):
            spec["pageserver_connection_info"] = {
                "shard_count": 0,
                "shards": {"0000": {"pageservers": [{"id": 1, **shard}]}},
                "prefer_protocol": storage_form,
            }
        if storage_form == "legacy":
            spec["pageserver_connstring"] = storage.libpq_url
        if storage_form == "guc":
            settings += [
                {
                    "name": "neon.pageserver_connstring",
                    "value": storage.libpq_url,
                    "vartype": "string",
                },
                {
                    "name": "neon.safekeepers",
                    "value": ",".join(storage.safekeepers),
                    "vartype": "string",
                },
                {"name": "neon.tenant_id", "value": storage.tenant_id, "vartype": "string"},
                {"name": "neon.timeline_id", "value": storage.timeline_id, "vartype": "string"},
            ]
        else:
            spec["tenant_id"] = storage.tenant_id
            spec["timeline_id"] = storage.timeline_id
            spec["safekeeper_connstrings"] = storage.safekeepers
        spec.update(fields)
        return spec

    return build


@pytest.fixture
def endpoint_storage() -> Iterator[EndpointStorage]:
    """An endpoint-storage stand-in (in this process) requiring its own bearer token."""
    with running_endpoint_storage() as running:
        yield running
