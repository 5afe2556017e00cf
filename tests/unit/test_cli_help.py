"""`compute_ctl --help` and `--version`, and the man page and shell completion made from the
same parser (scripts/install.sh manual)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from compute_ctl import __version__
from compute_ctl.cli import build_parser

BIN = Path(sys.executable).parent


def flags() -> list[argparse.Action]:
    return [a for a in build_parser()._actions if a.option_strings and a.dest != "help"]


def test_every_flag_has_help_with_its_default() -> None:
    for action in flags():
        if action.dest == "version":
            continue
        text = action.help or ""
        assert "default" in text or "required" in text, action.option_strings
        if action.default not in (None, False) and "%(default)s" not in text:
            pytest.fail(f"{action.option_strings}: the default {action.default!r} is not shown")


def test_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--help"])
    assert exited.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: neon_superuser)" in out
    assert "(default: 3080)" in out
    assert "(default: 3600)" in out


def test_version_names_the_package_and_the_build_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILD_TAG", "release-1234")
    out = subprocess.run(
        [sys.executable, "-m", "compute_ctl.entry", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == f"compute_ctl {__version__} (build tag release-1234)\n"


def test_man_page_and_completion_cover_every_flag(tmp_path: Path) -> None:
    if not (BIN / "shtab").exists() or not (BIN / "argparse-manpage").exists():
        pytest.skip("shtab and argparse-manpage come with the dev extra")
    man = tmp_path / "compute_ctl.1"
    subprocess.run(
        [
            *(str(BIN / "argparse-manpage"), "--module", "compute_ctl.cli"),
            *("--function", "build_parser", "--prog", "compute_ctl", "--output", str(man)),
        ],
        check=True,
        capture_output=True,
    )
    completion = subprocess.run(
        [str(BIN / "shtab"), "--shell=bash", "compute_ctl.cli.build_parser"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    page = man.read_text().replace("\\-", "-")
    for action in flags():
        long = action.option_strings[-1]
        assert long in page, long
        assert long in completion, long
