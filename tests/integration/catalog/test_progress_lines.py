"""A catalog apply that takes longer than the progress interval says which phase it is in and
how far it got (compute_ctl/progress.py; the interval is shortened here)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from compute_ctl import progress
from compute_ctl.catalog import apply_spec
from tests.integration.catalog.conftest import apply, role_names, spec_of
from tests.support.pgserver import PgServer

pytestmark = pytest.mark.postgres


def test_a_long_apply_names_its_phase_and_progress(
    pg: PgServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(progress, "INTERVAL", 0.001)
    roles = [{"name": f"progress role {i:02d}"} for i in range(20)]
    caplog.set_level(logging.INFO, logger="compute_ctl.catalog")
    try:
        report = asyncio.run(apply_spec(pg.connstr(), spec_of(roles)))
        assert report.executed >= len(roles)
        assert role_names(pg, [r["name"] for r in roles]) == {r["name"] for r in roles}
    finally:
        apply(
            pg,
            spec_of(delta_operations=[{"action": "delete_role", "name": r["name"]} for r in roles]),
        )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("still ")]
    assert lines, [r.getMessage() for r in caplog.records]
    assert any(
        line.startswith("still applying the spec: phase CreateAndAlterRoles, ")
        and " statements executed (" in line
        for line in lines
    ), lines
