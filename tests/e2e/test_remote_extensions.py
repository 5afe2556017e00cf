"""Remote extensions on a real compute: a preload library downloaded from the gateway before
Postgres starts (and loaded by it), an extension installed on request through the internal
API and then created with SQL, and a start refused for a library the spec does not allow.

Postgres runs from a private copy of the installation (see tests/support/remote_ext.py) owned by the
server user, so that the downloads land in directories it may write and that are its own.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compute_dev.pgbin import server_user
from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute, http, shared_tempdir
from tests.support.remote_ext import (
    Gateway,
    PrivateInstall,
    private_install,
    running_gateway,
    tar_zst,
)

pytestmark = pytest.mark.postgres

PRELOAD = "remote_explain"
CONTROL = "comment = 'says hello'\ndefault_version = '1.0'\nrelocatable = true\n"
SQL = b"CREATE FUNCTION hello() RETURNS text LANGUAGE sql AS $$SELECT 'hello'$$;\n"


@pytest.fixture
def install() -> Iterator[PrivateInstall]:
    root = shared_tempdir("e2e-pg-install-")
    try:
        made = private_install(root / "tree")
        server_user().chown(root)
        yield made
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def gateway(install: PrivateInstall) -> Iterator[Gateway]:
    root = shared_tempdir("e2e-gateway-")
    try:
        with running_gateway(root, install.pg_major) as running:
            yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)


def remote_extensions(**fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "public_extensions": [PRELOAD, "hello"],
        "library_index": {PRELOAD: PRELOAD, "hello": "hello"},
        "extension_data": {
            PRELOAD: {"control_data": {}, "archive_path": ""},
            "hello": {"control_data": {"hello.control": CONTROL}, "archive_path": ""},
        },
    }
    document.update(fields)
    return document


def preload_spec(compute: Compute, make_spec: SpecFactory, **remote: Any) -> dict[str, Any]:
    spec = make_spec(remote_extensions=remote_extensions(**remote))
    spec["cluster"]["settings"].append(
        {"name": "shared_preload_libraries", "value": PRELOAD, "vartype": "string"}
    )
    return spec


def test_preload_library_and_on_demand_extension(
    compute: Compute, make_spec: SpecFactory, install: PrivateInstall, gateway: Gateway
) -> None:
    # A real loadable module under a name the installation does not have: auto_explain's.
    module = (install.pkglibdir / "auto_explain.so").resolve().read_bytes()
    gateway.put(PRELOAD, tar_zst({f"lib/{PRELOAD}.so": module}))
    gateway.put("hello", tar_zst({"share/extension/hello--1.0.sql": SQL}))
    compute.pg_bin = install.bindir
    path = compute.write("spec.json", preload_spec(compute, make_spec))
    compute.start("-S", str(path), "-r", gateway.url.rstrip("/"))
    compute.wait_status("running")

    # The library was downloaded before Postgres started, and Postgres loaded it.
    assert compute.sql("SHOW shared_preload_libraries") == PRELOAD
    assert compute.sql("SHOW auto_explain.log_min_duration") == "-1"
    metrics = compute.call("GET", "/metrics.json").json()
    size = gateway.path(PRELOAD).stat().st_size
    assert metrics["num_ext_downloaded"] == 1
    assert metrics["largest_ext_size"] == metrics["total_ext_download_size"] == size
    assert (install.extension_dir / "hello.control").read_text() == CONTROL
    assert not (install.extension_dir / "hello--1.0.sql").exists()

    # On demand, as the neon extension asks for it; then the extension can be created.
    answer = http("POST", f"{compute.internal_url}/extension_server/hello")
    assert (answer.status, answer.body) == (200, b"")
    compute.execute("CREATE EXTENSION hello")
    assert compute.sql("SELECT hello()") == "hello"
    answer = http("POST", f"{compute.internal_url}/extension_server/{PRELOAD}.so?is_library=true")
    assert (answer.status, answer.body) == (200, b"")
    assert len(gateway.requests) == 2  # each archive fetched once
    for name in (PRELOAD, "hello"):
        labels = f'filename="{name}.tar.zst",http_status="200 OK"'
        sample = f"compute_ctl_remote_ext_requests_total{{{labels}}}"
        assert compute.metric(sample) == 1.0
    assert Path(install.root / "download_extensions").is_dir()


def test_a_preload_library_the_spec_does_not_allow_fails_the_start(
    compute: Compute, make_spec: SpecFactory, install: PrivateInstall, gateway: Gateway
) -> None:
    compute.pg_bin = install.bindir
    spec = preload_spec(compute, make_spec, public_extensions=["hello"])
    path = compute.write("spec.json", spec)
    compute.start("-S", str(path), "-r", gateway.url)
    status = compute.wait_status("failed")
    assert status["error"] == f"extension {PRELOAD} is not found"
    assert gateway.requests == []
    # Control files are written before the libraries are looked at.
    assert (install.extension_dir / "hello.control").exists()
