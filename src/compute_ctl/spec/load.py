"""Reading spec documents: JSON text → models, with errors that name the field.

The control plane's decoder rejects duplicate keys, NaN and friends, so we do too. Every failure
becomes one `SpecError` whose field is a JSON path (`cluster.roles[2].name`) or, for text that is
not JSON at all, the line and column; the problem is said in words, never as a traceback, and a
rejected value is never echoed (it may be a password).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from compute_ctl.errors import SpecError
from compute_ctl.spec.models import ComputeConfig, ComputeSpec

M = TypeVar("M", bound=BaseModel)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_TYPE_PROBLEMS = {
    "model_type": "expected a JSON object",
    "model_attributes_type": "expected a JSON object",
    "dict_type": "expected a JSON object",
    "list_type": "expected a JSON array",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer, not a fraction",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
}


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes) -> Any:
    """Parse JSON strictly: duplicate keys and NaN/Infinity are errors."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(f"byte {exc.start}", "the document is not valid UTF-8") from None
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise SpecError(f"line {exc.lineno} column {exc.colno}", exc.msg) from None
    except _DuplicateKeyError as exc:
        raise SpecError(exc.key, "duplicate key in a JSON object") from None
    except ValueError as exc:
        raise SpecError("document", str(exc)) from None


def format_location(loc: tuple[int | str, ...]) -> str:
    """`('cluster', 'roles', 2, 'name')` → `cluster.roles[2].name`; odd keys are quoted."""
    out = ""
    for i, part in enumerate(loc):
        if part == "[key]":
            continue
        is_key = loc[i + 1 : i + 2] == ("[key]",)  # the map key itself is what is wrong
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part) and not is_key:
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "document"


def _problem(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if error.get("input", ...) is None:
        # Null was offered where it is not allowed (a field with a default, or a list item).
        return "must not be null"
    if kind in _TYPE_PROBLEMS:
        return _TYPE_PROBLEMS[kind]
    message = error["msg"]
    return message[:1].lower() + message[1:]


def spec_error_from_validation(exc: ValidationError, prefix: str = "") -> SpecError:
    """The first problem pydantic found, as a `SpecError` naming its field."""
    first = exc.errors(include_url=False)[0]
    loc = tuple(first["loc"])
    field = format_location(loc)
    if prefix:
        field = prefix if field == "document" else f"{prefix}.{field}"
    return SpecError(field, _problem(first))


def validate(model: type[M], data: Any, prefix: str = "") -> M:
    """Validate decoded JSON against a model, turning failures into a `SpecError`."""
    if not isinstance(data, dict):
        raise SpecError(prefix or "document", "expected a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise spec_error_from_validation(exc, prefix) from None


def load_document(text: str | bytes) -> ComputeSpec | ComputeConfig:
    """A bare ComputeSpec, or a ComputeConfig recognised by its `compute_ctl_config` key."""
    data = parse_json(text)
    if ComputeConfig.looks_like(data):
        return validate(ComputeConfig, data)
    return validate(ComputeSpec, data)


def load_compute_spec(text: str | bytes) -> ComputeSpec:
    return validate(ComputeSpec, parse_json(text))


def load_compute_config(text: str | bytes) -> ComputeConfig:
    return validate(ComputeConfig, parse_json(text))
