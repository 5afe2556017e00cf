"""Progress lines of long work (compute_ctl/progress.py), with a short interval."""

from __future__ import annotations

import asyncio
import logging

import pytest

from compute_ctl import progress


async def _until(records: list[logging.LogRecord], count: int) -> None:
    while len(records) < count:
        await asyncio.sleep(0.005)


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> tuple[logging.Logger, _Keep]:
    logger = logging.getLogger("test.progress")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    keep = _Keep()
    logger.handlers[:] = [keep]
    return logger, keep


def test_meter_reports_bytes_and_rate_until_stopped(kept: tuple[logging.Logger, _Keep]) -> None:
    logger, keep = kept

    async def transfer() -> None:
        meter = progress.Meter(logger, "basebackup", interval=0.02)
        meter.add(3 << 20)
        await asyncio.wait_for(_until(keep.records, 2), 10)
        meter.stop()
        seen = len(keep.records)
        await asyncio.sleep(0.06)  # a stopped meter's timer never fires again
        assert len(keep.records) == seen

    asyncio.run(transfer())
    message = keep.records[0].getMessage()
    assert message.startswith("basebackup: 3.0 MiB received in 0 s (")
    assert message.endswith(" MiB/s)")


def test_still_running_is_silent_for_short_work(kept: tuple[logging.Logger, _Keep]) -> None:
    logger, keep = kept

    async def work() -> None:
        with progress.still_running(logger, "syncing safekeepers", interval=0.02):
            await asyncio.wait_for(_until(keep.records, 2), 10)
        with progress.still_running(logger, "quick", interval=30):
            pass

    asyncio.run(work())
    assert [r.getMessage().split(" (")[0] for r in keep.records[:2]] == [
        "still syncing safekeepers",
        "still syncing safekeepers",
    ]
    assert not [r for r in keep.records if "quick" in r.getMessage()]
