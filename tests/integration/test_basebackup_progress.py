"""A basebackup that takes longer than the progress interval logs the bytes received and the
rate while it runs (compute_ctl/progress.py; the interval is shortened here)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from compute_ctl import progress
from compute_ctl.spec.resolve import ParsedSpec
from compute_ctl.storage.basebackup import BasebackupStats, get_basebackup
from compute_ctl.storage.pageserver import pageserver_client
from compute_dev.standins.timelines import Timeline, TimelineStore
from tests.integration.test_basebackup import FAST, pgdata, with_stand_ins

__all__ = ["pgdata"]  # the fixture, shared with test_basebackup.py

LINE = re.compile(r"basebackup: \d+\.\d MiB received in \d+ s \(\d+\.\d MiB/s\)")


@pytest.mark.parametrize("protocol", ["libpq", "grpc"])
def test_basebackup_logs_bytes_and_rate_while_it_runs(
    protocol: str,
    timeline_store: TimelineStore,
    timeline: Timeline,
    pgdata: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="compute_ctl.storage")

    async def fetch(pspec: ParsedSpec) -> BasebackupStats:
        return await get_basebackup(pageserver_client(pspec), timeline.lsn, pgdata, policy=FAST)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(progress, "INTERVAL", 0.001)
        stats = with_stand_ins(timeline_store, timeline, protocol, fetch)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("basebackup: ")]
    assert lines and all(LINE.fullmatch(line) for line in lines), lines
    last = float(lines[-1].split(" ")[1])
    assert 0 < last <= stats.compressed_bytes / (1 << 20) + 0.05
