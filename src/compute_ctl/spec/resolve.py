"""From a ComputeSpec to the facts the storage layer needs: `ParsedSpec`. Pure, no I/O.

A spec can say where its pageservers are in three ways, newest first: the per-shard
`pageserver_connection_info`, the legacy comma-separated `pageserver_connstring` (+
`shard_stripe_size`), or the `neon.pageserver_connstring` setting in `cluster.settings`. The first
one present wins, without cross-checking the others, exactly as upstream. Safekeepers, tenant and
timeline ids and the endpoint-storage address have similar setting fallbacks. Errors use
upstream's texts so operators see the messages they know, plus the field they concern.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TypeVar

from compute_ctl.errors import ConfigError, SpecError
from compute_ctl.postgres.conf import pageserver_connstring_for_postgres
from compute_ctl.spec.hostport import parse_host_port
from compute_ctl.spec.models import (
    ComputeSpec,
    PageserverConnectionInfo,
    PageserverProtocol,
    PageserverShardConnectionInfo,
    PageserverShardInfo,
    find_option,
)
from compute_ctl.spec.types import ShardIndex, TenantId, TimelineId, hex_decode_error

RENAME_ACTIONS = ("rename_db", "rename_role")


def setting_path(name: str) -> str:
    """The field path of a GUC inside `cluster.settings`, for error messages."""
    return f'cluster.settings["{name}"]'


@dataclass(frozen=True)
class ParsedSpec:
    """A spec plus the storage facts resolved from it. `spec` is kept untouched: the
    postgresql.conf renderer works from the raw spec, not from the resolved values."""

    spec: ComputeSpec
    tenant_id: TenantId
    timeline_id: TimelineId
    pageserver_conninfo: PageserverConnectionInfo
    safekeeper_connstrings: tuple[str, ...]
    storage_auth_token: str | None
    endpoint_storage_addr: str | None
    endpoint_storage_token: str | None

    def __repr__(self) -> str:  # secrets stay out of logs
        return (
            f"ParsedSpec(tenant_id={self.tenant_id}, timeline_id={self.timeline_id}, "
            f"shard_count={self.pageserver_conninfo.shard_count}, "
            f"safekeepers={list(self.safekeeper_connstrings)})"
        )

    def shard_url(self, shard_number: int, protocol: PageserverProtocol) -> str:
        return shard_url(self.pageserver_conninfo, shard_number, protocol)

    def basebackup_url(self) -> tuple[PageserverProtocol, str]:
        """Shard 0's URL for the protocol the spec prefers (that is where basebackups come
        from). gRPC preferred without a `grpc_url` is a configuration error, not retried."""
        protocol = self.pageserver_conninfo.prefer_protocol
        return protocol, self.shard_url(0, protocol)


def parse_stripe_size(text: str) -> int:
    """Rust's `u32::from_str` with its error texts: digits with one optional leading '+'."""
    digits = text[1:] if text.startswith("+") else text
    if not text:
        raise ValueError("cannot parse integer from empty string")
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ValueError("invalid digit found in string")
    value = int(digits)
    if value > 2**32 - 1:
        raise ValueError("number too large to fit in target type")
    return value


def from_connstr(connstr: str, stripe_size: int | None, field: str) -> PageserverConnectionInfo:
    """Legacy form: one libpq connstring per shard, comma-separated, in shard order.

    One part always means an unsharded tenant (a given stripe size is dropped); several parts
    need a stripe size.
    """
    parts = connstr.split(",")
    if len(parts) == 1:
        shards = {ShardIndex.unsharded(): _libpq_shard(parts[0])}
        return PageserverConnectionInfo(shard_count=0, stripe_size=None, shards=shards)
    if stripe_size is None:
        raise SpecError(field, f"{len(parts)} shards but no stripe_size")
    if len(parts) > 255:
        raise SpecError(field, "out of range integral type conversion attempted")
    count = len(parts)
    shards = {ShardIndex(i, count): _libpq_shard(part) for i, part in enumerate(parts)}
    return PageserverConnectionInfo(shard_count=count, stripe_size=stripe_size, shards=shards)


def _libpq_shard(url: str) -> PageserverShardInfo:
    return PageserverShardInfo(pageservers=[PageserverShardConnectionInfo(libpq_url=url)])


def shard_url(
    conninfo: PageserverConnectionInfo, shard_number: int, protocol: PageserverProtocol
) -> str:
    """The first pageserver's URL for one shard, with upstream's error texts."""
    index = ShardIndex(shard_number, conninfo.shard_count)
    info = conninfo.shards.get(index)
    field = "pageserver_connection_info.shards"
    if info is None:
        raise SpecError(field, f"shard connection info missing for shard {index}")
    if not info.pageservers:
        raise SpecError(f'{field}["{index}"].pageservers', "must have at least one pageserver")
    first = info.pageservers[0]
    url = first.grpc_url if protocol is PageserverProtocol.GRPC else first.libpq_url
    if url is None:
        # With prefer_protocol=grpc this is a configuration error: it is never retried.
        name = f"{protocol.value}_url"
        raise SpecError(f'{field}["{index}"].pageservers[0].{name}', f"no {name} for shard {index}")
    return url


def _pageserver_info(spec: ComputeSpec) -> PageserverConnectionInfo:
    if spec.pageserver_connection_info is not None:
        return spec.pageserver_connection_info
    if spec.pageserver_connstring is not None:
        return from_connstr(
            spec.pageserver_connstring, spec.shard_stripe_size, "pageserver_connstring"
        )
    settings = spec.cluster.settings
    guc = find_option(settings, "neon.pageserver_connstring")
    if guc is not None:
        stripe: int | None = None
        stripe_text = find_option(settings, "neon.stripe_size")
        if stripe_text is not None:
            try:
                stripe = parse_stripe_size(stripe_text)
            except ValueError as exc:
                raise SpecError(setting_path("neon.stripe_size"), str(exc)) from None
        return from_connstr(guc, stripe, setting_path("neon.pageserver_connstring"))
    raise SpecError(
        "pageserver_connection_info", "pageserver connection information should be provided"
    )


def _safekeepers(spec: ComputeSpec) -> tuple[tuple[str, ...], str]:
    if spec.safekeeper_connstrings:
        return tuple(spec.safekeeper_connstrings), "safekeeper_connstrings"
    if spec.mode.is_primary:
        guc = find_option(spec.cluster.settings, "neon.safekeepers")
        if guc is None:
            raise SpecError("safekeeper_connstrings", "safekeeper connstrings should be provided")
        return tuple(guc.split(",")), setting_path("neon.safekeepers")
    return (), "safekeeper_connstrings"


_Id = TypeVar("_Id", TenantId, TimelineId)


def _id_from_settings(
    spec: ComputeSpec, value: _Id | None, kind: type[_Id], field: str, what: str
) -> _Id:
    if value is not None:
        return value
    guc_name = f"neon.{field}"
    guc = find_option(spec.cluster.settings, guc_name)
    if guc is None:
        raise SpecError(field, f"{what} should be provided")
    problem = hex_decode_error(guc, 16)
    if problem is not None:
        raise SpecError(setting_path(guc_name), f"invalid {what}") from ValueError(problem)
    return kind(guc)


def _validate_delta_operations(spec: ComputeSpec) -> None:
    # Upstream crashes applying a rename without `new_name`; we refuse the spec instead.
    for i, op in enumerate(spec.delta_operations or ()):
        if op.action in RENAME_ACTIONS and op.new_name is None:
            raise SpecError(f"delta_operations[{i}].new_name", f"{op.action} needs a new_name")


def _validate_for_start(spec: ComputeSpec) -> None:
    """What upstream only finds out while starting or re-configuring (a shard map Postgres'
    settings cannot be written from; names, passwords and options the catalog step would
    refuse), refused up front so that a bad spec never takes a compute down."""
    try:
        pageserver_connstring_for_postgres(spec)
    except ConfigError as exc:
        raise SpecError("pageserver_connection_info", str(exc)) from None
    if spec.logs_export_host is not None:
        try:
            parse_host_port(spec.logs_export_host)
        except ValueError as exc:
            raise SpecError("logs_export_host", str(exc)) from None
    if not spec.skip_pg_catalog_updates and (
        spec.cluster.roles or spec.cluster.databases or spec.delta_operations
    ):
        # Imported here: the catalog layer loads psycopg, which a compute without a spec
        # (waiting for /configure) need not load at start-up.
        from compute_ctl.catalog.validate import check_spec  # noqa: PLC0415

        check_spec(spec)


def _validate_safekeepers(connstrings: tuple[str, ...], field: str) -> None:
    if not connstrings:
        raise SpecError(field, "safekeeper_connstrings is empty")
    ordered = sorted(connstrings, key=lambda s: s.encode())
    for left, right in itertools.pairwise(ordered):
        if left == right:
            raise SpecError(field, f"duplicate entry in safekeeper_connstrings: {left}!")


def resolve(spec: ComputeSpec) -> ParsedSpec:
    """Resolve a spec in upstream's order; the first problem wins and is raised as SpecError."""
    conninfo = _pageserver_info(spec)
    safekeepers, sk_field = _safekeepers(spec)
    tenant_id = _id_from_settings(spec, spec.tenant_id, TenantId, "tenant_id", "tenant id")
    timeline_id = _id_from_settings(
        spec, spec.timeline_id, TimelineId, "timeline_id", "timeline id"
    )
    settings = spec.cluster.settings
    endpoint_storage_addr = spec.endpoint_storage_addr
    if endpoint_storage_addr is None:
        endpoint_storage_addr = find_option(settings, "neon.endpoint_storage_addr")
    endpoint_storage_token = spec.endpoint_storage_token
    if endpoint_storage_token is None:
        endpoint_storage_token = find_option(settings, "neon.endpoint_storage_token")
    if spec.mode.is_primary:
        _validate_safekeepers(safekeepers, sk_field)
    _validate_delta_operations(spec)
    _validate_for_start(spec)
    return ParsedSpec(
        spec=spec,
        tenant_id=tenant_id,
        timeline_id=timeline_id,
        pageserver_conninfo=conninfo,
        safekeeper_connstrings=safekeepers,
        storage_auth_token=spec.storage_auth_token,
        endpoint_storage_addr=endpoint_storage_addr,
        endpoint_storage_token=endpoint_storage_token,
    )
