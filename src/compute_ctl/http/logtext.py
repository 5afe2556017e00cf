"""Writing text a client controls into the log without letting it forge log lines.

The compute log is read line by line (by people, rsyslog and log shippers): a request path or
an error message quoting it must not end a line early (`\\n`, `\\r`, U+2028), carry a NUL, or
smuggle terminal escapes. `printable` is for the request line (printable ASCII only);
`one_line` keeps other characters and escapes the controls.
"""

from __future__ import annotations

import re

_UNPRINTABLE = re.compile(r"[^\x21-\x7e ]|\\")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every character outside printable ASCII (and the backslash) escaped."""
    return _UNPRINTABLE.sub(_escape_char, text)


def one_line(text: str) -> str:
    """`text` with control characters and line separators escaped (a backslash is kept: the
    Rust-style quoted errors upstream's answers carry are full of them)."""
    return _CONTROL.sub(_escape_char, text)
