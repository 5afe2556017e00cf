"""Where compute_ctl's log lines go and which are kept (`docs/deploying.md`, "Logs").

- Levels: `RUST_LOG` as upstream reads it (`filter.py`), default `info`.
- stderr: upstream's line shape (`formats.py`), or JSON lines with
  `COMPUTE_CTL_LOG_FORMAT=json`.
- lakebase: daily `pgcctl.YYYY-MM-DD` JSON files in `COMPUTE_CTL_LOG_DIRECTORY`, the last two
  kept (`files.py`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from compute_ctl.logsetup.files import DailyFileHandler, set_ids
from compute_ctl.logsetup.filter import apply_levels, parse_rust_log
from compute_ctl.logsetup.formats import TextFormatter

__all__ = ["FORMAT_ENV", "LOG_DIRECTORY_ENV", "set_ids", "setup_logging"]

FORMAT_ENV = "COMPUTE_CTL_LOG_FORMAT"
LOG_DIRECTORY_ENV = "COMPUTE_CTL_LOG_DIRECTORY"
DEFAULT_LEVEL = "info"


def setup_logging(
    environ: Mapping[str, str] = os.environ,
    *,
    lakebase: bool = False,
    stream: TextIO | None = None,
) -> None:
    """Configure the root logger once, at start (see the module docstring)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    problems: list[str] = []
    rust_log = environ.get("RUST_LOG")
    levels = parse_rust_log(rust_log, DEFAULT_LEVEL, problems)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    log_format = environ.get(FORMAT_ENV, "text").strip().lower()
    if log_format == "json":
        from compute_ctl.logsetup.formats import json_formatter  # noqa: PLC0415 - opt-in

        handler.setFormatter(json_formatter())
    else:
        if log_format not in ("", "text"):
            problems.append(f"{FORMAT_ENV}={log_format!r} is neither text nor json: using text")
        handler.setFormatter(TextFormatter())
    root.addHandler(handler)
    log_dir = environ.get(LOG_DIRECTORY_ENV) if lakebase else None
    if log_dir:
        try:
            root.addHandler(DailyFileHandler(log_dir))
        except OSError as exc:
            problems.append(f"cannot write logs to {LOG_DIRECTORY_ENV}={log_dir}: {exc}")
    apply_levels(levels)
    log = logging.getLogger("compute_ctl")
    for problem in problems:
        log.warning("%s", problem)
