"""A stand-in for the pageserver's gRPC listener (`page_api`), for development and tests only.

It exists so compute_ctl's gRPC client runs against the real wire protocol on this machine: it
serves the exact service of `page_service.proto` on plaintext HTTP/2, checks the request
headers in the pageserver's order and with its status codes and texts, verifies Ed25519
storage tokens like the pageserver, streams
basebackups from a `TimelineStore` in 256 KiB chunks, grants LSN leases, and answers every
other RPC with UNIMPLEMENTED (compute_ctl never calls them).

Faults can be switched on when the server is built: a status at the start of
GetBaseBackup (NOT_FOUND, UNAVAILABLE, ...), or INTERNAL in the trailers after some chunks, for
the first N calls or for all of them, so the client's retry paths can be exercised.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import grpc
import grpc.aio
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from compute_ctl.spec.types import Lsn, ShardIndex, TenantId, TimelineId
from compute_ctl.storage.proto import page_service_pb2 as pb
from compute_dev.standins.storage_auth import (
    AuthError,
    JwtVerifier,
    Scope,
    check_pageserver_permission,
)
from compute_dev.standins.timelines import (
    DEFAULT_CHUNK_SIZE,
    Timeline,
    TimelineError,
    TimelineStore,
)

# Named as before the split into packages, so log lines and their filters stay the same.
log = logging.getLogger("compute_dev.grpc_server")

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

SERVICE_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["PageService"]
SERVICE = SERVICE_DESCRIPTOR.full_name

CHUNK_SIZE = DEFAULT_CHUNK_SIZE
"""Every GetBaseBackup chunk is exactly this long, except the last."""

DEFAULT_LEASE_LENGTH = datetime.timedelta(minutes=10)

SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    # The pageserver's HTTP/2 settings and tonic's default message limits.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.max_concurrent_streams", 256),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", -1),
    # Two stand-ins must never share a port silently.
    ("grpc.so_reuseport", 0),
)

PAGESERVER_SCOPES = frozenset(
    {
        "tenant",
        "pageserverapi",
        "safekeeperdata",
        "admin",
        "generations_api",
        "infra",
        "scrubber",
        "controller_peer",
        "tenantendpoint",
    }
)
"""Every scope a storage token may carry; only `tenant` and `pageserverapi` pass here."""


class RpcRejectedError(Exception):
    """A request the stand-in answers with a non-OK status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- request headers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CallIds:
    """The routing headers of one call, parsed."""

    tenant_id: TenantId
    timeline_id: TimelineId
    shard: ShardIndex


def _metadata_dict(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in metadata or ():
        if isinstance(value, str):
            found.setdefault(key.lower(), value)
    return found


def parse_call_ids(headers: dict[str, str]) -> CallIds:
    """Check the three `neon-*` headers in the pageserver's order."""
    values: list[object] = []
    for name, parse in (
        ("neon-tenant-id", TenantId),
        ("neon-timeline-id", TimelineId),
        ("neon-shard-id", ShardIndex.parse),
    ):
        text = headers.get(name)
        if text is None:
            raise RpcRejectedError(grpc.StatusCode.INVALID_ARGUMENT, f"missing {name}")
        try:
            values.append(parse(text))
        except ValueError:
            raise RpcRejectedError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid {name}") from None
    tenant, timeline, shard = values
    assert isinstance(tenant, TenantId)
    assert isinstance(timeline, TimelineId)
    assert isinstance(shard, ShardIndex)
    return CallIds(tenant, timeline, shard)


def check_authorization(
    auth: JwtVerifier | None, headers: dict[str, str], tenant: TenantId
) -> None:
    """The `authorization` header, only when auth is on."""
    if auth is None:
        return
    value = headers.get("authorization")
    if value is None:
        raise RpcRejectedError(grpc.StatusCode.UNAUTHENTICATED, "no authorization header")
    if not value.startswith("Bearer "):
        raise RpcRejectedError(grpc.StatusCode.INVALID_ARGUMENT, "invalid authorization header")
    try:
        claims = auth.decode(value.removeprefix("Bearer "))
    except AuthError as exc:
        raise RpcRejectedError(
            grpc.StatusCode.INVALID_ARGUMENT, f"invalid JWT token: {exc}"
        ) from None
    if claims.scope is Scope.TENANT and claims.tenant_id is None:
        # Upstream's permission check panics here; a clean refusal is what a client can use.
        raise RpcRejectedError(
            grpc.StatusCode.PERMISSION_DENIED, "a tenant-scoped token without tenant_id"
        )
    try:
        check_pageserver_permission(claims, tenant)
    except AuthError as exc:
        raise RpcRejectedError(grpc.StatusCode.PERMISSION_DENIED, str(exc)) from None


def _rejecting_handler(like: Handler, code: grpc.StatusCode, message: str) -> Handler:
    """A handler of the same shape as `like` that fails the call with `code`."""

    async def reject(request: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    return _handler(
        like.request_streaming,
        like.response_streaming,
        reject,
        like.request_deserializer,
        like.response_serializer,
    )


def _handler(
    request_streaming: bool,
    response_streaming: bool,
    behaviour: Callable[..., Any],
    deserializer: Callable[..., Any] | None,
    serializer: Callable[..., Any] | None,
) -> Handler:
    if request_streaming and response_streaming:
        make = grpc.stream_stream_rpc_method_handler
    elif request_streaming:
        make = grpc.stream_unary_rpc_method_handler
    elif response_streaming:
        make = grpc.unary_stream_rpc_method_handler
    else:
        make = grpc.unary_unary_rpc_method_handler
    return make(behaviour, request_deserializer=deserializer, response_serializer=serializer)


@dataclass(frozen=True)
class CallRecord:
    """One call as the stand-in saw it (the token is reduced to "was there one")."""

    method: str
    headers: dict[str, str]
    authorized: bool


class _HeaderInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Headers first, then auth, before any servicer code runs."""

    def __init__(self, service: PageServiceStandIn) -> None:
        self.service = service

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        headers = _metadata_dict(handler_call_details.invocation_metadata)
        self.service.calls.append(
            CallRecord(
                handler_call_details.method,
                {k: v for k, v in headers.items() if k != "authorization"},
                "authorization" in headers,
            )
        )
        try:
            ids = parse_call_ids(headers)
            check_authorization(self.service.auth, headers, ids.tenant_id)
        except RpcRejectedError as rejected:
            log.info("%s rejected: %s", handler_call_details.method, rejected.message)
            return _rejecting_handler(handler, rejected.code, rejected.message)
        return handler


# --- the service -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrpcFaults:
    """Error injection for GetBaseBackup and LeaseLsn.

    `start_code` fails GetBaseBackup right after the header, auth and shard checks (NOT_FOUND:
    "timeline not found", UNAVAILABLE: "tenant not active", ...). `internal_after_chunks` ends
    the stream with INTERNAL after that many chunks (0: before the first). `calls` limits
    either to the first N GetBaseBackup calls (None: every call), so a retry can succeed.
    `lease_code` fails LeaseLsn with that code (FAILED_PRECONDITION means "not granted").
    """

    start_code: grpc.StatusCode | None = None
    start_message: str | None = None
    internal_after_chunks: int | None = None
    calls: int | None = None
    lease_code: grpc.StatusCode | None = None

    def __post_init__(self) -> None:
        for code in (self.start_code, self.lease_code):
            if code is grpc.StatusCode.OK:
                raise ValueError("a fault needs a non-OK status code")
        if self.internal_after_chunks is not None and self.internal_after_chunks < 0:
            raise ValueError("internal_after_chunks must be >= 0")


@dataclass
class PageServiceStandIn:
    """The servicer: the store, auth, faults, and what it has seen (for tests)."""

    store: TimelineStore
    auth: JwtVerifier | None = None
    faults: GrpcFaults = field(default_factory=GrpcFaults)
    lease_length: datetime.timedelta = DEFAULT_LEASE_LENGTH
    calls: list[CallRecord] = field(default_factory=list)
    basebackup_requests: list[pb.GetBaseBackupRequest] = field(default_factory=list)
    lease_requests: list[pb.LeaseLsnRequest] = field(default_factory=list)
    leases: dict[tuple[str, str, str, int], datetime.datetime] = field(default_factory=dict)
    faulted_calls: int = 0

    def _fault_now(self) -> bool:
        """Whether this GetBaseBackup call gets the configured basebackup fault."""
        faults = self.faults
        if faults.start_code is None and faults.internal_after_chunks is None:
            return False
        if faults.calls is not None and self.faulted_calls >= faults.calls:
            return False
        self.faulted_calls += 1
        return True

    def _resolve(self, ids: CallIds) -> Timeline:
        timeline = self.store.get(ids.tenant_id, ids.timeline_id)
        if timeline is None:
            raise RpcRejectedError(
                grpc.StatusCode.NOT_FOUND,
                f"tenant {ids.tenant_id} timeline {ids.timeline_id} not found",
            )
        return timeline

    def _prepare_basebackup(
        self, request: pb.GetBaseBackupRequest, ids: CallIds, faulty: bool
    ) -> Timeline:
        """The checks of, in order; returns the timeline to stream."""
        if ids.shard.number != 0:
            raise RpcRejectedError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request only valid on shard zero (requested shard {ids.shard})",
            )
        if faulty and self.faults.start_code is not None:
            message = self.faults.start_message or (
                f"injected fault: {self.faults.start_code.name} at call start"
            )
            raise RpcRejectedError(self.faults.start_code, message)
        timeline = self._resolve(ids)
        if request.compression not in (
            pb.BASE_BACKUP_COMPRESSION_NONE,
            pb.BASE_BACKUP_COMPRESSION_GZIP,
        ):
            raise RpcRejectedError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"field 'compression' has invalid value '{_enum_text(request.compression)}'",
            )
        if request.lsn and request.lsn < timeline.lsn:
            # The store holds one state only; anything older is gone, as if garbage-collected.
            raise RpcRejectedError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid basebackup LSN: LSN {Lsn(request.lsn)} is earlier than "
                f"latest GC cutoff {timeline.lsn}",
            )
        if request.lsn > timeline.lsn:
            # No WAL ever arrives here: report what wait_lsn would report after its timeout.
            raise RpcRejectedError(
                grpc.StatusCode.INTERNAL,
                f"timed out waiting for WAL up to {Lsn(request.lsn)} "
                f"(the timeline ends at {timeline.lsn})",
            )
        return timeline

    async def get_base_backup(
        self,
        request: pb.GetBaseBackupRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.GetBaseBackupResponseChunk]:
        """Stream the tarball; ends with INTERNAL if generating it fails."""
        self.basebackup_requests.append(request)
        ids = parse_call_ids(_metadata_dict(context.invocation_metadata()))
        faulty = self._fault_now()
        try:
            timeline = self._prepare_basebackup(request, ids, faulty)
        except RpcRejectedError as rejected:
            await context.abort(rejected.code, rejected.message)
        stop_after = self.faults.internal_after_chunks if faulty else None
        gzip = request.compression == pb.BASE_BACKUP_COMPRESSION_GZIP
        chunks = timeline.tar_chunks(gzip=gzip, chunk_size=CHUNK_SIZE)
        sent = 0
        sent_bytes = 0
        lsn = Lsn(request.lsn) if request.lsn else "latest"
        while True:
            if stop_after is not None and sent >= stop_after:
                await context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"basebackup pageserver error: injected fault after {sent} chunks",
                )
            try:
                chunk = await asyncio.to_thread(_next_chunk, chunks)
            except (OSError, TimelineError) as exc:
                await context.abort(grpc.StatusCode.INTERNAL, f"basebackup failed: {exc}")
            if chunk is None:
                log.info(
                    "grpc GetBaseBackup tenant=%s timeline=%s lsn=%s replica=%s bytes=%d",
                    ids.tenant_id,
                    ids.timeline_id,
                    lsn,
                    request.replica,
                    sent_bytes,
                )
                return
            sent += 1
            sent_bytes += len(chunk)
            yield pb.GetBaseBackupResponseChunk(chunk=chunk)

    async def lease_lsn(
        self, request: pb.LeaseLsnRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.LeaseLsnResponse:
        """Grant or extend a lease; the reply is the later of the old and the new expiry."""
        self.lease_requests.append(request)
        ids = parse_call_ids(_metadata_dict(context.invocation_metadata()))
        try:
            if request.lsn == 0:
                raise RpcRejectedError(
                    grpc.StatusCode.INVALID_ARGUMENT, "field 'lsn' has invalid value '0/0'"
                )
            self._resolve(ids)
            if self.faults.lease_code is not None:
                raise RpcRejectedError(
                    self.faults.lease_code,
                    "lease not granted: LSN is behind the GC cutoff"
                    if self.faults.lease_code is grpc.StatusCode.FAILED_PRECONDITION
                    else f"injected fault: {self.faults.lease_code.name}",
                )
        except RpcRejectedError as rejected:
            await context.abort(rejected.code, rejected.message)
        key = (str(ids.tenant_id), str(ids.timeline_id), str(ids.shard), request.lsn)
        expires = datetime.datetime.now(datetime.UTC) + self.lease_length
        expires = max(expires, self.leases.get(key, expires))
        self.leases[key] = expires
        response = pb.LeaseLsnResponse()
        response.expires.FromDatetime(expires)
        return response

    def generic_handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """Handlers for every RPC of the service: two real ones, UNIMPLEMENTED for the rest."""
        implemented: dict[str, Callable[..., Any]] = {
            "GetBaseBackup": self.get_base_backup,
            "LeaseLsn": self.lease_lsn,
        }
        handlers: dict[str, Handler] = {}
        for method in SERVICE_DESCRIPTOR.methods:
            behaviour = implemented.get(method.name) or _unimplemented(method.name)
            handlers[method.name] = _handler(
                method.client_streaming,
                method.server_streaming,
                behaviour,
                GetMessageClass(method.input_type).FromString,
                _serialize,
            )
        return grpc.method_handlers_generic_handler(SERVICE, handlers)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


def _enum_text(value: int) -> str:
    try:
        return pb.BaseBackupCompression.Name(value)
    except ValueError:
        return str(value)


def _unimplemented(name: str) -> Callable[..., Awaitable[None]]:
    async def unimplemented(request: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, f"{name} is not implemented by the stand-in"
        )

    return unimplemented


# --- the server --------------------------------------------------------------------------------


@dataclass
class GrpcStandIn:
    """A running stand-in: the server, the port it got, and its servicer (for inspection)."""

    server: grpc.aio.Server
    host: str
    port: int
    service: PageServiceStandIn

    @property
    def url(self) -> str:
        """The `grpc_url` neon_local would put into a spec for this listener."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"grpc://no_user@{host}:{self.port}"

    async def stop(self, grace: float | None = None) -> None:
        await self.server.stop(grace)


async def start_grpc_stand_in(
    store: TimelineStore,
    host: str,
    port: int,
    *,
    public_key: bytes | Path | None = None,
    faults: GrpcFaults | None = None,
    lease_length: datetime.timedelta = DEFAULT_LEASE_LENGTH,
) -> GrpcStandIn:
    """Build, bind and start the stand-in. `port` 0 picks a free port (see `.port`).

    `public_key` turns JWT mode on: PEM bytes, a PEM file or a directory of them. Without it
    the listener trusts every caller and ignores `authorization`.
    """
    auth = JwtVerifier.coerce(public_key)
    service = PageServiceStandIn(
        store, auth=auth, faults=faults or GrpcFaults(), lease_length=lease_length
    )
    server = grpc.aio.server(interceptors=[_HeaderInterceptor(service)], options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers([service.generic_handler()])
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from None
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    log.info("gRPC pageserver stand-in listening on %s:%d", host, bound)
    return GrpcStandIn(server, host, bound, service)


async def serve_grpc(
    store: TimelineStore,
    host: str,
    port: int,
    *,
    public_key: bytes | Path | None = None,
    faults: GrpcFaults | None = None,
) -> grpc.aio.Server:
    """Start the stand-in and return the running server (`compute-dev storage` uses this).

    Pass an explicit port: with 0 the chosen port is only known through
    `start_grpc_stand_in`, which returns it.
    """
    stand_in = await start_grpc_stand_in(store, host, port, public_key=public_key, faults=faults)
    return stand_in.server
