"""Reading spec documents: JSON text → models, with errors that name the field.

This is the one decoder of every JSON document compute_ctl is given: spec and config files, the
control plane's replies and (through `http/body.py`) every request body. The control plane's
decoder rejects duplicate keys, NaN and friends, nesting 128 levels deep and `\\u` escapes of
lone surrogates (they are not characters: no UTF-8 encodes them, so a name or URL holding one
could be neither stored nor sent), so we do too. Every failure becomes one `SpecError` whose
field is a JSON path (`cluster.roles[2].name`) or, for text that is not JSON at all, the line
and column; the problem is said in words, never as a traceback, and a rejected value is never
echoed (it may be a password).
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

MAX_DEPTH = 128
"""Nesting at which a document is refused: the 128th array or object opened inside one another
fails, as in the control plane's decoder (serde_json's recursion limit)."""

_SURROGATE = re.compile("[\ud800-\udfff]")
# In text, a surrogate can only come from a `\u` escape (strict UTF-8 decoding refuses the
# encoded form), so documents without such an escape skip the walk that looks for them.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]')
_KEY_CHARS = 40  # of a map key inside a field path

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


class JsonTextError(SpecError):
    """The text is not a JSON document we decode (syntax, encoding, nesting, lone surrogates),
    as opposed to a document of the wrong shape: `400` on the HTTP API, not `422`."""


def _too_deep(text: str) -> JsonTextError:
    """Where the first container nested `MAX_DEPTH` deep opens, as a line and column."""
    depth = 0
    for match in _BRACKET.finditer(text):
        lexeme = match.group()
        if lexeme in "[{":
            depth += 1
            if depth >= MAX_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
                return JsonTextError(
                    f"line {line} column {column}",
                    f"recursion limit exceeded: nested {MAX_DEPTH} levels deep",
                )
        elif lexeme in "]}":
            depth -= 1
    return JsonTextError("document", f"recursion limit exceeded: nested {MAX_DEPTH} levels deep")


def _check_decoded(text: str, data: Any) -> None:
    """Refuse nesting `MAX_DEPTH` deep and strings (values or keys) holding a lone surrogate.

    Walked without recursion; the path of each node is built only when a surrogate is found."""
    look_for_surrogates = bool(_SURROGATE_ESCAPE.search(text))
    stack: list[tuple[Any, tuple[int | str, ...], int]] = [(data, (), 0)]
    while stack:
        node, loc, depth = stack.pop()
        if isinstance(node, str):
            if look_for_surrogates and _SURROGATE.search(node):
                raise JsonTextError(
                    format_location(loc), "lone surrogate in a \\u escape: not a Unicode character"
                )
            continue
        if not isinstance(node, dict | list):
            continue
        if depth + 1 >= MAX_DEPTH:
            raise _too_deep(text)
        if isinstance(node, dict):
            for key, value in node.items():
                if look_for_surrogates and _SURROGATE.search(key):
                    raise JsonTextError(
                        format_location((*loc, key, "[key]")),
                        "lone surrogate in a \\u escape of a key: not a Unicode character",
                    )
                stack.append((value, (*loc, key), depth + 1))
        else:
            stack.extend((item, (*loc, i), depth + 1) for i, item in enumerate(node))


def parse_json(text: str | bytes) -> Any:
    """Parse JSON strictly: duplicate keys, NaN/Infinity, nesting `MAX_DEPTH` deep and lone
    surrogates are errors (`JsonTextError` but for duplicate keys: a plain `SpecError`)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonTextError(f"byte {exc.start}", "the document is not valid UTF-8") from None
    elif _SURROGATE.search(text):
        # Text handed over already decoded (not from bytes) may hold raw surrogates.
        raise JsonTextError("document", "the document holds a lone surrogate: not Unicode")
    try:
        data = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except RecursionError:
        # Python's decoder gives up far deeper than MAX_DEPTH: say where MAX_DEPTH is reached.
        raise _too_deep(text) from None
    except json.JSONDecodeError as exc:
        # A decoder reading in order meets the depth bound before a later syntax error.
        deep = _too_deep(text[: exc.pos])
        if deep.field != "document":
            raise deep from None
        raise JsonTextError(f"line {exc.lineno} column {exc.colno}", exc.msg) from None
    except _DuplicateKeyError as exc:
        raise SpecError(format_location((exc.key,)), "duplicate key in a JSON object") from None
    except ValueError as exc:
        raise JsonTextError("document", str(exc)) from None
    _check_decoded(text, data)
    return data


def format_location(loc: tuple[int | str, ...]) -> str:
    """`('cluster', 'roles', 2, 'name')` → `cluster.roles[2].name`; odd keys are quoted."""
    out = ""
    for i, part in enumerate(loc):
        if part == "[key]":
            continue
        is_key = loc[i + 1 : i + 2] == ("[key]",)  # the map key itself is what is wrong
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part) and len(part) <= _KEY_CHARS and not is_key:
            out += f".{part}" if out else part
        else:
            # JSON-quoted (control characters and non-ASCII escaped), and cut when long: a
            # huge key must not come back whole.
            shown = json.dumps(part[:_KEY_CHARS])
            if len(part) > _KEY_CHARS:
                shown += f"… ({len(part)} characters)"
            out += f"[{shown}]"
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
