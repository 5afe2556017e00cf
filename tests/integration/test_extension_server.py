"""`POST /extension_server/{filename}` and the start-up step, over real sockets: the internal
app of a real ComputeNode served by uvicorn, the extension-gateway stand-in serving real
tar.zst archives, and a private PostgreSQL installation whose `pg_config` names writable
share and library directories. No Postgres server is started."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from compute_ctl.cli import parse_params
from compute_ctl.compute.node import ComputeNode
from compute_ctl.errors import ComputeError
from compute_ctl.http.app import internal_app
from compute_ctl.http.server import bind_socket, make_server
from compute_ctl.spec.load import load_compute_spec
from compute_ctl.spec.resolve import resolve
from compute_ctl.state import ComputeMetrics
from tests.support.harness import HttpAnswer, http
from tests.support.remote_ext import (
    Gateway,
    PrivateInstall,
    private_install,
    running_gateway,
    tar_zst,
    tree_files,
)
from tests.support.specs import storage_spec

pytestmark = pytest.mark.postgres

CONTROL = "comment = 'says hello'\ndefault_version = '1.0'\nrelocatable = true\n"
SQL = b"CREATE FUNCTION hello() RETURNS text LANGUAGE sql AS $$SELECT 'hello'$$;\n"


def remote_extensions(**fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "public_extensions": ["hello", "broken"],
        "custom_extensions": ["libbed"],
        "library_index": {"hello": "hello", "libhello": "hello", "libbed": "libbed"},
        "extension_data": {
            name: {"control_data": {f"{name}.control": CONTROL}, "archive_path": ""}
            for name in ("hello", "libbed", "broken", "private")
        },
    }
    document.update(fields)
    return document


def hello_archive(frames: int = 1) -> bytes:
    return tar_zst(
        {
            "share/extension/hello--1.0.sql": SQL,
            "lib/libhello.so": b"\x7fELF not really",
            "lib/hello/x.bc": b"bc",
            "lib/bitcode/hello/x.bc": b"bc",  # `bitcode` exists: not moved, as upstream
        },
        frames=frames,
    )


@pytest.fixture
def install(tmp_path: Path) -> PrivateInstall:
    return private_install(tmp_path / "pg")


@pytest.fixture
def gateway(tmp_path: Path, install: PrivateInstall) -> Iterator[Gateway]:
    with running_gateway(tmp_path / "gateway", install.pg_major) as running:
        yield running


def make_node(
    tmp_path: Path,
    install: PrivateInstall,
    base_url: str | None,
    spec: dict[str, Any] | None,
) -> ComputeNode:
    argv = ["-D", str(tmp_path / "pgdata"), "-C", "postgresql://cloud_admin@127.0.0.1:1/postgres"]
    argv += ["-S", str(tmp_path / "unused.json"), "-b", str(install.bindir / "postgres")]
    if base_url is not None:
        argv += ["-r", base_url]
    pspec = resolve(load_compute_spec(json.dumps(spec))) if spec is not None else None
    return ComputeNode(parse_params(argv), pspec=pspec, ctl_config=None)


@asynccontextmanager
async def serving(node: ComputeNode) -> AsyncIterator[str]:
    """The node's internal app on a real socket; yields its base URL."""
    sock = bind_socket(0, "127.0.0.1")
    port = sock.getsockname()[1]
    server = make_server(internal_app(node))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "the server stopped"
            await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def post(url: str) -> HttpAnswer:
    return await asyncio.to_thread(http, "POST", url)


def counter(node: ComputeNode, status: str, filename: str) -> float:
    value = node.prom.registry.get_sample_value(
        "compute_ctl_remote_ext_requests_total", {"http_status": status, "filename": filename}
    )
    return value or 0.0


def spec_with(**remote: Any) -> dict[str, Any]:
    return storage_spec(remote_extensions=remote_extensions(**remote))


def test_refusals_before_any_download(tmp_path: Path, install: PrivateInstall) -> None:
    async def scenario() -> None:
        unconfigured = make_node(tmp_path, install, None, spec_with())
        async with serving(unconfigured) as url:
            answer = await post(f"{url}/extension_server/hello")
            assert (answer.status, answer.json()) == (
                412,
                {"error": "remote storage is not configured"},
            )
        gateway_url = "http://127.0.0.1:9/"
        empty = make_node(tmp_path, install, gateway_url, None)
        async with serving(empty) as url:
            answer = await post(f"{url}/extension_server/hello")
            assert (answer.status, answer.json()) == (
                412,
                {"error": "invalid compute status: empty"},
            )
        without = make_node(tmp_path, install, gateway_url, storage_spec())
        async with serving(without) as url:
            answer = await post(f"{url}/extension_server/hello")
            assert (answer.status, answer.json()) == (
                409,
                {"error": "information about remote extensions is unavailable"},
            )
        node = make_node(tmp_path, install, gateway_url, spec_with())
        async with serving(node) as url:
            for path, message in [
                ("private", "extension private is not found"),
                ("nothing", "extension nothing is not found"),
                ("nothing.so.2?is_library=true", "library nothing is not found"),
            ]:
                answer = await post(f"{url}/extension_server/{path}")
                assert (answer.status, answer.json()) == (404, {"error": message})
            answer = await post(f"{url}/extension_server/hello?is_library=yes")
            assert answer.status == 400
            assert answer.json() == {
                "error": "failed to deserialize query string: "
                "provided string was not `true` or `false`"
            }
            answer = await post(f"{url}/extension_server/")
            assert (answer.status, answer.body) == (404, b"")
        assert not any(counter(node, s, "hello.tar.zst") for s in ("unknown", "200 OK"))

    asyncio.run(scenario())


def test_download_installs_once_and_serves_later_requests_at_once(
    tmp_path: Path, install: PrivateInstall, gateway: Gateway
) -> None:
    gateway.put("hello", hello_archive(frames=3))

    async def scenario() -> None:
        node = make_node(tmp_path, install, gateway.url, spec_with())
        async with serving(node) as url:
            answer = await post(f"{url}/extension_server/hello")
            assert (answer.status, answer.body) == (200, b"")
            # The same archive through its library name: installed already, not fetched.
            answer = await post(f"{url}/extension_server/libhello.so.1?is_library=true")
            assert (answer.status, answer.body) == (200, b"")
        assert len(gateway.requests) == 1
        assert gateway.requests[0].endswith(f"/{install.pg_major}/extensions/hello.tar.zst")
        assert counter(node, "200 OK", "hello.tar.zst") == 1

    asyncio.run(scenario())
    sql = install.extension_dir / "hello--1.0.sql"
    assert sql.read_bytes() == SQL
    assert oct(sql.stat().st_mode & 0o777) == "0o644"
    lib = install.pkglibdir / "libhello.so"
    assert lib.read_bytes() == b"\x7fELF not really"
    assert oct(lib.stat().st_mode & 0o777) == "0o755"
    assert (install.pkglibdir / "hello" / "x.bc").read_bytes() == b"bc"
    assert (install.pkglibdir / "bitcode").is_symlink()  # the existing entry is kept
    # The scratch directory is gone; nothing is left beside it.
    assert list((install.root / "download_extensions").iterdir()) == []


def test_concurrent_requests_share_one_download(
    tmp_path: Path, install: PrivateInstall, gateway: Gateway
) -> None:
    gateway.put("hello", hello_archive())
    gateway.release.clear()  # the gateway holds every request until released

    async def scenario() -> None:
        node = make_node(tmp_path, install, gateway.url, spec_with())
        async with serving(node) as url:
            first = asyncio.create_task(post(f"{url}/extension_server/hello"))
            await asyncio.to_thread(gateway.wait_requests, 1)
            second = asyncio.create_task(post(f"{url}/extension_server/hello"))
            while node.remote_ext.waiting("hello.tar.zst") < 2:
                assert not second.done(), second.result()
                await asyncio.sleep(0.005)
            gateway.release.set()
            answers = await asyncio.gather(first, second)
            assert [(a.status, a.body) for a in answers] == [(200, b""), (200, b"")]
        assert len(gateway.requests) == 1
        assert counter(node, "200 OK", "hello.tar.zst") == 1

    asyncio.run(scenario())
    assert (install.extension_dir / "hello--1.0.sql").exists()


def test_gateway_failures_are_500s_and_counted(
    tmp_path: Path, install: PrivateInstall, gateway: Gateway
) -> None:
    gateway.fail("hello", 503)

    async def scenario() -> None:
        node = make_node(tmp_path, install, gateway.url, spec_with())
        async with serving(node) as url:
            answer = await post(f"{url}/extension_server/hello")
            assert (answer.status, answer.json()) == (
                500,
                {
                    "error": "Failed to download a remote file: error downloading extension "
                    '"hello": remote extensions server is temporarily unavailable'
                },
            )
            answer = await post(f"{url}/extension_server/broken")
            assert answer.status == 500
            assert answer.json()["error"].endswith(
                "unexpected remote extensions server response status code: 404 Not Found"
            )
            # A failure is not remembered: once the archive is there, the next request works.
            gateway.fail("hello", None)
            gateway.put("hello", hello_archive())
            answer = await post(f"{url}/extension_server/hello")
            assert answer.status == 200
        assert counter(node, "503 Service Unavailable", "hello.tar.zst") == 1
        assert counter(node, "200 OK", "hello.tar.zst") == 1
        assert counter(node, "404 Not Found", "broken.tar.zst") == 1

        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            closed = f"http://127.0.0.1:{unused.getsockname()[1]}/"
        offline = make_node(tmp_path, install, closed, spec_with())
        async with serving(offline) as url:
            answer = await post(f"{url}/extension_server/libbed")
            assert answer.status == 500
            assert "could not perform remote extensions server request" in answer.json()["error"]
        assert counter(offline, "unknown", "libbed.tar.zst") == 1

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("archive", "problem"),
    [
        (tar_zst({"../escape.sql": b"x"}), "'..' component"),
        (tar_zst({"share/extension/a.sql": b"x"}, links={"lib/evil.so": "/etc/passwd"}), "link"),
        (tar_zst({"share/extension/a.sql": b"x" * 5000})[:-20], "truncated"),
        (b"not zstd at all", "zstd"),
    ],
)
def test_bad_archives_install_nothing(
    tmp_path: Path, install: PrivateInstall, gateway: Gateway, archive: bytes, problem: str
) -> None:
    gateway.put("broken", archive)
    before_share = tree_files(install.sharedir)
    before_lib = tree_files(install.pkglibdir)

    async def scenario() -> None:
        node = make_node(tmp_path, install, gateway.url, spec_with())
        async with serving(node) as url:
            answer = await post(f"{url}/extension_server/broken")
            assert answer.status == 500
            error = answer.json()["error"]
            assert error.startswith(
                'Failed to download a remote file: could not unpack extension "broken": '
            )
            assert problem in error

    asyncio.run(scenario())
    assert tree_files(install.sharedir) == before_share
    assert tree_files(install.pkglibdir) == before_lib
    assert not (tmp_path / "escape.sql").exists()
    assert list((install.root / "download_extensions").iterdir()) == []


def test_start_up_step(tmp_path: Path, install: PrivateInstall, gateway: Gateway) -> None:
    gateway.put("hello", hello_archive())
    settings = [{"name": "shared_preload_libraries", "value": "neon,libhello", "vartype": "string"}]
    conf = "shared_preload_libraries='libbed,unindexed'\n"
    spec = storage_spec(
        remote_extensions=remote_extensions(),
        cluster={"roles": [], "databases": [], "settings": settings, "postgresql_conf": conf},
    )

    async def scenario() -> ComputeMetrics:
        node = make_node(tmp_path, install, gateway.url, spec)
        metrics = ComputeMetrics()
        assert node.state.pspec is not None
        await node.remote_ext.prepare_for_start(node.state.pspec.spec, metrics)
        # libhello downloaded; libbed's archive is missing: logged, not fatal.
        assert counter(node, "404 Not Found", "libbed.tar.zst") == 1
        return metrics

    metrics = asyncio.run(scenario())
    size = gateway.path("hello").stat().st_size
    assert (metrics.num_ext_downloaded, metrics.largest_ext_size) == (1, size)
    assert metrics.total_ext_download_size == size
    assert (install.pkglibdir / "libhello.so").exists()
    for name in ("hello", "libbed", "broken"):
        assert (install.extension_dir / f"{name}.control").read_text() == CONTROL
    assert not (install.extension_dir / "private.control").exists()


def test_start_up_step_without_a_gateway_writes_control_files_only(
    tmp_path: Path, install: PrivateInstall
) -> None:
    settings = [{"name": "shared_preload_libraries", "value": "libhello", "vartype": "string"}]
    spec = storage_spec(
        remote_extensions=remote_extensions(),
        cluster={"roles": [], "databases": [], "settings": settings},
    )
    node = make_node(tmp_path, install, None, spec)
    metrics = ComputeMetrics(load_ext_ms=7)
    assert node.state.pspec is not None
    asyncio.run(node.remote_ext.prepare_for_start(node.state.pspec.spec, metrics))
    assert metrics == ComputeMetrics()
    assert (install.extension_dir / "hello.control").exists()
    assert not (install.pkglibdir / "libhello.so").exists()


def test_start_up_step_fails_for_a_library_it_may_not_download(
    tmp_path: Path, install: PrivateInstall
) -> None:
    settings = [{"name": "shared_preload_libraries", "value": "libbed", "vartype": "string"}]
    spec = storage_spec(
        remote_extensions=remote_extensions(custom_extensions=None),
        cluster={"roles": [], "databases": [], "settings": settings},
    )
    node = make_node(tmp_path, install, "http://127.0.0.1:9/", spec)
    assert node.state.pspec is not None
    with pytest.raises(ComputeError, match=r"^extension libbed is not found$"):
        asyncio.run(node.remote_ext.prepare_for_start(node.state.pspec.spec, ComputeMetrics()))


def test_compute_dev_extension_gateway_command(tmp_path: Path) -> None:
    archive = tmp_path / "latest" / "amd64" / "v15" / "extensions" / "hello.tar.zst"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(hello_archive())
    argv = [sys.executable, "-m", "compute_dev.cli", "extension-gateway", "--dir", str(tmp_path)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        with process.stdout:
            base = json.loads(process.stdout.readline())["remote_ext_base_url"]
        assert base.endswith("/")
        answer = http("GET", f"{base}latest/amd64/v15/extensions/hello.tar.zst")
        assert (answer.status, answer.body) == (200, archive.read_bytes())
        for path in ("latest/amd64/v15/extensions/other.tar.zst", "../etc/passwd", "latest/x"):
            assert http("GET", f"{base}{path}").status == 404
        archive.with_name("hello.tar.zst.status").write_text("503")
        assert http("GET", f"{base}latest/amd64/v15/extensions/hello.tar.zst").status == 503
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
