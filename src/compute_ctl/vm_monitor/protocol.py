"""The autoscaler-agent ⇄ vm-monitor wire format, byte for byte as the agent expects it.

Every frame is one JSON text. The two directions are shaped differently because the agent (Go)
decodes generically first and then again into a concrete struct:

* agent → monitor is *adjacently* tagged: `{"type": "DownscaleRequest", "content": {...}, "id": 6}`;
* monitor → agent has its fields *next to* the tag: `{"type": "DownscaleResult", "Ok": true,
  "Status": "...", "id": 6}` — `Ok`/`Status` are capitalised because the agent's struct predates
  the monitor and uses Go's default field names.

A reply carries the id of the request it answers; messages the monitor starts itself
(`UpscaleRequest`) use odd ids so they never collide with the agent's (even) ones.

Before any of these, the agent sends the range of protocol versions it speaks (`{"min": 1,
"max": 1}`) and the monitor answers `{"version": N}` or `{"error": "..."}`.

Decoding is strict in the way the agent's peer has always been: numbers are not accepted as
strings nor ints as floats, unknown keys are ignored, and anything else is a `ProtocolError`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

U64_MAX = 2**64 - 1

MessageId = Annotated[int, Field(ge=0, le=U64_MAX)]
Version = Annotated[int, Field(ge=0, le=255)]

PROTOCOL_MIN_VERSION = 1
PROTOCOL_MAX_VERSION = 1


class ProtocolError(ValueError):
    """A frame that is not a message of this protocol (bad JSON, unknown type, wrong fields)."""


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


def _summary(exc: ValidationError) -> str:
    """A validation failure on one line, for the log."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# Version handshake


def version_text(version: int) -> str:
    """How versions appear in texts sent to the agent: 1 is "v1.0"."""
    if version == 0:
        return "<invalid: zero>"
    if version == 1:
        return "v1.0"
    return f"<unknown: {version}>"


class ProtocolRange(_Model):
    """The inclusive range of versions one side speaks; the agent sends its own first."""

    min: Version
    max: Version

    @model_validator(mode="after")
    def _ordered(self) -> ProtocolRange:
        if self.min > self.max:
            raise ValueError(
                f"min version = {version_text(self.min)} is greater than "
                f"max version = {version_text(self.max)}"
            )
        return self

    def __str__(self) -> str:
        if self.min == self.max:
            return version_text(self.max)
        return f"{version_text(self.min)} to {version_text(self.max)}"


MONITOR_RANGE = ProtocolRange(min=PROTOCOL_MIN_VERSION, max=PROTOCOL_MAX_VERSION)


class VersionResponse(_Model):
    """The handshake succeeded: both sides speak `version` from now on."""

    version: Version


class ErrorResponse(_Model):
    """The handshake failed; the monitor gives up on the connection after sending it."""

    error: str


class VersionMismatchError(Exception):
    """No version is in both ranges; `str()` is the text sent to the agent."""


def negotiate(agent: ProtocolRange, monitor: ProtocolRange = MONITOR_RANGE) -> int:
    """The highest version both ranges contain."""
    if monitor.min > agent.max or monitor.max < agent.min:
        raise VersionMismatchError(
            f"Received protocol version range {agent} which does not overlap with {monitor}"
        )
    return min(monitor.max, agent.max)


def decode_range(text: str | bytes) -> ProtocolRange:
    try:
        return ProtocolRange.model_validate_json(text)
    except ValidationError as exc:
        raise ProtocolError(
            f"failed to deserialize protocol version range: {_summary(exc)}"
        ) from None


# --------------------------------------------------------------------------------------------
# Agent → monitor (adjacently tagged: type, content, id)


class Allocation(_Model):
    """Resources granted to (or asked back from) the VM: vCPUs and bytes of memory."""

    cpu: float
    mem: Annotated[int, Field(ge=0, le=U64_MAX)]


class Granted(_Model):
    granted: Allocation


class Target(_Model):
    target: Allocation


class NoContent(_Model):
    """`{}`: the agent sends an empty object for messages without fields."""


class ErrorContent(_Model):
    error: str


class UpscaleNotification(_Model):
    """More resources have been granted; answered with `UpscaleConfirmation` once the monitor
    has adapted (file cache size, memory threshold)."""

    type: Literal["UpscaleNotification"] = "UpscaleNotification"
    content: Granted
    id: MessageId


class DownscaleRequest(_Model):
    """The agent wants to shrink the VM to `target`; answered with `DownscaleResult`."""

    type: Literal["DownscaleRequest"] = "DownscaleRequest"
    content: Target
    id: MessageId


class AgentHealthCheck(_Model):
    """The agent's heartbeat; answered with `HealthCheck` carrying the same id."""

    type: Literal["HealthCheck"] = "HealthCheck"
    content: NoContent
    id: MessageId


class AgentInvalidMessage(_Model):
    """The agent could not decode something the monitor sent; only logged."""

    type: Literal["InvalidMessage"] = "InvalidMessage"
    content: ErrorContent
    id: MessageId


class AgentInternalError(_Model):
    """The agent failed to handle something the monitor sent; only logged."""

    type: Literal["InternalError"] = "InternalError"
    content: ErrorContent
    id: MessageId


InboundMessage = Annotated[
    UpscaleNotification
    | DownscaleRequest
    | AgentHealthCheck
    | AgentInvalidMessage
    | AgentInternalError,
    Field(discriminator="type"),
]
_INBOUND: TypeAdapter[InboundMessage] = TypeAdapter(InboundMessage)


def decode_inbound(text: str | bytes) -> InboundMessage:
    """One agent message, or `ProtocolError`."""
    try:
        return _INBOUND.validate_json(text)
    except ValidationError as exc:
        raise ProtocolError(f"failed to deserialize text message: {_summary(exc)}") from None


# --------------------------------------------------------------------------------------------
# Monitor → agent (fields next to type, then id)


class UpscaleConfirmation(_Model):
    type: Literal["UpscaleConfirmation"] = "UpscaleConfirmation"
    id: MessageId


class UpscaleRequest(_Model):
    """Sent unprompted, with a fresh odd id, when memory use crosses the threshold."""

    type: Literal["UpscaleRequest"] = "UpscaleRequest"
    id: MessageId


class DownscaleResult(_Model):
    """Whether the monitor agrees to the downscale, and why (texts are shown to people)."""

    model_config = ConfigDict(
        strict=True, frozen=True, extra="ignore", validate_by_name=True, validate_by_alias=True
    )

    type: Literal["DownscaleResult"] = "DownscaleResult"
    ok: bool = Field(alias="Ok")
    status: str = Field(alias="Status")
    id: MessageId


class HealthCheck(_Model):
    type: Literal["HealthCheck"] = "HealthCheck"
    id: MessageId


class InternalError(_Model):
    """Handling the request with this id failed; the session goes on."""

    type: Literal["InternalError"] = "InternalError"
    error: str
    id: MessageId


class InvalidMessage(_Model):
    """Part of the protocol for completeness; this monitor ends the session on a bad frame
    instead of answering with it, as upstream does."""

    type: Literal["InvalidMessage"] = "InvalidMessage"
    error: str
    id: MessageId


OutboundMessage = Annotated[
    UpscaleConfirmation
    | UpscaleRequest
    | DownscaleResult
    | HealthCheck
    | InternalError
    | InvalidMessage,
    Field(discriminator="type"),
]
_OUTBOUND: TypeAdapter[OutboundMessage] = TypeAdapter(OutboundMessage)


def decode_outbound(text: str | bytes) -> OutboundMessage:
    """One monitor message (the agent's side of the decoding; used by tests and tools)."""
    try:
        return _OUTBOUND.validate_json(text)
    except ValidationError as exc:
        raise ProtocolError(f"failed to deserialize monitor message: {_summary(exc)}") from None


def encode(message: BaseModel) -> str:
    """The exact JSON text of any message of either direction, or of a handshake answer."""
    return message.model_dump_json(by_alias=True)
