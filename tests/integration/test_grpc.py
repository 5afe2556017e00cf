"""compute_ctl's gRPC client against the gRPC pageserver stand-in, over real sockets.

Covers what the client relies on: the bytes arrive unchanged and
in 256 KiB chunks, the routing headers and the token are sent, every status the stand-in can
produce (header checks, auth, shard/compression/LSN checks, injected faults) becomes a
`StorageError` with the right `transient` flag and without the token, and a client generated
from the same .proto, sending raw metadata, works too.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from compute_ctl.errors import StorageError
from compute_ctl.spec.types import Lsn, ShardIndex, TimelineId
from compute_ctl.storage.grpc import grpc_basebackup, grpc_lease_lsn
from compute_ctl.storage.proto import page_service_pb2 as pb
from compute_dev.standins import timelines
from compute_dev.standins.grpc_server import (
    GrpcFaults,
    GrpcStandIn,
    serve_grpc,
    start_grpc_stand_in,
)
from compute_dev.standins.timelines import Timeline, TimelineStore
from tests.support.stored_timelines import store_noise_timeline

CHUNK = 256 * 1024
LSN = Lsn.parse("0/1500708")
STUBS: Any = importlib.import_module("compute_ctl.storage.proto.page_service_pb2_grpc")
"""The generated client, used as any third-party client of the .proto would use it."""


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


@pytest.fixture
def store(tmp_path: Path) -> TimelineStore:
    return TimelineStore(tmp_path / "store")


@pytest.fixture
def timeline(store: TimelineStore) -> Timeline:
    """A stored timeline without initdb: a small data directory whose gzip tarball still
    spans several chunks (incompressible relation data)."""
    return store_noise_timeline(
        store,
        LSN,
        relation_bytes=700 * 1024,
        seed=7,
        extra_files={"postgresql.conf": "never sent\n"},
    )


@pytest.fixture
def frozen_mtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same mtime in every tarball, so two streams can be compared byte for byte."""
    monkeypatch.setattr(timelines, "_now", lambda: 1_700_000_000)


class Collect:
    """The simplest sink: keeps every chunk."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


class AsyncCollect(Collect):
    async def feed(self, chunk: bytes) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.chunks.append(chunk)


@asynccontextmanager
async def stand_in(store: TimelineStore, **options: Any) -> AsyncIterator[GrpcStandIn]:
    server = await start_grpc_stand_in(store, "127.0.0.1", 0, **options)
    try:
        yield server
    finally:
        await server.stop(None)


def ids_metadata(timeline: Timeline, shard: str = "0000") -> list[tuple[str, str]]:
    return [
        ("neon-tenant-id", timeline.tenant_id),
        ("neon-timeline-id", timeline.timeline_id),
        ("neon-shard-id", shard),
    ]


async def basebackup(
    server: GrpcStandIn,
    timeline: Timeline,
    *,
    lsn: Lsn | None = LSN,
    token: str | None = None,
    sink: Collect | None = None,
    **options: Any,
) -> int:
    return await grpc_basebackup(
        server.url,
        timeline.tenant_id,
        timeline.timeline_id,
        lsn,
        replica=options.pop("replica", False),
        token=token,
        sink=sink if sink is not None else Collect(),
        **options,
    )


async def failure(coro: Coroutine[Any, Any, object]) -> StorageError:
    with pytest.raises(StorageError) as caught:
        await coro
    return caught.value


# --- the happy path ----------------------------------------------------------------------------


def test_basebackup_bytes_equal_the_tar_stream(timeline: Timeline, frozen_mtime: None) -> None:
    async def scenario() -> None:
        connected: list[bool] = []
        async with stand_in(timeline_store(timeline)) as server:
            sink = Collect()
            received = await basebackup(
                server, timeline, sink=sink, on_connected=lambda: connected.append(True)
            )
            expected = b"".join(timeline.tar_chunks(gzip=True))
            assert sink.data == expected
            assert received == len(expected)
            assert len(sink.chunks) >= 3
            assert all(len(c) == CHUNK for c in sink.chunks[:-1])
            assert 0 < len(sink.chunks[-1]) <= CHUNK
            assert connected == [True]
            (request,) = server.service.basebackup_requests
            assert (request.lsn, request.replica, request.full) == (LSN, False, False)
            assert request.compression == pb.BASE_BACKUP_COMPRESSION_GZIP
            (call,) = server.service.calls
            assert call.method == "/page_api.PageService/GetBaseBackup"
            assert call.headers["neon-tenant-id"] == timeline.tenant_id
            assert call.headers["neon-timeline-id"] == timeline.timeline_id
            assert call.headers["neon-shard-id"] == "0000"
            assert not call.authorized

    run(scenario)


def timeline_store(timeline: Timeline) -> TimelineStore:
    """The store a fixture timeline lives in (…/tenants/T/timelines/L/pgdata)."""
    return TimelineStore(timeline.datadir.parents[4])


def test_latest_replica_sharded_async_sink(timeline: Timeline) -> None:
    """No LSN asks for latest (0); replica and the shard count travel; trust mode ignores a
    token; a coroutine sink is awaited."""

    async def scenario() -> None:
        async with stand_in(timeline_store(timeline)) as server:
            sink = AsyncCollect()
            received = await basebackup(
                server,
                timeline,
                lsn=None,
                replica=True,
                token="not-even-a-jwt",
                sink=sink,
                shard=ShardIndex(0, 4),
            )
            assert received == len(sink.data) > 0
            (request,) = server.service.basebackup_requests
            assert (request.lsn, request.replica) == (0, True)
            (call,) = server.service.calls
            assert call.headers["neon-shard-id"] == "0004"
            assert call.authorized
            assert "authorization" not in call.headers

    run(scenario)


def test_serve_grpc_on_an_explicit_port(timeline: Timeline) -> None:
    async def scenario() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = await serve_grpc(timeline_store(timeline), "127.0.0.1", port)
        try:
            sink = Collect()
            await grpc_basebackup(
                f"grpc://no_user@127.0.0.1:{port}",
                timeline.tenant_id,
                timeline.timeline_id,
                None,
                replica=False,
                token=None,
                sink=sink,
            )
            assert sink.data[:2] == b"\x1f\x8b"
            with pytest.raises(OSError, match="cannot listen"):
                await serve_grpc(timeline_store(timeline), "127.0.0.1", port)
        finally:
            await server.stop(None)

    run(scenario)


# --- request checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lsn", "code", "transient", "text"),
    [
        (Lsn.parse("0/1000000"), "INVALID_ARGUMENT", False, "invalid basebackup LSN"),
        (Lsn.parse("1/0"), "INTERNAL", True, "timed out waiting for WAL up to 1/0"),
    ],
)
def test_lsn_checks(timeline: Timeline, lsn: Lsn, code: str, transient: bool, text: str) -> None:
    async def scenario() -> None:
        async with stand_in(timeline_store(timeline)) as server:
            error = await failure(basebackup(server, timeline, lsn=lsn))
            assert f"{code}: {text}" in str(error)
            assert error.transient is transient

    run(scenario)


def test_shard_other_than_zero_is_rejected(timeline: Timeline) -> None:
    async def scenario() -> None:
        async with stand_in(timeline_store(timeline)) as server:
            error = await failure(basebackup(server, timeline, shard=ShardIndex(1, 4)))
            assert str(error) == (
                f"basebackup from pageserver {server.url} failed: INVALID_ARGUMENT: "
                "request only valid on shard zero (requested shard 0104)"
            )
            assert error.target == server.url
            assert not error.transient

    run(scenario)


def test_unknown_timeline_is_not_found(timeline: Timeline) -> None:
    async def scenario() -> None:
        async with stand_in(timeline_store(timeline)) as server:
            other = TimelineId.generate()
            error = await failure(
                grpc_basebackup(
                    server.url, timeline.tenant_id, other, None,
                    replica=False, token=None, sink=Collect(),
                )
            )  # fmt: skip
            assert "NOT_FOUND" in str(error)
            assert other in str(error)
            assert error.transient

    run(scenario)


@pytest.mark.parametrize(
    ("metadata", "text"),
    [
        ([], "missing neon-tenant-id"),
        ([("neon-timeline-id", "zz")], "missing neon-tenant-id"),
        ([("neon-tenant-id", "abc")], "invalid neon-tenant-id"),
        ([("neon-tenant-id", "a" * 32)], "missing neon-timeline-id"),
        (
            [("neon-tenant-id", "a" * 32), ("neon-timeline-id", "b" * 33)],
            "invalid neon-timeline-id",
        ),
        ([("neon-tenant-id", "a" * 32), ("neon-timeline-id", "b" * 32)], "missing neon-shard-id"),
        (
            [("neon-tenant-id", "a" * 32), ("neon-timeline-id", "b" * 32), ("neon-shard-id", "0")],
            "invalid neon-shard-id",
        ),
    ],
)
def test_header_errors_with_raw_metadata(
    store: TimelineStore, metadata: list[tuple[str, str]], text: str
) -> None:
    async def scenario() -> None:
        async with (
            stand_in(store) as server,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        ):
            stub = STUBS.PageServiceStub(channel)
            request = pb.GetBaseBackupRequest(compression=pb.BASE_BACKUP_COMPRESSION_GZIP)
            calls: list[Any] = [
                stub.GetBaseBackup(request, metadata=metadata).read(),
                stub.LeaseLsn(pb.LeaseLsnRequest(lsn=1), metadata=metadata),
            ]
            for pending in calls:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await pending
                assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert caught.value.details() == text
            assert server.service.basebackup_requests == []

    run(scenario)


def test_compression_field_and_raw_tar(timeline: Timeline, frozen_mtime: None) -> None:
    async def scenario() -> None:
        async with (
            stand_in(timeline_store(timeline)) as server,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        ):
            stub = STUBS.PageServiceStub(channel)
            for value, shown in ((0, "BASE_BACKUP_COMPRESSION_UNKNOWN"), (7, "7")):
                request = pb.GetBaseBackupRequest(compression=value)  # type: ignore[arg-type]
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.GetBaseBackup(request, metadata=ids_metadata(timeline)).read()
                assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert caught.value.details() == f"field 'compression' has invalid value '{shown}'"
            request = pb.GetBaseBackupRequest(compression=pb.BASE_BACKUP_COMPRESSION_NONE)
            chunks = [
                r.chunk async for r in stub.GetBaseBackup(request, metadata=ids_metadata(timeline))
            ]
            assert b"".join(chunks) == b"".join(timeline.tar_chunks(gzip=False))
            assert all(len(c) == CHUNK for c in chunks[:-1])

    run(scenario)


@pytest.mark.parametrize(
    ("method", "request_type", "streaming"),
    [
        ("GetDbSize", pb.GetDbSizeRequest, False),
        ("GetRelSize", pb.GetRelSizeRequest, False),
        ("GetSlruSegment", pb.GetSlruSegmentRequest, False),
        ("GetPages", pb.GetPageRequest, True),
    ],
)
def test_other_rpcs_are_unimplemented(
    timeline: Timeline, method: str, request_type: type[Any], streaming: bool
) -> None:
    async def scenario() -> None:
        async with (
            stand_in(timeline_store(timeline)) as server,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        ):
            rpc = getattr(STUBS.PageServiceStub(channel), method)
            request = iter([request_type()]) if streaming else request_type()
            call = rpc(request, metadata=ids_metadata(timeline))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                if streaming:
                    await call.read()
                else:
                    await call
            assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED

    run(scenario)


def test_sync_generated_stub_with_raw_metadata(timeline: Timeline, frozen_mtime: None) -> None:
    """The blocking grpcio API and the generated stub: nothing in the stand-in is specific to
    our client."""

    def fetch(port: int) -> bytes:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = STUBS.PageServiceStub(channel)
            request = pb.GetBaseBackupRequest(
                lsn=int(LSN), compression=pb.BASE_BACKUP_COMPRESSION_GZIP
            )
            responses = stub.GetBaseBackup(request, metadata=ids_metadata(timeline))
            return b"".join(r.chunk for r in responses)

    async def scenario() -> None:
        async with stand_in(timeline_store(timeline)) as server:
            data = await asyncio.to_thread(fetch, server.port)
            assert data == b"".join(timeline.tar_chunks(gzip=True))

    run(scenario)


# --- auth --------------------------------------------------------------------------------------

KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def mint(claims: dict[str, Any], key: Ed25519PrivateKey = KEY) -> str:
    return jwt.encode(claims, key, algorithm="EdDSA")


def expired(tenant: str) -> dict[str, Any]:
    return {"scope": "tenant", "tenant_id": tenant, "exp": 1_000_000_000}


@pytest.mark.parametrize(
    ("make_token", "code", "text"),
    [
        (lambda t: None, "UNAUTHENTICATED", "no authorization header"),
        (lambda t: mint({"scope": "tenant", "tenant_id": t}, OTHER_KEY), "INVALID_ARGUMENT",
         "invalid JWT token: invalid token: no key verifies its signature"),
        (lambda t: mint(expired(t)), "INVALID_ARGUMENT", "invalid JWT token: "),
        (lambda t: mint({"scope": "tenant", "tenant_id": t, "aud": "x"}), "INVALID_ARGUMENT",
         "invalid JWT token: "),
        (lambda t: mint({"tenant_id": t}), "INVALID_ARGUMENT", "invalid JWT token: "),
        (lambda t: mint({"scope": "root"}), "INVALID_ARGUMENT", "invalid JWT token: "),
        (lambda t: jwt.encode({"scope": "pageserverapi"}, "k" * 32, algorithm="HS256"),
         "INVALID_ARGUMENT", "invalid JWT token: "),
        (lambda t: mint({"scope": "tenant", "tenant_id": "0" * 32}), "PERMISSION_DENIED",
         "Tenant id mismatch. Permission denied"),
        (lambda t: mint({"scope": "tenant"}), "PERMISSION_DENIED", "without tenant_id"),
        (lambda t: mint({"scope": "admin"}), "PERMISSION_DENIED",
         "ineligible for Pageserver auth"),
        (lambda t: mint({"scope": "safekeeperdata", "tenant_id": t}), "PERMISSION_DENIED",
         "ineligible for Pageserver auth"),
    ],
    ids=[
        "no-token", "wrong-key", "expired", "audience", "no-scope", "unknown-scope", "hs256",
        "other-tenant", "tenant-scope-without-tenant", "admin", "safekeeperdata",
    ],
)  # fmt: skip
def test_auth_errors(
    timeline: Timeline, make_token: Callable[[str], str | None], code: str, text: str
) -> None:
    async def scenario() -> None:
        token = make_token(timeline.tenant_id)
        async with stand_in(timeline_store(timeline), public_key=public_pem(KEY)) as server:
            error = await failure(basebackup(server, timeline, token=token))
            assert f"failed: {code}: " in str(error)
            assert text in str(error)
            assert not error.transient
            if token:
                assert token not in str(error)
                assert token not in error.one_line()
            assert server.service.basebackup_requests == []

    run(scenario)


@pytest.mark.parametrize(
    "claims",
    [
        {"scope": "tenant", "tenant_id": "TENANT"},
        {"scope": "tenant", "tenant_id": "TENANT", "endpoint_id": ""},
        {"scope": "pageserverapi"},
        {"scope": "tenant", "tenant_id": "TENANT", "exp": 4_000_000_000},
    ],
)
def test_auth_accepts(timeline: Timeline, claims: dict[str, Any]) -> None:
    async def scenario() -> None:
        filled = {k: timeline.tenant_id if v == "TENANT" else v for k, v in claims.items()}
        async with stand_in(timeline_store(timeline), public_key=public_pem(KEY)) as server:
            assert await basebackup(server, timeline, token=mint(filled)) > 0
            expires = await grpc_lease_lsn(
                server.url, timeline.tenant_id, timeline.timeline_id, ShardIndex(0, 0), LSN,
                token=mint(filled),
            )  # fmt: skip
            assert expires is not None

    run(scenario)


def test_auth_key_directory_and_header_shapes(timeline: Timeline, tmp_path: Path) -> None:
    """Each key of a directory is tried; a non-Bearer header is INVALID_ARGUMENT; headers are
    checked before auth."""
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "a.pem").write_bytes(public_pem(OTHER_KEY))
    (keys / "b.pem").write_bytes(public_pem(KEY))

    async def scenario() -> None:
        async with (
            stand_in(timeline_store(timeline), public_key=keys) as server,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        ):
            for key in (KEY, OTHER_KEY):
                token = mint({"scope": "tenant", "tenant_id": timeline.tenant_id}, key)
                assert await basebackup(server, timeline, token=token) > 0
            stub = STUBS.PageServiceStub(channel)
            request = pb.LeaseLsnRequest(lsn=int(LSN))
            for metadata, code, text in (
                (
                    [*ids_metadata(timeline), ("authorization", "Basic dXNlcjpwYXNz")],
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "invalid authorization header",
                ),
                ([], grpc.StatusCode.INVALID_ARGUMENT, "missing neon-tenant-id"),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.LeaseLsn(request, metadata=metadata)
                assert (caught.value.code(), caught.value.details()) == (code, text)

    run(scenario)


# --- injected faults and connection failures -----------------------------------------


@pytest.mark.parametrize(
    ("faults", "code", "chunks"),
    [
        (GrpcFaults(start_code=grpc.StatusCode.NOT_FOUND), "NOT_FOUND", 0),
        (GrpcFaults(start_code=grpc.StatusCode.UNAVAILABLE), "UNAVAILABLE", 0),
        (GrpcFaults(internal_after_chunks=0), "INTERNAL", 0),
        (GrpcFaults(internal_after_chunks=2), "INTERNAL", 2),
    ],
    ids=["not-found", "unavailable", "internal-at-once", "internal-after-2"],
)
def test_injected_faults_are_transient(
    timeline: Timeline, faults: GrpcFaults, code: str, chunks: int
) -> None:
    async def scenario() -> None:
        async with stand_in(timeline_store(timeline), faults=faults) as server:
            sink = Collect()
            error = await failure(basebackup(server, timeline, sink=sink))
            assert f"failed: {code}: " in str(error)
            assert error.transient
            assert [len(c) for c in sink.chunks] == [CHUNK] * chunks

    run(scenario)


def test_fault_for_the_first_call_only(timeline: Timeline) -> None:
    async def scenario() -> None:
        faults = GrpcFaults(internal_after_chunks=1, calls=1)
        async with stand_in(timeline_store(timeline), faults=faults) as server:
            error = await failure(basebackup(server, timeline))
            assert "INTERNAL: basebackup pageserver error" in str(error)
            assert await basebackup(server, timeline) > CHUNK
            assert server.service.faulted_calls == 1

    run(scenario)


def test_fault_texts_can_be_chosen(timeline: Timeline) -> None:
    async def scenario() -> None:
        faults = GrpcFaults(start_code=grpc.StatusCode.UNAVAILABLE, start_message="not active")
        async with stand_in(timeline_store(timeline), faults=faults) as server:
            error = await failure(basebackup(server, timeline))
            assert str(error).endswith("failed: UNAVAILABLE: not active")

    run(scenario)


def test_bad_fault_settings() -> None:
    with pytest.raises(ValueError, match="non-OK"):
        GrpcFaults(start_code=grpc.StatusCode.OK)
    with pytest.raises(ValueError, match=">= 0"):
        GrpcFaults(internal_after_chunks=-1)


def test_connection_refused_is_transient_and_hides_the_password(timeline: Timeline) -> None:
    async def scenario() -> None:
        with socket.socket() as closed:  # bound, never listening: connections are refused
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
            error = await failure(
                grpc_basebackup(
                    f"grpc://no_user:hunter2@127.0.0.1:{port}",
                    timeline.tenant_id, timeline.timeline_id, LSN,
                    replica=False, token="secret-token", sink=Collect(),
                )
            )  # fmt: skip
        assert error.transient
        assert error.target == f"grpc://no_user:***@127.0.0.1:{port}"
        assert f"127.0.0.1:{port}" in str(error)
        assert "hunter2" not in str(error)
        assert "secret-token" not in str(error)

    run(scenario)


@pytest.mark.parametrize(
    "url",
    ["postgres://no_user@127.0.0.1:5432", "grpc://no_user@127.0.0.1", "grpc://h:port", "grpc://"],
)
def test_unusable_urls_are_permanent(timeline: Timeline, url: str) -> None:
    async def scenario() -> None:
        error = await failure(
            grpc_basebackup(
                url, timeline.tenant_id, timeline.timeline_id, None,
                replica=False, token=None, sink=Collect(),
            )
        )  # fmt: skip
        assert not error.transient
        assert "invalid pageserver gRPC URL" in str(error)

    run(scenario)


def test_sink_errors_propagate_unchanged(timeline: Timeline) -> None:
    class Full(Collect):
        def feed(self, chunk: bytes) -> None:
            raise OSError("No space left on device")

    async def scenario() -> None:
        async with stand_in(timeline_store(timeline)) as server:
            with pytest.raises(OSError, match="No space left"):
                await basebackup(server, timeline, sink=Full())

    run(scenario)


# --- leases ------------------------------------------------------------------------------------


def test_lease_granted_and_extended(timeline: Timeline) -> None:
    async def scenario() -> None:
        async with stand_in(
            timeline_store(timeline), lease_length=datetime.timedelta(minutes=2)
        ) as server:
            before = datetime.datetime.now(datetime.UTC)
            shard = ShardIndex(1, 4)
            first = await grpc_lease_lsn(
                server.url, timeline.tenant_id, timeline.timeline_id, shard, LSN, token=None
            )
            second = await grpc_lease_lsn(
                server.url, timeline.tenant_id, timeline.timeline_id, shard, LSN, token=None
            )
            after = datetime.datetime.now(datetime.UTC)
            assert first is not None
            assert second is not None
            window = datetime.timedelta(minutes=2)
            assert before + window <= first <= second <= after + window
            (call, _) = server.service.calls
            assert call.method == "/page_api.PageService/LeaseLsn"
            assert call.headers["neon-shard-id"] == "0104"
            assert [r.lsn for r in server.service.lease_requests] == [LSN, LSN]

    run(scenario)


@pytest.mark.parametrize(
    ("faults", "lsn", "outcome"),
    [
        (GrpcFaults(lease_code=grpc.StatusCode.FAILED_PRECONDITION), LSN, None),
        (GrpcFaults(lease_code=grpc.StatusCode.UNAVAILABLE), LSN, "UNAVAILABLE"),
        (GrpcFaults(), Lsn(0), "INVALID_ARGUMENT"),
    ],
    ids=["not-granted", "unavailable", "zero-lsn"],
)
def test_lease_refusals(
    timeline: Timeline, faults: GrpcFaults, lsn: Lsn, outcome: str | None
) -> None:
    async def scenario() -> None:
        async with stand_in(timeline_store(timeline), faults=faults) as server:
            lease = grpc_lease_lsn(
                server.url, timeline.tenant_id, timeline.timeline_id, ShardIndex(0, 0), lsn,
                token=None,
            )  # fmt: skip
            if outcome is None:
                assert await lease is None
                return
            error = await failure(lease)
            assert f"failed: {outcome}" in str(error)
            assert error.transient is (outcome == "UNAVAILABLE")

    run(scenario)
