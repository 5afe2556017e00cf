"""Lakebase's log files: every line also goes, as JSON in Postgres' JSON log shape, to a file
per UTC day `pgcctl.YYYY-MM-DD` in `COMPUTE_CTL_LOG_DIRECTORY`, so the log daemon that ships
Postgres' JSON logs ships compute_ctl's too. As upstream: lines are appended (a restart loop
keeps one file per day), only the two newest files are kept, and each line names the instance
(`INSTANCE_ID`) and the compute id once a spec is known (`set_ids`), empty before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from pathlib import Path
from typing import TextIO

from compute_ctl.logsetup.formats import rust_level

PREFIX = "pgcctl"
KEEP_FILES = 2
_DATED = re.compile(re.escape(PREFIX) + r"\.\d{4}-\d{2}-\d{2}")

_ids = {"pg_instance_id": "", "pg_compute_id": ""}


def set_ids(instance_id: str | None, compute_id: str | None) -> None:
    """The ids every file line carries from now on (upstream sets them with the spec)."""
    _ids["pg_instance_id"] = instance_id or ""
    _ids["pg_compute_id"] = compute_id or ""


def pg_json_line(record: logging.LogRecord) -> str:
    millis = int(record.created * 1000) % 1000
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created)) + f".{millis:03d} GMT"
    fields = {
        "timestamp": stamp,
        "error_severity": rust_level(record),
        "file_name": record.name,
        "backend_type": "compute_ctl_self",
        **_ids,
        "message": record.getMessage(),
    }
    return json.dumps(fields, ensure_ascii=False)


class DailyFileHandler(logging.Handler):
    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._day = ""
        self._file: TextIO | None = None
        self._open(time.time())

    def _open(self, now: float) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        if self._file is not None:
            self._file.close()
        self._file = open(self.directory / f"{PREFIX}.{day}", "a", encoding="utf-8")  # noqa: SIM115
        self._day = day
        self._prune()

    def _prune(self) -> None:
        dated = sorted(p for p in self.directory.iterdir() if _DATED.fullmatch(p.name))
        for old in dated[:-KEEP_FILES]:
            with contextlib.suppress(OSError):
                old.unlink()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = pg_json_line(record)
            # Closed handlers are reopened: uvicorn's logging set-up closes every handler.
            day = time.strftime("%Y-%m-%d", time.gmtime(record.created))
            if day != self._day or self._file is None:
                self._open(record.created)
            assert self._file is not None
            self._file.write(line + "\n")
            self._file.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()
