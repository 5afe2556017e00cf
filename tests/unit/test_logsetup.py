"""RUST_LOG parsing, the line shapes and lakebase's daily files (compute_ctl/logsetup)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from compute_ctl import tracing
from compute_ctl.logsetup import setup_logging
from compute_ctl.logsetup.files import DailyFileHandler, pg_json_line, set_ids
from compute_ctl.logsetup.filter import LEVELS, TRACE, parse_rust_log
from compute_ctl.logsetup.formats import TextFormatter

OFF = LEVELS["off"]


@pytest.mark.parametrize(
    ("value", "levels"),
    [
        (None, {"": logging.INFO}),
        ("", {"": logging.INFO}),
        ("warn", {"": logging.WARNING}),
        ("debug", {"": logging.DEBUG}),
        ("compute_ctl=debug", {"": OFF, "compute_ctl": logging.DEBUG}),
        (
            "compute_ctl::catalog=debug,warn",
            {"compute_ctl.catalog": logging.DEBUG, "": logging.WARNING},
        ),
        ("compute_tools::compute=trace,info", {"compute_ctl.compute": TRACE, "": logging.INFO}),
        ("compute_tools", {"": OFF, "compute_ctl": TRACE}),
        ("loud", {"": OFF, "loud": TRACE}),  # a bare word is a target, as in EnvFilter
        ("info,tokio=off", {"": logging.INFO, "tokio": OFF}),
        (" INFO , ", {"": logging.INFO}),
    ],
)
def test_rust_log_directives(value: str | None, levels: dict[str, int]) -> None:
    problems: list[str] = []
    assert parse_rust_log(value, "info", problems) == levels
    assert problems == []


@pytest.mark.parametrize("value", ["compute_ctl=loud", "a[span]=debug", "=debug", "a b"])
def test_an_invalid_rust_log_falls_back_to_info_and_says_so(value: str) -> None:
    problems: list[str] = []
    assert parse_rust_log(value, "info", problems) == {"": logging.INFO}
    assert len(problems) == 1 and "RUST_LOG" in problems[0]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    levels = {name: logging.getLogger(name).level for name in ("compute_ctl", "x")}
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:], root.level = saved
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_per_module_levels_reach_the_stream(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging({"RUST_LOG": "compute_ctl::catalog=debug,warn"}, stream=out)
    logging.getLogger("compute_ctl.catalog.execute").debug("shown")
    logging.getLogger("compute_ctl.compute").info("hidden")
    logging.getLogger("compute_ctl.compute").warning("also shown")
    lines = out.getvalue().splitlines()
    assert [line[28:] for line in lines] == ["DEBUG shown", " WARN also shown"]
    logging.getLogger("compute_ctl.catalog").setLevel(logging.NOTSET)


def test_text_line_is_upstreams_shape() -> None:
    record = logging.LogRecord("compute_ctl", logging.WARNING, "f", 1, "a %s", ("b",), None)
    record.created = 1733140800.25
    assert TextFormatter().format(record) == "2024-12-02T12:00:00.250000Z  WARN a b"
    with tracing.span("start_compute"), tracing.span("get_basebackup", lsn="0/16B5A50"):
        line = TextFormatter().format(record)
    assert line.endswith("  WARN start_compute:get_basebackup{lsn=0/16B5A50}: a b")


def test_json_lines_carry_the_request_id_and_spans(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging({"COMPUTE_CTL_LOG_FORMAT": "json"}, stream=out)
    token = tracing.request_id.set("req-1")
    try:
        with tracing.span("terminate", mode="fast"):
            logging.getLogger("compute_ctl.x").info("stopping %s", "postgres")
    finally:
        tracing.request_id.reset(token)
    record = json.loads(out.getvalue().splitlines()[-1])
    assert record["message"] == "stopping postgres"
    assert record["level"] == "INFO"
    assert record["logger"] == "compute_ctl.x"
    assert record["request_id"] == "req-1"
    assert record["spans"] == "terminate{mode=fast}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record["timestamp"])


def test_pg_json_line_has_upstreams_fields_in_order() -> None:
    set_ids("i-1", "c-1")
    try:
        record = logging.LogRecord("compute_ctl.x", logging.ERROR, "f", 1, 'say "hi"\n', (), None)
        record.created = 1733140800.5
        line = pg_json_line(record)
    finally:
        set_ids(None, None)
    assert line == (
        '{"timestamp": "2024-12-02 12:00:00.500 GMT", "error_severity": "ERROR", '
        '"file_name": "compute_ctl.x", "backend_type": "compute_ctl_self", '
        '"pg_instance_id": "i-1", "pg_compute_id": "c-1", "message": "say \\"hi\\"\\n"}'
    )


def test_daily_files_append_and_keep_the_two_newest(tmp_path: Path) -> None:
    for day in ("2024-11-28", "2024-11-29", "2024-11-30"):
        (tmp_path / f"pgcctl.{day}").write_text("old\n")
    (tmp_path / "other.log").write_text("kept\n")
    handler = DailyFileHandler(str(tmp_path))
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert sorted(os.listdir(tmp_path)) == ["other.log", "pgcctl.2024-11-30", f"pgcctl.{today}"]
    record = logging.LogRecord("compute_ctl", logging.INFO, "f", 1, "one", (), None)
    handler.emit(record)
    handler.close()  # reopened by the next line, as after uvicorn's logging set-up
    tomorrow = logging.LogRecord("compute_ctl", logging.INFO, "f", 1, "two", (), None)
    tomorrow.created = time.time() + 86400
    handler.emit(tomorrow)
    handler.close()
    next_day = time.strftime("%Y-%m-%d", time.gmtime(tomorrow.created))
    assert sorted(os.listdir(tmp_path)) == ["other.log", f"pgcctl.{today}", f"pgcctl.{next_day}"]
    assert json.loads((tmp_path / f"pgcctl.{today}").read_text())["message"] == "one"
    assert json.loads((tmp_path / f"pgcctl.{next_day}").read_text())["message"] == "two"
