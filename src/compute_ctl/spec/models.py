"""The compute spec and its envelopes, as pydantic models: the only place JSON shapes live.

Decoding follows the control plane's (serde) rules so that the same documents are accepted and
rejected: unknown keys are ignored; an optional field may be missing or null; a field with a
default may be missing but not null; integers are integral JSON numbers within the Rust type's
range; enum spellings are exact, and a unit variant may also be written `{"Name": null}`.
Serialization emits every field in declaration order, nulls included, like the Rust structs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    JsonValue,
    SerializerFunctionWrapHandler,
    Strict,
    StrictBool,
    StrictFloat,
    StrictStr,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from compute_ctl.spec.types import Lsn, ShardIndex, TenantId, TimelineId

U8 = Annotated[int, Strict(), Ge(0), Le(2**8 - 1)]
U32 = Annotated[int, Strict(), Ge(0), Le(2**32 - 1)]
U64 = Annotated[int, Strict(), Ge(0), Le(2**64 - 1)]
I64 = Annotated[int, Strict(), Ge(-(2**63)), Le(2**63 - 1)]
NonZeroU64 = Annotated[int, Strict(), Ge(1), Le(2**64 - 1)]

NodeId = U64
"""A storage node's id (pageserver or safekeeper): a JSON integer."""

ShardNumber = U8
ShardCount = U8
"""Number of shards of a tenant. 0 means "unsharded" (legacy, one shard, no key suffix); 1 is a
sharded tenant that happens to have one shard. The two are distinct on the wire."""

ShardStripeSize = U32
"""Stripe size in 8 KiB pages."""


def _unit_variant(value: object) -> object:
    """serde also accepts a unit enum variant as a one-key object with a null value."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        if inner is None and isinstance(key, str):
            return key
    return value


class _Model(BaseModel):
    # Validators are built on first use, not at import: the start-up path to the HTTP
    # listeners does not pay for models it does not validate yet.
    model_config = ConfigDict(extra="ignore", validate_default=False, defer_build=True)


# --------------------------------------------------------------------------------------------
# Enumerations


class ComputeAudit(StrEnum):
    """Audit logging level. `Log` and `Hipaa` are deprecated spellings of `Base`/`Extended`."""

    DISABLED = "Disabled"
    LOG = "Log"
    BASE = "Base"
    HIPAA = "Hipaa"
    EXTENDED = "Extended"
    FULL = "Full"


class PageserverProtocol(StrEnum):
    """How compute_ctl fetches the basebackup; Postgres itself always uses libpq."""

    LIBPQ = "libpq"
    GRPC = "grpc"

    @property
    def url_scheme(self) -> str:
        return "postgresql" if self is PageserverProtocol.LIBPQ else "grpc"


class ComputeFeature(StrEnum):
    """Feature flags compute_ctl knows. Unknown flags are kept verbatim as plain strings."""

    ACTIVITY_MONITOR_EXPERIMENTAL = "activity_monitor_experimental"
    TLS_EXPERIMENTAL = "tls_experimental"


def _feature_name(value: object) -> object:
    value = _unit_variant(value)
    if not isinstance(value, str):
        raise PydanticCustomError("feature_type", "a feature flag must be a string")
    return value


FeatureName = Annotated[StrictStr, BeforeValidator(_feature_name)]
AuditLevel = Annotated[ComputeAudit, BeforeValidator(_unit_variant)]
Protocol = Annotated[PageserverProtocol, BeforeValidator(_unit_variant)]


@dataclass(frozen=True)
class ComputeMode:
    """Primary, hot-standby Replica, or read-only Static pinned at an LSN.

    JSON form (externally tagged): `"Primary"`, `"Replica"`, `{"Static": "0/16B5A50"}`.
    """

    kind: Literal["primary", "replica", "static"]
    lsn: Lsn | None = None

    @classmethod
    def primary(cls) -> ComputeMode:
        return cls("primary")

    @classmethod
    def replica(cls) -> ComputeMode:
        return cls("replica")

    @classmethod
    def static(cls, lsn: Lsn) -> ComputeMode:
        return cls("static", lsn)

    @property
    def is_primary(self) -> bool:
        return self.kind == "primary"

    def type_str(self) -> str:
        """The form used in `neon.compute_mode` and basebackup options: no LSN."""
        return self.kind

    def to_json(self) -> JsonValue:
        if self.kind == "static":
            return {"Static": str(self.lsn)}
        return self.kind.capitalize()

    @classmethod
    def _validate(cls, value: object) -> ComputeMode:
        if isinstance(value, ComputeMode):
            return value
        value = _unit_variant(value)
        if value == "Primary":
            return cls.primary()
        if value == "Replica":
            return cls.replica()
        if isinstance(value, dict) and len(value) == 1 and "Static" in value:
            return cls.static(Lsn._validate(value["Static"]))
        raise PydanticCustomError(
            "compute_mode",
            'unknown compute mode: expected "Primary", "Replica" or {"Static": "<lsn>"}',
        )

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda m: m.to_json()),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "oneOf": [
                {"enum": ["Primary", "Replica"]},
                {
                    "type": "object",
                    "properties": {"Static": {"type": "string"}},
                    "required": ["Static"],
                    "additionalProperties": False,
                },
            ]
        }


# --------------------------------------------------------------------------------------------
# Cluster contents


class GenericOption(_Model):
    """One setting or SQL option. `value` is always a string, whatever `vartype` says."""

    name: StrictStr
    value: StrictStr | None = None
    vartype: StrictStr


GenericOptions = list[GenericOption] | None


def find_option(options: GenericOptions, name: str) -> str | None:
    """Value of the first option named exactly `name`; None when absent or when that first
    match has no value (the search does not go on past it)."""
    for option in options or ():
        if option.name == name:
            return option.value
    return None


class Role(_Model):
    name: StrictStr
    # An md5 digest (32 hex digits, no "md5" prefix) or a full SCRAM-SHA-256 verifier. Secret.
    encrypted_password: StrictStr | None = Field(default=None, repr=False)
    options: GenericOptions = None


class Database(_Model):
    name: StrictStr
    owner: StrictStr
    options: GenericOptions = None
    # Internal flags: written on output, never read from input.
    restrict_conn: bool = False
    invalid: bool = False

    @model_validator(mode="before")
    @classmethod
    def _drop_internal_flags(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in ("restrict_conn", "invalid")}
        return data


class Cluster(_Model):
    cluster_id: StrictStr | None = None
    name: StrictStr | None = None
    state: StrictStr | None = None
    roles: list[Role]
    databases: list[Database]
    postgresql_conf: StrictStr | None = None
    settings: GenericOptions = None


class DeltaOp(_Model):
    """A rename or delete of a role or database (`delete_db`, `rename_db`, `delete_role`,
    `rename_role`); other actions are ignored."""

    action: StrictStr
    name: StrictStr
    new_name: StrictStr | None = None


# --------------------------------------------------------------------------------------------
# Storage addresses


class PageserverShardConnectionInfo(_Model):
    id: NodeId | None = None
    libpq_url: StrictStr | None = None
    grpc_url: StrictStr | None = None


class PageserverShardInfo(_Model):
    pageservers: list[PageserverShardConnectionInfo]


class PageserverConnectionInfo(_Model):
    """Per-shard pageserver addresses. Keys of `shards` carry `shard_count` as their count."""

    shard_count: ShardCount
    stripe_size: ShardStripeSize | None = None
    shards: dict[ShardIndex, PageserverShardInfo]
    prefer_protocol: Protocol = PageserverProtocol.LIBPQ


# --------------------------------------------------------------------------------------------
# Extensions, proxies and platform-specific settings


class ExtensionData(_Model):
    control_data: dict[StrictStr, StrictStr]
    archive_path: StrictStr


class RemoteExtSpec(_Model):
    public_extensions: list[StrictStr] | None = None
    custom_extensions: list[StrictStr] | None = None
    library_index: dict[StrictStr, StrictStr]
    extension_data: dict[StrictStr, ExtensionData]


class JwksSettings(_Model):
    id: StrictStr
    role_names: list[StrictStr]
    jwks_url: StrictStr
    provider_name: StrictStr
    jwt_audience: StrictStr | None = None


class TlsConfig(_Model):
    key_path: StrictStr
    cert_path: StrictStr


class LocalProxySpec(_Model):
    jwks: list[JwksSettings] | None = None
    tls: TlsConfig | None = None

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None}


class PgComputeTlsSettings(_Model):
    cert_file: StrictStr
    key_file: StrictStr
    ca_file: StrictStr


class DatabricksSettings(_Model):
    pg_compute_tls_settings: PgComputeTlsSettings
    databricks_pg_hba: StrictStr
    databricks_pg_ident: StrictStr
    databricks_workspace_host: StrictStr


# --------------------------------------------------------------------------------------------
# The spec


class ComputeSpec(_Model):
    """Everything a compute needs to start: the cluster's roles and databases, where its
    storage is, and how Postgres is configured."""

    format_version: StrictFloat
    operation_uuid: StrictStr | None = None
    features: list[FeatureName] = Field(default_factory=list)
    swap_size_bytes: U64 | None = None
    disk_quota_bytes: U64 | None = None
    disable_lfc_resizing: StrictBool | None = None
    cluster: Cluster
    delta_operations: list[DeltaOp] | None = None
    skip_pg_catalog_updates: StrictBool = False
    tenant_id: TenantId | None = None
    timeline_id: TimelineId | None = None
    pageserver_connection_info: PageserverConnectionInfo | None = None
    pageserver_connstring: StrictStr | None = None
    shard_stripe_size: U32 | None = None
    project_id: StrictStr | None = None
    branch_id: StrictStr | None = None
    endpoint_id: StrictStr | None = None
    safekeepers_generation: U32 | None = None
    safekeeper_connstrings: list[StrictStr] = Field(default_factory=list)
    mode: ComputeMode = ComputeMode.primary()
    storage_auth_token: StrictStr | None = Field(default=None, repr=False)
    remote_extensions: RemoteExtSpec | None = None
    pgbouncer_settings: dict[StrictStr, StrictStr] | None = None
    local_proxy_config: LocalProxySpec | None = None
    reconfigure_concurrency: U64 = 1
    drop_subscriptions_before_start: StrictBool = False
    audit_log_level: AuditLevel = ComputeAudit.DISABLED
    logs_export_host: StrictStr | None = None
    endpoint_storage_addr: StrictStr | None = None
    endpoint_storage_token: StrictStr | None = Field(default=None, repr=False)
    autoprewarm: StrictBool = False
    offload_lfc_interval_seconds: NonZeroU64 | None = None
    suspend_timeout_seconds: I64
    databricks_settings: DatabricksSettings | None = None

    def has_feature(self, feature: ComputeFeature) -> bool:
        return feature.value in self.features


# --------------------------------------------------------------------------------------------
# Envelopes


class JwkSet(_Model):
    """RFC 7517 key set used to authorize requests to the external HTTP API. Keys are kept as
    given; the HTTP layer interprets them."""

    keys: list[dict[str, JsonValue]]


class ComputeCtlConfig(_Model):
    jwks: JwkSet
    tls: TlsConfig | None = None


class ComputeConfig(_Model):
    """Content of the `--config` file: an optional spec plus compute_ctl's own settings."""

    spec: ComputeSpec | None = None
    compute_ctl_config: ComputeCtlConfig

    @classmethod
    def looks_like(cls, document: object) -> bool:
        """A ComputeConfig is recognised by its envelope keys (a bare spec has `cluster`)."""
        return isinstance(document, dict) and "compute_ctl_config" in document


class ConfigurationRequest(_Model):
    """Body of POST /configure."""

    spec: ComputeSpec
    compute_ctl_config: ComputeCtlConfig


class ControlPlaneComputeStatus(StrEnum):
    EMPTY = "empty"
    ATTACHED = "attached"


class ControlPlaneConfigResponse(_Model):
    """Body of the control plane's GET /compute/api/v2/computes/{id}/spec."""

    spec: ComputeSpec | None = None
    status: ControlPlaneComputeStatus
    compute_ctl_config: ComputeCtlConfig


__all__ = [
    "Cluster",
    "ComputeAudit",
    "ComputeConfig",
    "ComputeCtlConfig",
    "ComputeFeature",
    "ComputeMode",
    "ComputeSpec",
    "ConfigurationRequest",
    "ControlPlaneComputeStatus",
    "ControlPlaneConfigResponse",
    "Database",
    "DatabricksSettings",
    "DeltaOp",
    "ExtensionData",
    "GenericOption",
    "GenericOptions",
    "JwkSet",
    "JwksSettings",
    "LocalProxySpec",
    "PageserverConnectionInfo",
    "PageserverProtocol",
    "PageserverShardConnectionInfo",
    "PageserverShardInfo",
    "PgComputeTlsSettings",
    "RemoteExtSpec",
    "Role",
    "TlsConfig",
    "find_option",
]
