"""Shapes of the HTTP API's bodies that are not spec documents: answers and query strings.

Handlers build their answers from these models and the OpenAPI document is generated from the
same ones, so the two cannot drift apart. Field order is upstream's serialization order.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr

from compute_ctl.spec.models import ComputeSpec
from compute_ctl.spec.privilege import Privilege
from compute_ctl.spec.responses import Answer
from compute_ctl.spec.types import Lsn
from compute_ctl.state import ComputeStatus


# Validators are built on first use (see spec/models.py): not on the start-up path.
def _no_nul(value: str) -> str:
    # libpq cuts a connection string at a NUL and exec() refuses one: such a name could only
    # reach the wrong database or fail obscurely.
    if "\0" in value:
        raise ValueError("must not contain a NUL character")
    return value


Name = Annotated[StrictStr, AfterValidator(_no_nul)]
"""A database, schema, role or extension name taken from a request."""


class GenericError(Answer):
    """Every error answer: `{"error": "<message>"}`."""

    error: str


class ComputeStatusResponse(Answer):
    """`GET /status` and the success answer of `POST /configure`."""

    start_time: str
    tenant: str | None
    timeline: str | None
    status: ComputeStatus
    last_active: str | None
    error: str | None


class ProbeAnswer(Answer):
    """`GET /readyz` and `GET /livez`: the status behind the status code."""

    status: ComputeStatus


class TerminateResponse(Answer):
    lsn: str | None


class TerminateQuery(Answer):
    mode: Literal["fast", "immediate"] = "fast"


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


class ExtensionInstallResult(Answer):
    extension: str
    version: str


class SetRoleGrantsRequest(_Request):
    """`POST /grants`: grant `privileges` on `schema` in `database` to `role`."""

    database: Name
    schema_: Name = Field(alias="schema")
    privileges: list[Privilege]
    role: Name

    model_config = ConfigDict(extra="ignore", populate_by_name=True, serialize_by_alias=True)


class SetRoleGrantsResponse(Answer):
    database: str
    schema_: str = Field(alias="schema")
    privileges: list[Privilege]
    role: str

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class LfcPrewarmQuery(BaseModel):
    """`POST /lfc/prewarm` query string: prewarm from another endpoint's stored state."""

    from_endpoint: StrictStr | None = None


class ExtensionServerQuery(BaseModel):
    """`POST /extension_server/{filename}` query string: whether `filename` names a library
    (`foo.so`, mapped through `library_index`) rather than an extension."""

    is_library: StrictBool = False


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
