"""Scalar identifiers of the storage layer, with their exact text forms.

Every value here crosses a process boundary (spec JSON, libpq commands, gRPC metadata, GUCs),
so each type owns both directions: a strict parser that reports what is wrong with the text,
and a formatter that produces the canonical form other components compare byte for byte.
The pydantic hooks make the same parsers the only way these values enter a spec model.

pydantic itself is imported only when a hook runs: the gRPC basebackup's child process
(`storage/grpc_child.py`) uses these types and never builds a model, and importing pydantic
would be a third of its start. The integer ranges of the spec's JSON fields (`U64`, …) are
pydantic annotations and live with the models (`spec/models.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import CoreSchema

DEFAULT_STRIPE_SIZE = 2048


def effective_shard_count(count: int) -> int:
    """How many shards a `ShardCount` really describes (0, unsharded, is one shard)."""
    return max(count, 1)


# Unicode's White_Space characters, what Rust's `str::trim` removes.
_WHITE_SPACE: Final = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _parse_u32_hex(text: str) -> int | None:
    # Rust's u32::from_str_radix(_, 16): an optional leading '+', then one or more hex digits.
    digits = text[1:] if text.startswith("+") else text
    if not digits or any(c not in "0123456789abcdefABCDEF" for c in digits):
        return None
    value = int(digits, 16)
    return value if value <= 0xFFFF_FFFF else None


def _custom_error(kind: str, template: str, context: dict[str, Any] | None = None) -> Exception:
    """pydantic's error for a rejected value (imported here: see the module docstring)."""
    from pydantic_core import PydanticCustomError  # noqa: PLC0415

    return PydanticCustomError(kind, template, context)


class _TextForm:
    """Pydantic hooks for a scalar whose JSON form is a string: validated by the class's own
    `_validate` (its parser, with our error texts) and serialized with `str()`."""

    JSON_PATTERN: ClassVar[str]

    @classmethod
    def _validate(cls, value: object) -> Any:
        raise NotImplementedError

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from pydantic_core import core_schema  # noqa: PLC0415 - see the module docstring

        return core_schema.no_info_plain_validator_function(
            cls._validate, serialization=core_schema.to_string_ser_schema()
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "pattern": cls.JSON_PATTERN}


class Lsn(_TextForm, int):
    """A WAL position (u64) whose text form is `HIGH/LOW` in upper-case hex, e.g. `0/16B5A50`."""

    MAX: ClassVar[int] = 2**64 - 1
    JSON_PATTERN = r"^\s*\+?[0-9A-Fa-f]{1,8}/\+?[0-9A-Fa-f]{1,8}\s*$"

    def __new__(cls, value: int) -> Self:
        if not 0 <= value <= cls.MAX:
            raise ValueError(f"LSN out of range: {value}")
        return super().__new__(cls, value)

    @classmethod
    def parse(cls, text: str) -> Lsn:
        """Parse `X/X`; surrounding whitespace is ignored, each half must fit in 32 bits.

        Whitespace is what upstream's parser trims (Unicode White_Space), which is narrower
        than Python's `str.strip()`: the separators U+001C to U+001F are not trimmed."""
        parts = text.strip(_WHITE_SPACE).split("/")
        if len(parts) == 2:
            high, low = (_parse_u32_hex(p) for p in parts)
            if high is not None and low is not None:
                return cls((high << 32) | low)
        raise ValueError(f"invalid LSN {text!r}: expected two hexadecimal halves, as in 0/16B5A50")

    def __str__(self) -> str:
        return f"{int(self) >> 32:X}/{int(self) & 0xFFFF_FFFF:X}"

    def __repr__(self) -> str:
        return f"Lsn({self})"

    @classmethod
    def _validate(cls, value: object) -> Lsn:
        if isinstance(value, Lsn):
            return value
        if not isinstance(value, str):
            raise _custom_error("lsn_type", 'an LSN must be a string such as "0/16B5A50"')
        try:
            return cls.parse(value)
        except ValueError as exc:
            raise _custom_error("lsn_parse", str(exc)) from None


def hex_decode_error(text: str, length: int) -> str | None:
    """The hex crate's error for decoding `text` into `length` bytes, or None if it decodes."""
    raw = text.encode("utf-8")
    if len(raw) % 2:
        return "Odd number of digits"
    if len(raw) // 2 != length:
        return "Invalid string length"
    for index, byte in enumerate(raw):
        if chr(byte) not in "0123456789abcdefABCDEF":
            return f"Invalid character {chr(byte)!r} at position {index}"
    return None


class _HexId16(_TextForm, str):
    """A 16-byte id shown as 32 lower-case hex digits. Parsing accepts either case."""

    kind: ClassVar[str] = "id"
    JSON_PATTERN = "^[0-9a-fA-F]{32}$"

    def __new__(cls, text: str) -> Self:
        problem = hex_decode_error(text, 16)
        if problem is not None:
            raise ValueError(problem)
        return super().__new__(cls, text.lower())

    @classmethod
    def generate(cls) -> Self:
        import secrets  # noqa: PLC0415 - only development tools create ids

        return cls(secrets.token_hex(16))

    @classmethod
    def _validate(cls, value: object) -> Self:
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise _custom_error(
                "id_type", "a {kind} must be a string of 32 hex digits", {"kind": cls.kind}
            )
        try:
            return cls(value)
        except ValueError as exc:
            raise _custom_error(
                "id_parse", "invalid {kind}: {problem}", {"kind": cls.kind, "problem": str(exc)}
            ) from None


class TenantId(_HexId16):
    kind = "tenant id"


class TimelineId(_HexId16):
    kind = "timeline id"


@dataclass(frozen=True, order=True)
class ShardIndex(_TextForm):
    """Which shard of how many: the `shards` map key, text `{number:02x}{count:02x}`."""

    JSON_PATTERN: ClassVar[str] = "^[0-9a-fA-F]{4}$"
    number: int
    count: int

    def __post_init__(self) -> None:
        if not (0 <= self.number <= 255 and 0 <= self.count <= 255):
            raise ValueError("shard number and count must each fit in one byte")

    @classmethod
    def unsharded(cls) -> ShardIndex:
        return cls(0, 0)

    @classmethod
    def parse(cls, text: str) -> ShardIndex:
        problem = hex_decode_error(text, 2)
        if problem is not None:
            raise ValueError(problem)
        return cls(int(text[:2], 16), int(text[2:], 16))

    def __str__(self) -> str:
        return f"{self.number:02x}{self.count:02x}"

    @classmethod
    def _validate(cls, value: object) -> ShardIndex:
        if isinstance(value, ShardIndex):
            return value
        if not isinstance(value, str):
            raise _custom_error("shard_index_type", "a shard index must be a string")
        try:
            return cls.parse(value)
        except ValueError as exc:
            raise _custom_error(
                "shard_index_parse",
                "invalid shard index {text}: {problem} (expected 4 hex digits: number, count)",
                {"text": repr(value), "problem": str(exc)},
            ) from None


@dataclass(frozen=True)
class TenantShardId:
    """A tenant plus its shard: `<tenant>` when unsharded, else `<tenant>-<nnCC>`."""

    tenant_id: TenantId
    shard: ShardIndex

    def __str__(self) -> str:
        if self.shard.count == 0:
            return str(self.tenant_id)
        return f"{self.tenant_id}-{self.shard}"
