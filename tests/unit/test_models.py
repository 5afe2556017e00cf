"""Spec models: upstream's decoding rules, fixtures, and the round-trip property."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute_ctl.errors import SpecError
from compute_ctl.spec.load import load_compute_config, load_document, parse_json, validate
from compute_ctl.spec.models import (
    ComputeAudit,
    ComputeConfig,
    ComputeFeature,
    ComputeMode,
    ComputeSpec,
    ControlPlaneConfigResponse,
    PageserverProtocol,
)
from compute_ctl.spec.types import Lsn
from tests.support.paths import FIXTURES, UPSTREAM_FIXTURES
from tests.support.specs import TENANT, TIMELINE, minimal_spec


def spec_of(**fields: Any) -> ComputeSpec:
    return validate(ComputeSpec, minimal_spec(**fields))


def problem(data: Any, model: type[Any] = ComputeSpec) -> SpecError:
    with pytest.raises(SpecError) as info:
        validate(model, data)
    return info.value


def all_fixtures() -> list[Any]:
    """Ours, then upstream's when the shared reference folder is beside the clone (CI has it;
    a bare clone does not, and that case is skipped with the reason)."""
    ours: list[Any] = sorted(FIXTURES.glob("*.json"))
    if not UPSTREAM_FIXTURES.is_dir():
        reason = "upstream's fixtures not found: no ../shared/fixtures beside this clone"
        return [*ours, pytest.param(None, marks=pytest.mark.skip(reason=reason), id="upstream")]
    return ours + sorted(UPSTREAM_FIXTURES.glob("*.json"))


def fixture_id(path: Any) -> str:
    return f"{path.parent.parent.name}/{path.name}" if path is not None else "upstream"


@pytest.mark.parametrize("path", all_fixtures(), ids=fixture_id)
def test_every_fixture_loads(path: Any) -> None:
    document = load_document(path.read_bytes())
    spec = document.spec if isinstance(document, ComputeConfig) else document
    assert spec is not None
    assert spec.cluster.roles


def test_fixture_details() -> None:
    spec = load_document((FIXTURES / "spec-gucs-only.json").read_bytes())
    assert isinstance(spec, ComputeSpec)
    assert spec.suspend_timeout_seconds == 3600
    assert spec.mode == ComputeMode.primary()
    assert spec.cluster.databases[0].options is not None
    assert spec.pgbouncer_settings == {"default_pool_size": "17", "pool_mode": "transaction"}
    assert spec.remote_extensions is not None
    assert spec.remote_extensions.public_extensions == ["postgis"]
    ops = spec.delta_operations or []
    assert [(o.action, o.new_name) for o in ops][1] == ("rename_db", "Collated")


def test_compute_config_fixture_keeps_jwks() -> None:
    config = load_compute_config((FIXTURES / "config-placeholder-tenant.json").read_bytes())
    assert config.compute_ctl_config.jwks.keys[0]["crv"] == "Ed25519"


def test_required_fields() -> None:
    data = minimal_spec()
    del data["suspend_timeout_seconds"]
    assert problem(data).one_line() == "suspend_timeout_seconds: required field is missing"
    data = minimal_spec()
    del data["cluster"]["roles"]
    assert problem(data).field == "cluster.roles"


@pytest.mark.parametrize(
    "field",
    [
        "features",
        "safekeeper_connstrings",
        "mode",
        "skip_pg_catalog_updates",
        "reconfigure_concurrency",
        "drop_subscriptions_before_start",
        "audit_log_level",
        "autoprewarm",
    ],
)
def test_defaulted_fields_reject_null(field: str) -> None:
    err = problem(minimal_spec(**{field: None}))
    assert err.one_line() == f"{field}: must not be null"


def test_prefer_protocol_rejects_null_but_defaults_to_libpq() -> None:
    conninfo: dict[str, Any] = {"shard_count": 0, "shards": {}}
    assert spec_of(pageserver_connection_info=conninfo).pageserver_connection_info is not None
    spec = spec_of(pageserver_connection_info=conninfo)
    assert spec.pageserver_connection_info
    assert spec.pageserver_connection_info.prefer_protocol is PageserverProtocol.LIBPQ
    err = problem(minimal_spec(pageserver_connection_info={**conninfo, "prefer_protocol": None}))
    assert err.field == "pageserver_connection_info.prefer_protocol"


def test_optional_fields_accept_null() -> None:
    spec = spec_of(tenant_id=None, operation_uuid=None, delta_operations=None, mode="Primary")
    assert spec.tenant_id is None


def test_unknown_keys_are_ignored() -> None:
    spec = spec_of(timestamp="2021-05-23T18:25:43.511Z", something_new={"a": 1})
    assert "timestamp" not in spec.model_dump()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Primary", ComputeMode.primary()),
        ({"Primary": None}, ComputeMode.primary()),
        ("Replica", ComputeMode.replica()),
        ({"Static": "0/16B5A50"}, ComputeMode.static(Lsn(0x16B5A50))),
    ],
)
def test_modes(value: Any, expected: ComputeMode) -> None:
    assert spec_of(mode=value).mode == expected


@pytest.mark.parametrize("value", ["primary", "Static", {"Static": None}, {"Static": 5}, 1])
def test_bad_modes(value: Any) -> None:
    assert problem(minimal_spec(mode=value)).field == "mode"


def test_mode_strings() -> None:
    assert ComputeMode.static(Lsn(1)).type_str() == "static"
    assert ComputeMode.static(Lsn(0x16B5A50)).to_json() == {"Static": "0/16B5A50"}


def test_audit_levels_are_exact() -> None:
    assert spec_of(audit_log_level="Hipaa").audit_log_level is ComputeAudit.HIPAA
    assert spec_of(audit_log_level={"Full": None}).audit_log_level is ComputeAudit.FULL
    assert problem(minimal_spec(audit_log_level="full")).field == "audit_log_level"


def test_unknown_features_survive_a_round_trip() -> None:
    spec = spec_of(features=["foo", "activity_monitor_experimental", "foo"])
    assert spec.has_feature(ComputeFeature.ACTIVITY_MONITOR_EXPERIMENTAL)
    assert not spec.has_feature(ComputeFeature.TLS_EXPERIMENTAL)
    assert spec.model_dump(mode="json")["features"] == [
        "foo",
        "activity_monitor_experimental",
        "foo",
    ]
    assert problem(minimal_spec(features=[1])).field == "features[0]"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("suspend_timeout_seconds", "1"),
        ("suspend_timeout_seconds", 1.0),
        ("suspend_timeout_seconds", 2**63),
        ("reconfigure_concurrency", -1),
        ("shard_stripe_size", 2**32),
        ("safekeepers_generation", True),
        ("offload_lfc_interval_seconds", 0),
        ("swap_size_bytes", -5),
        ("format_version", "1.0"),
        ("skip_pg_catalog_updates", "true"),
        ("autoprewarm", 0),
    ],
)
def test_numbers_and_booleans_are_strict(field: str, value: Any) -> None:
    assert problem(minimal_spec(**{field: value})).field == field


def test_database_internal_flags_are_not_read() -> None:
    spec = spec_of(
        cluster={
            "roles": [],
            "databases": [{"name": "d", "owner": "o", "restrict_conn": True, "invalid": True}],
        }
    )
    db = spec.cluster.databases[0]
    assert (db.restrict_conn, db.invalid) == (False, False)
    assert spec.model_dump(mode="json")["cluster"]["databases"][0]["invalid"] is False


def test_local_proxy_omits_absent_members() -> None:
    spec = spec_of(local_proxy_config={"jwks": None})
    assert spec.model_dump(mode="json")["local_proxy_config"] == {}


def test_serialization_order_follows_declaration() -> None:
    keys = list(spec_of().model_dump(mode="json"))
    assert keys[:3] == ["format_version", "operation_uuid", "features"]
    assert keys[-2:] == ["suspend_timeout_seconds", "databricks_settings"]


def test_control_plane_response() -> None:
    empty = validate(
        ControlPlaneConfigResponse,
        {"status": "empty", "spec": None, "compute_ctl_config": {"jwks": {"keys": []}}},
    )
    assert empty.spec is None
    err = problem(
        {"status": "gone", "compute_ctl_config": {"jwks": {"keys": []}}}, ControlPlaneConfigResponse
    )
    assert err.field == "status"


def test_json_level_errors() -> None:
    with pytest.raises(SpecError) as info:
        parse_json('{"a": 1,\n "a": 2}')
    assert info.value.one_line() == "a: duplicate key in a JSON object"
    with pytest.raises(SpecError) as info:
        parse_json('{"a": 1,\n  "b": }')
    assert info.value.field == "line 2 column 8"
    with pytest.raises(SpecError, match="NaN is not a JSON number"):
        parse_json('{"a": NaN}')
    with pytest.raises(SpecError, match="not valid UTF-8"):
        parse_json(b'{"a": "\xff"}')


def test_config_detected_by_envelope() -> None:
    config = {"spec": minimal_spec(), "compute_ctl_config": {"jwks": {"keys": []}}}
    assert isinstance(load_document(json.dumps(config)), ComputeConfig)
    config["spec"]["cluster"] = 1
    with pytest.raises(SpecError) as info:
        load_document(json.dumps(config))
    assert info.value.one_line() == "spec.cluster: expected a JSON object"


# --------------------------------------------------------------------------------------------
# Property: whatever the models accept re-serializes and reloads to an equal model.

_text = st.text(max_size=12)
_hex32 = st.text("0123456789abcdefABCDEF", min_size=32, max_size=32)
_u32 = st.integers(0, 2**32 - 1)
_lsn = st.builds(
    lambda hi, lo: f"{hi:X}/{lo:x}", st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)
)
_options = st.none() | st.lists(
    st.fixed_dictionaries(
        {"name": _text, "vartype": st.sampled_from(["string", "bool", "integer", "enum"])},
        optional={"value": st.none() | _text},
    ),
    max_size=3,
)
_shard_conn = st.fixed_dictionaries(
    {},
    optional={
        "id": st.none() | st.integers(0, 2**64 - 1),
        "libpq_url": st.none() | _text,
        "grpc_url": st.none() | _text,
    },
)


@st.composite
def _conninfo(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(0, 4))
    numbers = draw(st.sets(st.integers(0, max(count, 1) - 1)))
    shards = {
        f"{n:02x}{count:02x}": {"pageservers": draw(st.lists(_shard_conn, max_size=2))}
        for n in numbers
    }
    info: dict[str, Any] = {"shard_count": count, "shards": shards}
    if draw(st.booleans()):
        info["stripe_size"] = draw(st.none() | _u32)
    if draw(st.booleans()):
        info["prefer_protocol"] = draw(st.sampled_from(["libpq", "grpc", {"grpc": None}]))
    return info


_spec_fields = {
    "operation_uuid": st.none() | _text,
    "features": st.lists(
        st.sampled_from(["activity_monitor_experimental", "tls_experimental", "x", "unknown"])
    ),
    "swap_size_bytes": st.none() | st.integers(0, 2**64 - 1),
    "disable_lfc_resizing": st.none() | st.booleans(),
    "delta_operations": st.none()
    | st.lists(
        st.fixed_dictionaries(
            {"action": _text, "name": _text}, optional={"new_name": st.none() | _text}
        ),
        max_size=3,
    ),
    "skip_pg_catalog_updates": st.booleans(),
    "tenant_id": st.none() | _hex32,
    "timeline_id": st.none() | _hex32,
    "pageserver_connection_info": st.none() | _conninfo(),
    "pageserver_connstring": st.none() | _text,
    "shard_stripe_size": st.none() | _u32,
    "safekeepers_generation": st.none() | _u32,
    "safekeeper_connstrings": st.lists(_text, max_size=3),
    "mode": st.sampled_from(["Primary", "Replica"]) | _lsn.map(lambda lsn: {"Static": lsn}),
    "storage_auth_token": st.none() | _text,
    "pgbouncer_settings": st.none() | st.dictionaries(_text, _text, max_size=3),
    "local_proxy_config": st.none()
    | st.fixed_dictionaries(
        {},
        optional={
            "tls": st.none() | st.fixed_dictionaries({"key_path": _text, "cert_path": _text})
        },
    ),
    "reconfigure_concurrency": st.integers(0, 2**64 - 1),
    "audit_log_level": st.sampled_from([a.value for a in ComputeAudit]),
    "offload_lfc_interval_seconds": st.none() | st.integers(1, 2**64 - 1),
    "suspend_timeout_seconds": st.integers(-(2**63), 2**63 - 1),
}


@st.composite
def _specs(draw: st.DrawFn) -> dict[str, Any]:
    spec = minimal_spec(format_version=draw(st.sampled_from([1, 1.0, 2.5])))
    spec["cluster"] = {
        "roles": draw(
            st.lists(
                st.fixed_dictionaries(
                    {"name": _text},
                    optional={"encrypted_password": st.none() | _text, "options": _options},
                ),
                max_size=3,
            )
        ),
        "databases": draw(
            st.lists(
                st.fixed_dictionaries(
                    {"name": _text, "owner": _text}, optional={"options": _options}
                ),
                max_size=3,
            )
        ),
        "settings": draw(_options),
        "postgresql_conf": draw(st.none() | _text),
    }
    for name, strategy in _spec_fields.items():
        if draw(st.booleans()):
            spec[name] = draw(strategy)
    return spec


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_specs())
def test_accepted_specs_round_trip(data: dict[str, Any]) -> None:
    spec = validate(ComputeSpec, data)
    text = spec.model_dump_json()
    again = validate(ComputeSpec, parse_json(text))
    assert again == spec
    assert again.model_dump_json() == text


@pytest.mark.parametrize("path", all_fixtures(), ids=fixture_id)
def test_round_trip_of_fixtures(path: Any) -> None:
    document = load_document(path.read_bytes())
    again = load_document(document.model_dump_json())
    assert again == document
    assert TENANT != TIMELINE
