"""ParsedSpec resolution: worked examples of specs and their resolution, and more."""

from __future__ import annotations

from typing import Any

import pytest

from compute_ctl.errors import SpecError
from compute_ctl.spec.load import validate
from compute_ctl.spec.models import ComputeSpec, PageserverProtocol
from compute_ctl.spec.resolve import ParsedSpec, parse_stripe_size, resolve
from compute_ctl.spec.types import ShardIndex
from tests.support.specs import TENANT, fixture, minimal_spec, settings, storage_spec


def parse(data: dict[str, Any]) -> ParsedSpec:
    return resolve(validate(ComputeSpec, data))


def fails(data: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse(data)
    return info.value


def libpq_urls(parsed: ParsedSpec) -> dict[str, str | None]:
    return {
        str(k): v.pageservers[0].libpq_url for k, v in parsed.pageserver_conninfo.shards.items()
    }


def test_1_gucs_only_fixture() -> None:
    parsed = parse(fixture("spec-gucs-only.json"))
    info = parsed.pageserver_conninfo
    assert (info.shard_count, info.stripe_size, info.prefer_protocol) == (0, None, "libpq")
    assert libpq_urls(parsed) == {"0000": "host=127.0.0.1 port=6401"}
    assert parsed.safekeeper_connstrings == ("127.0.0.1:7502", "127.0.0.1:7503", "127.0.0.1:7501")
    assert parsed.tenant_id == "3c9e5a1f0b7d42e6a8f1c2d3e4b5a697"
    assert parsed.timeline_id == "7a1b2c3d4e5f60718293a4b5c6d7e8f9"


def test_2_duplicate_safekeeper_in_gucs() -> None:
    err = fails(fixture("spec-duplicate-safekeeper.json"))
    assert str(err) == "duplicate entry in safekeeper_connstrings: 127.0.0.1:7501!"
    assert err.field == 'cluster.settings["neon.safekeepers"]'


def test_3_single_connstring_drops_stripe() -> None:
    parsed = parse(storage_spec(shard_stripe_size=2048, safekeeper_connstrings=["a:1"]))
    assert parsed.pageserver_conninfo.shard_count == 0
    assert parsed.pageserver_conninfo.stripe_size is None
    assert libpq_urls(parsed) == {"0000": "postgres://no_user@ps:64000"}


def test_4_two_shards_need_a_stripe() -> None:
    err = fails(storage_spec(pageserver_connstring="postgres://p0,postgres://p1"))
    assert str(err) == "2 shards but no stripe_size"
    assert err.field == "pageserver_connstring"


def test_5_two_shards_with_stripe() -> None:
    parsed = parse(
        storage_spec(pageserver_connstring="postgres://p0,postgres://p1", shard_stripe_size=32768)
    )
    info = parsed.pageserver_conninfo
    assert (info.shard_count, info.stripe_size, info.prefer_protocol) == (2, 32768, "libpq")
    assert libpq_urls(parsed) == {"0002": "postgres://p0", "0102": "postgres://p1"}


def test_6_guc_connstring_with_guc_stripe() -> None:
    spec = minimal_spec(tenant_id=TENANT, timeline_id=TENANT, safekeeper_connstrings=["a:1"])
    spec["cluster"]["settings"] = settings(
        neon__pageserver_connstring="a,b,c,d", neon__stripe_size="2048"
    )
    parsed = parse(spec)
    assert parsed.pageserver_conninfo.stripe_size == 2048
    assert list(libpq_urls(parsed)) == ["0004", "0104", "0204", "0304"]


def test_7_bad_guc_stripe_fails_even_for_one_shard() -> None:
    spec = storage_spec(pageserver_connstring=None)
    spec["cluster"]["settings"] = settings(
        neon__pageserver_connstring="a", neon__stripe_size="16MB"
    )
    err = fails(spec)
    assert str(err) == "invalid digit found in string"
    assert err.field == 'cluster.settings["neon.stripe_size"]'


def test_8_connection_info_wins_over_connstring() -> None:
    conninfo = {
        "shard_count": 0,
        "shards": {"0000": {"pageservers": [{"libpq_url": "postgres://new:1"}]}},
    }
    parsed = parse(storage_spec(pageserver_connection_info=conninfo))
    assert libpq_urls(parsed) == {"0000": "postgres://new:1"}


def test_9_no_pageserver_information() -> None:
    err = fails(storage_spec(pageserver_connstring=None))
    assert str(err) == "pageserver connection information should be provided"


def test_10_primary_needs_safekeepers() -> None:
    err = fails(storage_spec(safekeeper_connstrings=[]))
    assert str(err) == "safekeeper connstrings should be provided"


@pytest.mark.parametrize("mode", ["Replica", {"Static": "0/1"}])
def test_11_replica_and_static_need_no_safekeepers(mode: object) -> None:
    parsed = parse(storage_spec(safekeeper_connstrings=[], mode=mode))
    assert parsed.safekeeper_connstrings == ()


def test_12_tenant_required() -> None:
    err = fails(storage_spec(tenant_id=None))
    assert (err.field, str(err)) == ("tenant_id", "tenant id should be provided")


def test_12b_timeline_required() -> None:
    err = fails(storage_spec(timeline_id=None))
    assert (err.field, str(err)) == ("timeline_id", "timeline id should be provided")


def test_13_placeholder_tenant_in_settings() -> None:
    err = fails(fixture("config-placeholder-tenant.json")["spec"])
    assert str(err) == "invalid tenant id"
    assert (
        err.one_line()
        == 'cluster.settings["neon.tenant_id"]: invalid tenant id: Odd number of digits'
    )


def test_13b_bad_timeline_in_settings() -> None:
    spec = storage_spec(timeline_id=None)
    spec["cluster"]["settings"] = settings(neon__timeline_id="zz" * 16)
    err = fails(spec)
    assert str(err) == "invalid timeline id"


def test_14_empty_tenant_is_a_decode_error() -> None:
    err = fails(storage_spec(tenant_id=""))
    assert err.field == "tenant_id"
    assert "Invalid string length" in str(err)


def test_15_duplicate_safekeepers() -> None:
    err = fails(storage_spec(safekeeper_connstrings=["b:1", "a:1", "b:1"]))
    assert str(err) == "duplicate entry in safekeeper_connstrings: b:1!"
    assert err.field == "safekeeper_connstrings"


def test_15b_order_is_kept() -> None:
    parsed = parse(storage_spec(safekeeper_connstrings=["b:1", "a:1", "c:1"]))
    assert parsed.safekeeper_connstrings == ("b:1", "a:1", "c:1")


def test_16_replica_duplicates_not_validated() -> None:
    parsed = parse(storage_spec(safekeeper_connstrings=["b:1", "b:1"], mode="Replica"))
    assert parsed.safekeeper_connstrings == ("b:1", "b:1")


def test_17_empty_connstring_is_one_unsharded_shard() -> None:
    parsed = parse(storage_spec(pageserver_connstring=""))
    assert libpq_urls(parsed) == {"0000": ""}


def test_18_missing_shards_are_refused_up_front() -> None:
    # Upstream accepts this and fails later writing postgresql.conf; we refuse it at once.
    conninfo: dict[str, Any] = {"shard_count": 2, "stripe_size": None, "shards": {}}
    err = fails(storage_spec(pageserver_connection_info=conninfo))
    assert err.field == "pageserver_connection_info"
    assert str(err) == "shard 0002 missing from pageserver_connection_info shard map"


def test_19_grpc_preferred_without_grpc_url() -> None:
    conninfo = {
        "shard_count": 0,
        "shards": {"0000": {"pageservers": [{"libpq_url": "postgres://ps:1"}]}},
        "prefer_protocol": "grpc",
    }
    # Refused by resolution itself, as `spec check` refuses it: `-S` and /configure then fail
    # before anything is touched (they used to wipe PGDATA and then fail fetching).
    err = fails(storage_spec(pageserver_connection_info=conninfo))
    assert str(err) == "no grpc_url for shard 0000"
    assert err.field == 'pageserver_connection_info.shards["0000"].pageservers[0].grpc_url'


def test_libpq_preferred_without_libpq_url() -> None:
    conninfo = {
        "shard_count": 0,
        "shards": {"0000": {"pageservers": [{"grpc_url": "grpc://ps:2"}]}},
    }
    err = fails(storage_spec(pageserver_connection_info=conninfo))
    assert str(err) == "no libpq_url for shard 0000"
    assert err.field == 'pageserver_connection_info.shards["0000"].pageservers[0].libpq_url'


def test_grpc_only_pageservers_resolve_without_a_postgres_connstring() -> None:
    """gRPC preferred and no libpq URL anywhere: startable; Postgres gets no connstring."""
    conninfo = {
        "shard_count": 0,
        "shards": {"0000": {"pageservers": [{"grpc_url": "grpc://ps:2"}]}},
        "prefer_protocol": "grpc",
    }
    parsed = parse(storage_spec(pageserver_connection_info=conninfo))
    assert parsed.basebackup_url() == (PageserverProtocol.GRPC, "grpc://ps:2")
    assert parsed.postgres_pageservers.connstring is None


def test_lease_targets_walk_every_pageserver_of_every_shard() -> None:
    first = {"pageservers": [{"libpq_url": "postgres://a:1"}, {"libpq_url": "postgres://a2:1"}]}
    second = {"pageservers": [{"libpq_url": "postgres://b:1"}, {"grpc_url": "grpc://b2:2"}]}
    conninfo = {"shard_count": 2, "stripe_size": 8, "shards": {"0102": second, "0002": first}}
    parsed = parse(storage_spec(pageserver_connection_info=conninfo))
    with pytest.raises(SpecError, match="no libpq_url for shard 0102") as info:
        parsed.lease_targets()
    assert info.value.field == 'pageserver_connection_info.shards["0102"].pageservers[1].libpq_url'
    second["pageservers"][1]["libpq_url"] = "postgres://b2:1"
    parsed = parse(storage_spec(pageserver_connection_info=conninfo))
    assert [(str(shard), url) for shard, url in parsed.lease_targets()] == [
        ("0002", "postgres://a:1"),
        ("0002", "postgres://a2:1"),
        ("0102", "postgres://b:1"),
        ("0102", "postgres://b2:1"),
    ]


def test_basebackup_url_uses_shard_zero_and_preferred_protocol() -> None:
    shard = {"pageservers": [{"libpq_url": "postgres://a:1", "grpc_url": "grpc://a:2"}]}
    other = {"pageservers": [{"libpq_url": "postgres://b:1", "grpc_url": "grpc://b:2"}]}
    conninfo = {
        "shard_count": 2,
        "stripe_size": 2048,
        "shards": {"0102": other, "0002": shard},
        "prefer_protocol": "grpc",
    }
    parsed = parse(storage_spec(pageserver_connection_info=conninfo))
    assert parsed.basebackup_url() == (PageserverProtocol.GRPC, "grpc://a:2")
    assert parsed.shard_url(1, PageserverProtocol.LIBPQ) == "postgres://b:1"


def test_empty_pageservers_list_is_an_error_not_a_crash() -> None:
    conninfo = {"shard_count": 0, "shards": {"0000": {"pageservers": []}}}
    err = fails(storage_spec(pageserver_connection_info=conninfo))
    assert "must have at least one pageserver" in str(err)


def test_catalog_problems_are_refused_when_resolving() -> None:
    roles = [{"name": "r", "encrypted_password": "hunter2"}]
    spec = storage_spec(cluster={"roles": roles, "databases": []})
    assert fails(spec).field == "cluster.roles[0].encrypted_password"
    parse({**spec, "skip_pg_catalog_updates": True})  # the catalog step will not run


def test_catalog_parts_are_checked_once_in_resolution() -> None:
    """The checked roles and databases travel in the ParsedSpec; the catalog step uses them."""
    roles = [{"name": "r", "encrypted_password": "0123456789abcdef0123456789ABCDEF"}]
    databases = [
        {
            "name": "d",
            "owner": "r",
            "options": [{"name": "CONNECTION LIMIT", "value": "5", "vartype": "integer"}],
        }
    ]
    spec = storage_spec(cluster={"roles": roles, "databases": databases})
    catalog = parse(spec).catalog
    assert catalog is not None
    assert [(role.name, role.password) for role in catalog.roles] == [
        ("r", "md5" + "0123456789abcdef0123456789abcdef")
    ]
    assert [(o.keyword, o.value) for o in catalog.databases[0].options] == [("CONNECTION LIMIT", 5)]
    assert parse({**spec, "skip_pg_catalog_updates": True}).catalog is None


def test_rename_without_new_name_is_refused() -> None:
    err = fails(storage_spec(delta_operations=[{"action": "rename_role", "name": "a"}]))
    assert err.field == "delta_operations[0].new_name"


def test_other_delta_actions_are_ignored() -> None:
    parse(storage_spec(delta_operations=[{"action": "frobnicate", "name": "a"}]))


def test_endpoint_storage_fallbacks() -> None:
    spec = storage_spec(endpoint_storage_token="tok")
    spec["cluster"]["settings"] = settings(
        neon__endpoint_storage_addr="127.0.0.1:9993", neon__endpoint_storage_token="guc-tok"
    )
    parsed = parse(spec)
    assert parsed.endpoint_storage_addr == "127.0.0.1:9993"
    assert parsed.endpoint_storage_token == "tok"


def test_safekeeper_guc_keeps_generation_prefix() -> None:
    spec = storage_spec(safekeeper_connstrings=[])
    spec["cluster"]["settings"] = settings(neon__safekeepers="g#3:a:1,b:1")
    assert parse(spec).safekeeper_connstrings == ("g#3:a:1", "b:1")


def test_secrets_stay_out_of_repr() -> None:
    parsed = parse(storage_spec(storage_auth_token="s3cr3t-token"))
    assert "s3cr3t" not in repr(parsed)
    assert "s3cr3t" not in repr(parsed.spec)


@pytest.mark.parametrize(
    ("text", "value", "problem"),
    [
        ("2048", 2048, None),
        ("+7", 7, None),
        ("", None, "cannot parse integer from empty string"),
        ("+", None, "invalid digit found in string"),
        (" 1", None, "invalid digit found in string"),
        ("-1", None, "invalid digit found in string"),
        ("4294967296", None, "number too large to fit in target type"),
    ],
)
def test_stripe_size_guc_parsing(text: str, value: int | None, problem: str | None) -> None:
    if problem is None:
        assert parse_stripe_size(text) == value
    else:
        with pytest.raises(ValueError, match=problem):
            parse_stripe_size(text)


def test_shard_keys_are_typed() -> None:
    parsed = parse(
        storage_spec(pageserver_connstring="postgres://p0,postgres://p1", shard_stripe_size=8)
    )
    assert ShardIndex(1, 2) in parsed.pageserver_conninfo.shards


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("collector.example.com", "expected host:port: the port is missing"),
        ("collector:0", "expected host:port: the port must be a number from 1 to 65535"),
        ('c.example.com:514"\n*.* stop', "expected host:port: the port must be a number"),
        ('c"x:514', "expected host:port: the host must be an IP address or a DNS name"),
        ("[::1:514", "expected host:port: unclosed '[' around an IPv6 address"),
    ],
)
def test_bad_logs_export_host_is_refused_with_the_spec(value: str, problem: str) -> None:
    error = fails(storage_spec(logs_export_host=value))
    assert error.field == "logs_export_host"
    assert error.problem.startswith(problem)
    assert value not in error.problem


@pytest.mark.parametrize("value", ["collector.example.com:6514", "10.0.0.1:514", "[::1]:514"])
def test_good_logs_export_host_resolves(value: str) -> None:
    assert parse(storage_spec(logs_export_host=value)).spec.logs_export_host == value
