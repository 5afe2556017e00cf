"""Shapes of the HTTP API's bodies that are not spec documents: answers and query strings.

Handlers build their answers from these models and the OpenAPI document is generated from the
same ones, so the two cannot drift apart. Field order is upstream's serialization order.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr
from pydantic.json_schema import WithJsonSchema

from compute_ctl.errors import SpecError
from compute_ctl.spec.catalog_checks import NAMEDATALEN, check_name
from compute_ctl.spec.models import ComputeSpec
from compute_ctl.spec.privilege import Privilege
from compute_ctl.spec.responses import Answer
from compute_ctl.spec.types import Lsn
from compute_ctl.state import ComputeStatus

NAME_SCHEMA = WithJsonSchema(
    {
        "type": "string",
        "minLength": 1,
        "maxLength": NAMEDATALEN - 1,
        "description": f"a Postgres name: not empty, at most {NAMEDATALEN - 1} bytes in UTF-8, "
        "no NUL character",
    }
)

Name = Annotated[StrictStr, NAME_SCHEMA]
"""A database, schema, role or extension name (or an extension version) taken from a request.

The type takes any string; `name_error` checks it the way the spec's names are checked
(`spec/catalog_checks.py`'s `check_name`), so that a name Postgres would refuse or silently
truncate is a 400 naming the field instead of an error from Postgres or pg_dump. The schema
states the same rule for clients (its `maxLength` counts characters, the check counts bytes).
"""


def name_error(request: BaseModel) -> SpecError | None:
    """The first `Name` field of `request` that Postgres could not take as it is, or None.

    The field's JSON name is both the field and the kind of the message:
    `database: database name is empty`.
    """
    for attribute, info in type(request).model_fields.items():
        if NAME_SCHEMA not in info.metadata:
            continue
        field = info.alias or attribute
        try:
            check_name(field, getattr(request, attribute), field)
        except SpecError as exc:
            return exc
    return None


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
