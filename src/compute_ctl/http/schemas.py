"""Shapes of the HTTP API's bodies that are not spec documents: answers and query strings.

Handlers build their answers from these models and the OpenAPI document is generated from the
same ones, so the two cannot drift apart. Field order is upstream's serialization order.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr

from compute_ctl.compute.state import ComputeStatus
from compute_ctl.spec.models import ComputeSpec, Database, Role
from compute_ctl.spec.privilege import Privilege
from compute_ctl.spec.types import Lsn


# Validators are built on first use (see spec/models.py): not on the start-up path.
def _no_nul(value: str) -> str:
    # libpq cuts a connection string at a NUL and exec() refuses one: such a name could only
    # reach the wrong database or fail obscurely.
    if "\0" in value:
        raise ValueError("must not contain a NUL character")
    return value


Name = Annotated[StrictStr, AfterValidator(_no_nul)]
"""A database, schema, role or extension name taken from a request."""


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class GenericError(_Answer):
    """Every error answer: `{"error": "<message>"}`."""

    error: str


class ComputeStatusResponse(_Answer):
    """`GET /status` and the success answer of `POST /configure`."""

    start_time: str
    tenant: str | None
    timeline: str | None
    status: ComputeStatus
    last_active: str | None
    error: str | None


class TerminateResponse(_Answer):
    lsn: str | None


class TerminateQuery(_Answer):
    mode: Literal["fast", "immediate"] = "fast"


class DbsAndRoles(_Answer):
    """`GET /dbs_and_roles`: every role (with its stored password verifier) and database."""

    roles: list[Role]
    databases: list[Database]


class DatabaseSchemaQuery(BaseModel):
    """`GET /database_schema` query string."""

    database: Name


# Answers that are a bare JSON value rather than an object.
WritabilityResult = bool
"""`POST /check_writability`: JSON `true`."""

InsightsText = str
"""`GET /insights`: a JSON string holding the JSON text `{"pg_stat_statements": [...]}`."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)


class ExtensionInstallRequest(_Request):
    """`POST /extensions`: install (or move to) `version` of `extension` in `database`."""

    extension: Name
    database: Name
    version: Name


class ExtensionInstallResult(_Answer):
    extension: str
    version: str


class SetRoleGrantsRequest(_Request):
    """`POST /grants`: grant `privileges` on `schema` in `database` to `role`."""

    database: Name
    schema_: Name = Field(alias="schema")
    privileges: list[Privilege]
    role: Name

    model_config = ConfigDict(extra="ignore", populate_by_name=True, serialize_by_alias=True)


class SetRoleGrantsResponse(_Answer):
    database: str
    schema_: str = Field(alias="schema")
    privileges: list[Privilege]
    role: str

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


# --------------------------------------------------------------------------------------------
# LFC prewarm/offload and promotion: states internally tagged by `status` (every field of a
# variant is always present, so the serialized schema marks them all required).


class _Tagged(_Answer):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class LfcPrewarmNotPrewarmed(_Tagged):
    """No prewarm was requested since the compute started."""

    status: Literal["not_prewarmed"] = "not_prewarmed"


class LfcPrewarmPrewarming(_Tagged):
    status: Literal["prewarming"] = "prewarming"


class LfcPrewarmCompleted(_Tagged):
    """The state was found and loaded; counts from `neon.get_prewarm_info()`."""

    status: Literal["completed"] = "completed"
    total: int
    prewarmed: int
    skipped: int
    state_download_time_ms: int
    uncompress_time_ms: int
    prewarm_time_ms: int


class LfcPrewarmFailed(_Tagged):
    status: Literal["failed"] = "failed"
    error: str


class LfcPrewarmSkipped(_Tagged):
    """Endpoint storage has no state for this endpoint (404)."""

    status: Literal["skipped"] = "skipped"


class LfcPrewarmCancelled(_Tagged):
    """`DELETE /lfc/prewarm` cancelled it."""

    status: Literal["cancelled"] = "cancelled"


LfcPrewarmState = Annotated[
    LfcPrewarmNotPrewarmed
    | LfcPrewarmPrewarming
    | LfcPrewarmCompleted
    | LfcPrewarmFailed
    | LfcPrewarmSkipped
    | LfcPrewarmCancelled,
    Field(discriminator="status"),
]
"""`GET /lfc/prewarm`."""


class LfcOffloadNotOffloaded(_Tagged):
    status: Literal["not_offloaded"] = "not_offloaded"


class LfcOffloadOffloading(_Tagged):
    status: Literal["offloading"] = "offloading"


class LfcOffloadCompleted(_Tagged):
    status: Literal["completed"] = "completed"
    state_query_time_ms: int
    compress_time_ms: int
    state_upload_time_ms: int


class LfcOffloadFailed(_Tagged):
    status: Literal["failed"] = "failed"
    error: str


class LfcOffloadSkipped(_Tagged):
    """Postgres had no LFC state (NULL): nothing was uploaded."""

    status: Literal["skipped"] = "skipped"


LfcOffloadState = Annotated[
    LfcOffloadNotOffloaded
    | LfcOffloadOffloading
    | LfcOffloadCompleted
    | LfcOffloadFailed
    | LfcOffloadSkipped,
    Field(discriminator="status"),
]
"""`GET /lfc/offload`."""


class LfcPrewarmQuery(BaseModel):
    """`POST /lfc/prewarm` query string: prewarm from another endpoint's stored state."""

    from_endpoint: StrictStr | None = None


class ExtensionServerQuery(BaseModel):
    """`POST /extension_server/{filename}` query string: whether `filename` names a library
    (`foo.so`, mapped through `library_index`) rather than an extension."""

    is_library: StrictBool = False


class PromoteCompleted(_Tagged):
    status: Literal["completed"] = "completed"
    lsn_wait_time_ms: int
    pg_promote_time_ms: int
    reconfigure_time_ms: int


class PromoteFailed(_Tagged):
    status: Literal["failed"] = "failed"
    error: str


PromoteState = Annotated[PromoteCompleted | PromoteFailed, Field(discriminator="status")]
"""`POST /promote`: the outcome every caller of one promotion gets."""


class PromoteRequest(_Request):
    """`POST /promote`: the spec to run as primary, and the old primary's last flushed LSN
    that this replica must have replayed first."""

    spec: ComputeSpec
    wal_flush_lsn: Lsn


class FailpointConfig(_Request):
    """One entry of `POST /failpoints` (`actions` in the `fail` crate's syntax)."""

    name: StrictStr
    actions: StrictStr


ConfigureFailpointsRequest = list[FailpointConfig]
"""`POST /failpoints` body."""
