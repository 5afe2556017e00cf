"""Shapes of the HTTP API's bodies that are not spec documents: answers and query strings.

Handlers build their answers from these models and the OpenAPI document is generated from the
same ones, so the two cannot drift apart. Field order is upstream's serialization order.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from compute_ctl.compute.state import ComputeStatus
from compute_ctl.spec.models import Database, Role
from compute_ctl.spec.privilege import Privilege


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


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

    database: StrictStr


# Answers that are a bare JSON value rather than an object.
WritabilityResult = bool
"""`POST /check_writability`: JSON `true`."""

InsightsText = str
"""`GET /insights`: a JSON string holding the JSON text `{"pg_stat_statements": [...]}`."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ExtensionInstallRequest(_Request):
    """`POST /extensions`: install (or move to) `version` of `extension` in `database`."""

    extension: StrictStr
    database: StrictStr
    version: StrictStr


class ExtensionInstallResult(_Answer):
    extension: str
    version: str


class SetRoleGrantsRequest(_Request):
    """`POST /grants`: grant `privileges` on `schema` in `database` to `role`."""

    database: StrictStr
    schema_: StrictStr = Field(alias="schema")
    privileges: list[Privilege]
    role: StrictStr

    model_config = ConfigDict(extra="ignore", populate_by_name=True, serialize_by_alias=True)


class SetRoleGrantsResponse(_Answer):
    database: str
    schema_: str = Field(alias="schema")
    privileges: list[Privilege]
    role: str

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)
