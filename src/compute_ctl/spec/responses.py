"""Shapes of the compute's answers that its features produce: the catalog's roles and
databases, the LFC prewarm/offload states and the outcome of a promotion.

They live beside the spec models (the other JSON shapes of the compute API) so that the
features that produce them and the HTTP layer that serves them both import them from below.
Field order is upstream's serialization order.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from compute_ctl.spec.models import Database, Role


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class DbsAndRoles(Answer):
    """`GET /dbs_and_roles`: every role (with its stored password verifier) and database."""

    roles: list[Role]
    databases: list[Database]


# --------------------------------------------------------------------------------------------
# LFC prewarm/offload and promotion: states internally tagged by `status` (every field of a
# variant is always present, so the serialized schema marks them all required).


class Tagged(Answer):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class LfcPrewarmNotPrewarmed(Tagged):
    """No prewarm was requested since the compute started."""

    status: Literal["not_prewarmed"] = "not_prewarmed"


class LfcPrewarmPrewarming(Tagged):
    status: Literal["prewarming"] = "prewarming"


class LfcPrewarmCompleted(Tagged):
    """The state was found and loaded; counts from `neon.get_prewarm_info()`."""

    status: Literal["completed"] = "completed"
    total: int
    prewarmed: int
    skipped: int
    state_download_time_ms: int
    uncompress_time_ms: int
    prewarm_time_ms: int


class LfcPrewarmFailed(Tagged):
    status: Literal["failed"] = "failed"
    error: str


class LfcPrewarmSkipped(Tagged):
    """Endpoint storage has no state for this endpoint (404)."""

    status: Literal["skipped"] = "skipped"


class LfcPrewarmCancelled(Tagged):
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


class LfcOffloadNotOffloaded(Tagged):
    status: Literal["not_offloaded"] = "not_offloaded"


class LfcOffloadOffloading(Tagged):
    status: Literal["offloading"] = "offloading"


class LfcOffloadCompleted(Tagged):
    status: Literal["completed"] = "completed"
    state_query_time_ms: int
    compress_time_ms: int
    state_upload_time_ms: int


class LfcOffloadFailed(Tagged):
    status: Literal["failed"] = "failed"
    error: str


class LfcOffloadSkipped(Tagged):
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


class PromoteCompleted(Tagged):
    status: Literal["completed"] = "completed"
    lsn_wait_time_ms: int
    pg_promote_time_ms: int
    reconfigure_time_ms: int


class PromoteFailed(Tagged):
    status: Literal["failed"] = "failed"
    error: str


PromoteState = Annotated[PromoteCompleted | PromoteFailed, Field(discriminator="status")]
"""`POST /promote`: the outcome every caller of one promotion gets."""
