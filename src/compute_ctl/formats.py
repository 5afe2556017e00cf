"""Text forms upstream prints and that more than one layer writes: Rust's `{:?}` quoting of a
string and chrono's RFC 3339 timestamps.

A base module, below the HTTP layer and the features, so that the remote-extension download can
quote a name the way upstream's messages do without reaching into `http`.
"""

from __future__ import annotations

from datetime import datetime


def _fraction(dt: datetime) -> str:
    # chrono prints 0, 3, 6 or 9 fractional digits, as few as represent the value exactly.
    micros = dt.microsecond
    if micros == 0:
        return ""
    if micros % 1000 == 0:
        return f".{micros // 1000:03d}"
    return f".{micros:06d}"


def rfc3339_z(dt: datetime) -> str:
    """`2026-03-25T09:27:03.512873Z` (the form of `start_time`)."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + _fraction(dt) + "Z"


def rfc3339_offset(dt: datetime) -> str:
    """`2026-03-25T09:31:10.004312+00:00` (the form of `last_active`)."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + _fraction(dt) + "+00:00"


_DEBUG_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def rust_debug_str(text: str) -> str:
    """`text` quoted as Rust's `{:?}` prints a string: printable characters (any script) kept,
    quotes and backslashes escaped, other control characters as `\\u{1b}`."""
    out = []
    for char in text:
        if char in _DEBUG_ESCAPES:
            out.append(_DEBUG_ESCAPES[char])
        elif char.isprintable() or char == " ":
            out.append(char)
        else:
            out.append(f"\\u{{{ord(char):x}}}")
    return '"' + "".join(out) + '"'
