"""From a ComputeSpec to the facts the storage layer needs: `ParsedSpec`. Pure, no I/O.

A spec can say where its pageservers are in three ways, newest first: the per-shard
`pageserver_connection_info`, the legacy comma-separated `pageserver_connstring` (+
`shard_stripe_size`), or the `neon.pageserver_connstring` setting in `cluster.settings`. The first
one present wins, without cross-checking the others, exactly as upstream. Safekeepers, tenant and
timeline ids and the endpoint-storage address have similar setting fallbacks. Errors use
upstream's texts so operators see the messages they know, plus the field they concern.

Resolution is the one place that decides whether a spec can start: the shard map is walked once
(every shard present, each with a pageserver, shard 0 with a URL for the preferred protocol),
the catalog parts are checked once (`catalog_checks`), and the result carries everything later
steps need, so that none of them re-reads the raw spec for these facts: the pageserver URLs for
the basebackup and the LSN leases, and what `postgresql.conf`'s Neon block says about the
pageservers (`PostgresPageservers`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TypeVar

from compute_ctl.errors import SpecError
from compute_ctl.spec.catalog_checks import CheckedCatalog, check_catalog, check_rename_target
from compute_ctl.spec.hostport import parse_host_port
from compute_ctl.spec.models import (
    ComputeSpec,
    PageserverConnectionInfo,
    PageserverProtocol,
    PageserverShardConnectionInfo,
    PageserverShardInfo,
    find_option,
)
from compute_ctl.spec.types import (
    ShardIndex,
    TenantId,
    TimelineId,
    effective_shard_count,
    hex_decode_error,
)

CONNINFO_FIELD = "pageserver_connection_info"


def setting_path(name: str) -> str:
    """The field path of a GUC inside `cluster.settings`, for error messages."""
    return f'cluster.settings["{name}"]'


@dataclass(frozen=True)
class ShardPageservers:
    """One shard of the map, in shard order, with its pageservers (at least one)."""

    index: ShardIndex
    pageservers: tuple[PageserverShardConnectionInfo, ...]

    def url(self, position: int, protocol: PageserverProtocol) -> str:
        """The URL of the `position`th pageserver for `protocol`, with upstream's error text.

        A missing URL is a configuration error: the same request can never succeed."""
        pageserver = self.pageservers[position]
        url = pageserver.grpc_url if protocol is PageserverProtocol.GRPC else pageserver.libpq_url
        if url is None:
            name = f"{protocol.value}_url"
            raise SpecError(
                f'{CONNINFO_FIELD}.shards["{self.index}"].pageservers[{position}].{name}',
                f"no {name} for shard {self.index}",
            )
        return url


@dataclass(frozen=True)
class PostgresPageservers:
    """What `postgresql.conf`'s Neon block says about the pageservers.

    Taken from the spec's own fields (`pageserver_connection_info`, else the legacy
    `pageserver_connstring` and `shard_stripe_size`), never from the `cluster.settings`
    fallbacks, which reach Postgres through the settings block anyway. Only libpq URLs are ever
    given to Postgres; gRPC URLs and `prefer_protocol` concern compute_ctl alone.
    """

    from_conninfo: bool
    """Whether the facts come from `pageserver_connection_info` (else the legacy fields)."""
    stripe_size: int | None
    connstring: str | None
    """The unquoted `neon.pageserver_connstring`: with `pageserver_connection_info`, the first
    pageserver's libpq URL of every shard in shard order, or None if any shard lacks one (then
    Postgres gets no connstring at all rather than a partial shard map)."""


@dataclass(frozen=True)
class ParsedSpec:
    """A spec plus the facts resolved from it. `spec` is kept untouched: the postgresql.conf
    renderer works from the raw spec for everything but the pageservers."""

    spec: ComputeSpec
    tenant_id: TenantId
    timeline_id: TimelineId
    pageserver_conninfo: PageserverConnectionInfo
    shards: tuple[ShardPageservers, ...]
    postgres_pageservers: PostgresPageservers
    safekeeper_connstrings: tuple[str, ...]
    storage_auth_token: str | None
    endpoint_storage_addr: str | None
    endpoint_storage_token: str | None
    catalog: CheckedCatalog | None
    """The checked catalog parts; None when `skip_pg_catalog_updates` says no catalog step runs."""

    def __repr__(self) -> str:  # secrets stay out of logs
        return (
            f"ParsedSpec(tenant_id={self.tenant_id}, timeline_id={self.timeline_id}, "
            f"shard_count={self.pageserver_conninfo.shard_count}, "
            f"safekeepers={list(self.safekeeper_connstrings)})"
        )

    @property
    def protocol(self) -> PageserverProtocol:
        """The protocol compute_ctl talks to the pageservers in (basebackup and leases)."""
        return self.pageserver_conninfo.prefer_protocol

    def shard_url(self, shard_number: int, protocol: PageserverProtocol) -> str:
        """The first pageserver's URL of one shard."""
        return self.shards[shard_number].url(0, protocol)

    def basebackup_url(self) -> tuple[PageserverProtocol, str]:
        """Shard 0's URL for the protocol the spec prefers (that is where basebackups come
        from). Resolution has checked that it exists."""
        return self.protocol, self.shard_url(0, self.protocol)

    def lease_targets(self) -> list[tuple[ShardIndex, str]]:
        """Every listed pageserver of every shard, with its URL for the preferred protocol:
        where a static compute leases its LSN. A pageserver without one is a SpecError."""
        return [
            (shard.index, shard.url(position, self.protocol))
            for shard in self.shards
            for position in range(len(shard.pageservers))
        ]


def shard_map(conninfo: PageserverConnectionInfo) -> tuple[ShardPageservers, ...]:
    """Every shard of the map in shard order, each with at least one pageserver.

    Upstream accepts a map with a shard missing and fails (or panics) later, writing
    postgresql.conf; we refuse it while resolving, with the texts of that later failure.
    """
    shards = []
    for number in range(effective_shard_count(conninfo.shard_count)):
        index = ShardIndex(number, conninfo.shard_count)
        info = conninfo.shards.get(index)
        if info is None:
            raise SpecError(
                CONNINFO_FIELD, f"shard {index} missing from pageserver_connection_info shard map"
            )
        if not info.pageservers:
            raise SpecError(
                CONNINFO_FIELD,
                f"shard {index} in pageserver_connection_info has an empty pageservers list: "
                "must have at least one pageserver",
            )
        shards.append(ShardPageservers(index, tuple(info.pageservers)))
    return tuple(shards)


def postgres_pageservers(spec: ComputeSpec) -> PostgresPageservers:
    """The Neon block's pageserver facts from the spec's own fields (see PostgresPageservers);
    SpecError for a shard map Postgres' settings cannot be written from."""
    info = spec.pageserver_connection_info
    if info is None:
        return PostgresPageservers(
            from_conninfo=False,
            stripe_size=spec.shard_stripe_size,
            connstring=spec.pageserver_connstring,
        )
    urls = [shard.pageservers[0].libpq_url for shard in shard_map(info)]
    connstring = None if None in urls else ",".join(url for url in urls if url is not None)
    return PostgresPageservers(
        from_conninfo=True, stripe_size=info.stripe_size, connstring=connstring
    )


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


def _check_logs_export_host(spec: ComputeSpec) -> None:
    if spec.logs_export_host is not None:
        try:
            parse_host_port(spec.logs_export_host)
        except ValueError as exc:
            raise SpecError("logs_export_host", str(exc)) from None


def _catalog(spec: ComputeSpec) -> CheckedCatalog | None:
    """The catalog parts, checked unless the catalog step will not run. Upstream only finds
    these problems while applying; refused up front, a bad spec never takes a compute down."""
    if spec.skip_pg_catalog_updates:
        return None
    return check_catalog(spec)


def _validate_safekeepers(connstrings: tuple[str, ...], field: str) -> None:
    if not connstrings:
        raise SpecError(field, "safekeeper_connstrings is empty")
    ordered = sorted(connstrings, key=lambda s: s.encode())
    for left, right in itertools.pairwise(ordered):
        if left == right:
            raise SpecError(field, f"duplicate entry in safekeeper_connstrings: {left}!")


def resolve(spec: ComputeSpec) -> ParsedSpec:
    """Resolve a spec in upstream's order; the first problem wins and is raised as SpecError.

    What upstream only finds out while starting or re-configuring comes last, in this order:
    a rename without a new name, a shard map Postgres' settings cannot be written from, a bad
    `logs_export_host`, the catalog parts, and shard 0 without a URL for the preferred protocol
    (where the basebackup would come from)."""
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
    for index, op in enumerate(spec.delta_operations or ()):
        check_rename_target(op, index)
    for_postgres = postgres_pageservers(spec)
    _check_logs_export_host(spec)
    catalog = _catalog(spec)
    parsed = ParsedSpec(
        spec=spec,
        tenant_id=tenant_id,
        timeline_id=timeline_id,
        pageserver_conninfo=conninfo,
        shards=shard_map(conninfo),
        postgres_pageservers=for_postgres,
        safekeeper_connstrings=safekeepers,
        storage_auth_token=spec.storage_auth_token,
        endpoint_storage_addr=endpoint_storage_addr,
        endpoint_storage_token=endpoint_storage_token,
        catalog=catalog,
    )
    parsed.basebackup_url()  # a start would fail there: refuse the spec instead
    return parsed
