"""`RUST_LOG` mapped onto Python's loggers.

Upstream filters with `tracing_subscriber`'s `EnvFilter`: comma-separated directives, each a
level (`warn`), a target (`compute_tools::compute`, meaning every level) or `target=level`; the
most specific target wins, a bare level applies to everything else. A value that does not parse
is ignored as a whole and the default (`info`) applies, as upstream. Targets are Rust module
paths: `::` becomes `.`, and upstream's crate names `compute_tools` and `compute_ctl` both mean
our `compute_ctl` package. Span filters (`target[span]=level`) have no counterpart here and
make the value invalid.
"""

from __future__ import annotations

import logging
import re

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}
_TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*")
CRATES = {"compute_tools": "compute_ctl", "compute_ctl": "compute_ctl"}
ROOT = ""


def _logger_name(target: str) -> str:
    first, _, rest = target.partition("::")
    first = CRATES.get(first, first)
    return ".".join([first, *rest.split("::")]) if rest else first


def parse_rust_log(value: str | None, default: str, problems: list[str]) -> dict[str, int]:
    """Logger name ('' for the root) → level. A bad value adds to `problems` and yields the
    default."""
    fallback = {ROOT: LEVELS[default]}
    if value is None or not value.strip():
        return fallback
    levels: dict[str, int] = {}
    for raw in value.split(","):
        directive = raw.strip()
        if not directive:
            continue
        target, sep, level_text = directive.partition("=")
        level_key = (level_text if sep else target).strip().lower()
        if not sep and level_key in LEVELS:
            levels[ROOT] = LEVELS[level_key]
            continue
        if not _TARGET.fullmatch(target.strip()) or (sep and level_key not in LEVELS):
            problems.append(f"RUST_LOG={value!r} is not valid ({directive!r}): using {default}")
            return fallback
        levels[_logger_name(target.strip())] = LEVELS[level_key] if sep else TRACE
    levels.setdefault(ROOT, LEVELS["off"])  # EnvFilter: only the targets named are let through
    return levels


def apply_levels(levels: dict[str, int]) -> None:
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
