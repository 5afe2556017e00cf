"""The pageserver's gRPC `page_api`, client side: basebackup and LSN leases.

compute_ctl uses gRPC instead of libpq when the spec prefers it (`prefer_protocol = grpc`). Like
the Rust compute_ctl, every call opens its own plaintext HTTP/2 channel, sets no deadline, no
keepalive and no gRPC message compression (the tarball itself is gzip-compressed at the
pageserver's choice of request field), and sends the `neon-*` routing headers plus the storage
token on every RPC.

Failures become `StorageError`s that name the pageserver (its URL without any password) and the
cause, never the token. Whether an error is `transient` follows the status code: codes that say
"the pageserver or the timeline is not ready (yet)" or "something broke" are transient; codes
that say the request itself is wrong or not allowed are not, because sending the same request
with the same token again cannot succeed.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import grpc
import grpc.aio

from compute_ctl.errors import StorageError
from compute_ctl.spec.types import Lsn, ShardIndex, TenantId, TimelineId
from compute_ctl.storage.grpc_url import GrpcTarget
from compute_ctl.storage.proto import page_service_pb2 as pb
from compute_ctl.storage.sink import ChunkSink, feed

SERVICE = pb.DESCRIPTOR.services_by_name["PageService"].full_name
GET_BASE_BACKUP = f"/{SERVICE}/GetBaseBackup"
LEASE_LSN = f"/{SERVICE}/LeaseLsn"

MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024
"""tonic's default decode limit, also grpcio's default: basebackup chunks are 256 KiB."""

CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
    ("grpc.max_send_message_length", -1),
    # The pageserver is reached directly, as tonic does; an http_proxy in the environment of
    # the compute must not reroute (or break) the storage connection.
    ("grpc.enable_http_proxy", 0),
)

TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,  # not active yet, shutting down, connection refused
        grpc.StatusCode.NOT_FOUND,  # the timeline may not be attached here yet
        grpc.StatusCode.INTERNAL,  # tenant broken, wait_lsn timeout, stream failure
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DATA_LOSS,
    }
)
"""Status codes worth retrying. Everything else (INVALID_ARGUMENT, UNAUTHENTICATED,
PERMISSION_DENIED, FAILED_PRECONDITION, UNIMPLEMENTED, OUT_OF_RANGE) describes the request
or the token, which a retry sends unchanged."""


def request_metadata(
    tenant_id: TenantId, timeline_id: TimelineId, shard: ShardIndex, token: str | None
) -> list[tuple[str, str]]:
    """The headers every page_api RPC carries; `authorization` only with a token."""
    metadata = [
        ("neon-tenant-id", str(tenant_id)),
        ("neon-timeline-id", str(timeline_id)),
        ("neon-shard-id", str(shard)),
    ]
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    return metadata


def _status_error(
    target: GrpcTarget, what: str, error: grpc.aio.AioRpcError, token: str | None
) -> StorageError:
    code = error.code()
    details = error.details() or "no details"
    if token:
        details = details.replace(token, "<token>")
    return StorageError(
        target.url,
        f"{what} from pageserver {target.url} failed: {code.name}: {details}",
        transient=code in TRANSIENT_CODES,
    )


async def _connect(channel: grpc.aio.Channel, target: GrpcTarget) -> None:
    """Wait until the HTTP/2 connection is up, failing (transiently) instead of waiting for
    a pageserver that refuses connections: grpc would otherwise keep retrying quietly."""
    state = channel.get_state(try_to_connect=True)
    while state is not grpc.ChannelConnectivity.READY:
        if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
            raise StorageError(
                target.url,
                f"could not connect to pageserver {target.url} ({target.address})",
                transient=True,
            )
        await channel.wait_for_state_change(state)
        state = channel.get_state(try_to_connect=True)


async def grpc_basebackup(
    url: str,
    tenant_id: TenantId,
    timeline_id: TimelineId,
    lsn: Lsn | None,
    *,
    replica: bool,
    token: str | None,
    sink: ChunkSink,
    shard: ShardIndex | None = None,
    on_connected: Callable[[], None] | None = None,
) -> int:
    """Stream a gzip basebackup of shard 0 into `sink` and return the compressed bytes received.

    `lsn` None or 0/0 asks for the latest LSN; `replica` is set for every mode but Primary.
    `shard` is the `neon-shard-id` header, shard 0 with the tenant's shard count (default
    `0000`, unsharded). `on_connected` runs once the channel is up (the connect-time metric).
    Errors raised by `sink.feed` propagate unchanged; the call is cancelled with the channel.
    """
    target = GrpcTarget.parse(url)
    request = pb.GetBaseBackupRequest(
        lsn=int(lsn) if lsn else 0,
        replica=replica,
        full=False,
        compression=pb.BASE_BACKUP_COMPRESSION_GZIP,
    )
    metadata = request_metadata(
        tenant_id, timeline_id, shard if shard is not None else ShardIndex.unsharded(), token
    )
    received = 0
    async with grpc.aio.insecure_channel(target.address, options=CHANNEL_OPTIONS) as channel:
        await _connect(channel, target)
        if on_connected is not None:
            on_connected()
        method = channel.unary_stream(
            GET_BASE_BACKUP,
            request_serializer=pb.GetBaseBackupRequest.SerializeToString,
            response_deserializer=pb.GetBaseBackupResponseChunk.FromString,
        )
        try:
            async for response in method(request, metadata=metadata):
                chunk: bytes = response.chunk
                received += len(chunk)
                await feed(sink, chunk)
        except grpc.aio.AioRpcError as exc:
            raise _status_error(target, "basebackup", exc, token) from None
    return received


async def grpc_lease_lsn(
    url: str,
    tenant_id: TenantId,
    timeline_id: TimelineId,
    shard: ShardIndex,
    lsn: Lsn,
    *,
    token: str | None,
) -> datetime.datetime | None:
    """Ask one pageserver to keep `lsn` readable on one shard; return when the lease expires
    (UTC), or None when it is not granted (FAILED_PRECONDITION: behind the GC cutoff), which
    is permanent. Every other failure is a `StorageError`."""
    target = GrpcTarget.parse(url)
    metadata = request_metadata(tenant_id, timeline_id, shard, token)
    async with grpc.aio.insecure_channel(target.address, options=CHANNEL_OPTIONS) as channel:
        await _connect(channel, target)
        method = channel.unary_unary(
            LEASE_LSN,
            request_serializer=pb.LeaseLsnRequest.SerializeToString,
            response_deserializer=pb.LeaseLsnResponse.FromString,
        )
        try:
            response: pb.LeaseLsnResponse = await method(
                pb.LeaseLsnRequest(lsn=int(lsn)), metadata=metadata
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.FAILED_PRECONDITION:
                return None
            raise _status_error(target, "lsn lease", exc, token) from None
    if not response.HasField("expires"):
        raise StorageError(
            target.url, f"lsn lease from pageserver {target.url}: no expiry", transient=True
        )
    return response.expires.ToDatetime(tzinfo=datetime.UTC)
