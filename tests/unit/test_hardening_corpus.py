"""The hostile-input corpus (tests/hardening_corpus.py) through `compute-dev spec check`: each
document fails with exit 1 and one short line naming the field, never a traceback; the
documents just inside each bound pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compute_ctl.errors import SpecError, excerpt
from compute_ctl.spec.load import MAX_DEPTH, JsonTextError, parse_json
from compute_dev.cli import main
from tests.support.hardening_corpus import (
    ACCEPTED_DEPTH,
    ACCEPTED_NAMES,
    LONGEST_LINE,
    Case,
    corpus,
)
from tests.support.paths import PROJECT_ROOT

CORPUS = corpus()


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["spec", "check", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_corpus_via_spec_check(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spec.json"
    path.write_text(case.text)
    code, out, err = check(path, capsys)
    assert (code, out) == (1, ""), err[:LONGEST_LINE]
    assert err.count("\n") == 1 and err.endswith("\n"), err[:LONGEST_LINE]
    assert len(err) < LONGEST_LINE, err[:LONGEST_LINE]
    assert err.startswith(f"error: {case.field}"), err
    assert case.problem in err, err
    assert "Traceback" not in err


def test_corpus_covers_every_class() -> None:
    names = [case.name for case in CORPUS]
    for prefix in ("deep-", "surrogate-", "reserved-", "huge-"):
        assert sum(name.startswith(prefix) for name in names) >= 4, prefix
    assert len(CORPUS) >= 50


@pytest.mark.parametrize("spec", [ACCEPTED_DEPTH, ACCEPTED_NAMES], ids=["depth-127", "names"])
def test_just_inside_the_bounds_passes(
    spec: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    code, _, err = check(path, capsys)
    assert (code, err) == (0, "")


def test_depth_bound_is_the_control_planes() -> None:
    assert isinstance(parse_json("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)), list)
    with pytest.raises(JsonTextError) as caught:
        parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    assert caught.value.field == f"line 1 column {MAX_DEPTH}"
    with pytest.raises(JsonTextError) as caught:
        parse_json(b'{\n "a": ' + b"[" * 200)
    assert caught.value.field == "line 2 column 133"


@pytest.mark.parametrize(
    "text",
    [r'["\ud83d\ude00"]', r'["\\ud800"]', '["😀"]'],
    ids=["escaped-pair", "escaped-backslash", "raw-utf8"],
)
def test_valid_unicode_is_not_a_surrogate(text: str) -> None:
    parse_json(text.encode())


def test_raw_surrogates_in_text_are_refused() -> None:
    with pytest.raises(JsonTextError):
        parse_json('["\ud800"]')  # already-decoded text handed over by a caller
    with pytest.raises(JsonTextError):
        parse_json(b'["\xed\xa0\x80"]')  # the UTF-8-style encoding of U+D800 is not UTF-8


def test_excerpt_is_short_and_escaped() -> None:
    assert excerpt("ab") == "'ab'"
    shown = excerpt("a\n\x00" + "x" * 100)
    assert shown.startswith("'a\\n\\x00xxx") and shown.endswith("… (103 characters)")
    assert "\n" not in shown and "\0" not in shown
    assert len(excerpt("\ud800" * 10_000)) < 300
    error = SpecError("f" * 10_000, "p" * 10_000)
    assert len(error.one_line()) < 1200


def test_console_script_prints_no_traceback_for_deep_nesting(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 1500)
    result = subprocess.run(
        [sys.executable, "-m", "compute_dev.cli", "spec", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "error: line 1 column 128: recursion limit exceeded: nested 128 levels deep\n"
    )
