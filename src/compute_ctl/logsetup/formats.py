"""The shapes of a log line: upstream's text line on stderr, and opt-in JSON lines.

Upstream prints with `tracing_subscriber`'s default format without targets: an RFC 3339 UTC
timestamp with microseconds, the level right-aligned in five columns (`TRACE`, `DEBUG`,
` INFO`, ` WARN`, `ERROR`), the spans the event happened in as `outer:inner{field=value}: `,
then the message. `docs/compatibility.md` ("Log lines") shows one of theirs beside ours.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from compute_ctl import tracing

RUST_LEVELS = {
    "TRACE": "TRACE",
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "WARNING": "WARN",
    "ERROR": "ERROR",
    "CRITICAL": "ERROR",
}


def rust_level(record: logging.LogRecord) -> str:
    return RUST_LEVELS.get(record.levelname, record.levelname)


def rfc3339_micros(created: float) -> str:
    seconds = int(created)
    micros = int((created - seconds) * 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = tracing.span_prefix()
        line = f"{rfc3339_micros(record.created)} {rust_level(record):>5} "
        if prefix:
            line += prefix + ": "
        line += record.getMessage()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def json_formatter() -> logging.Formatter:
    """One JSON object per line: timestamp, level, logger, message, and the request id, trace
    id, span id and span names when there are."""
    from pythonjsonlogger.json import JsonFormatter  # noqa: PLC0415 - only when asked for

    class Formatter(JsonFormatter):
        def add_fields(
            self,
            log_data: dict[str, Any],
            record: logging.LogRecord,
            message_dict: dict[str, Any],
        ) -> None:
            super().add_fields(log_data, record, message_dict)
            log_data["timestamp"] = rfc3339_micros(record.created)
            log_data["level"] = rust_level(record)
            log_data["logger"] = record.name
            request_id = tracing.request_id.get()
            if request_id:
                log_data["request_id"] = request_id
            ids = tracing.ids()
            if ids is not None:
                log_data["trace_id"], log_data["span_id"] = ids
            prefix = tracing.span_prefix()
            if prefix:
                log_data["spans"] = prefix

    return Formatter("%(message)s", json_ensure_ascii=False)
