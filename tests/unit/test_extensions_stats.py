"""Installed-extensions statistics: aggregation, the log line, the metric and interval rules."""

from __future__ import annotations

import json
import logging

import pytest

from compute_ctl.compute.extensions_stats import (
    DEFAULT_COLLECTION_INTERVAL,
    ExtensionStats,
    InstalledExtension,
    aggregate,
    interval_from_suspend_timeout,
    next_sleep,
    stat_line,
)
from compute_ctl.metrics import PromMetrics


def test_rows_are_grouped_by_name_version_and_superuser_ownership() -> None:
    found = aggregate(
        [
            [("plpgsql", "1.0", 10), ("citext", "1.6", 10)],
            [("plpgsql", "1.0", 10), ("citext", "1.6", 16384)],
            [("plpgsql", "1.0", 10), ("citext", "1.5", 10)],
            [],
        ]
    )
    assert found == [
        InstalledExtension("citext", "1.5", 1, "1"),
        InstalledExtension("citext", "1.6", 1, "0"),
        InstalledExtension("citext", "1.6", 1, "1"),
        InstalledExtension("plpgsql", "1.0", 3, "1"),
    ]
    assert aggregate([]) == []


def test_stat_line_has_upstreams_shape() -> None:
    line = stat_line([InstalledExtension("plpgsql", "1.0", 2, "1")])
    assert line == (
        '[NEON_EXT_STAT] {"extensions":[{"extname":"plpgsql","version":"1.0",'
        '"n_databases":2,"owned_by_superuser":"1"}]}'
    )
    assert json.loads(stat_line([]).split(" ", 1)[1]) == {"extensions": []}


@pytest.mark.parametrize(
    ("suspend_timeout", "interval"),
    [(-1, DEFAULT_COLLECTION_INTERVAL), (0, DEFAULT_COLLECTION_INTERVAL), (300, 300), (1, 1)],
)
def test_interval_follows_the_suspend_timeout(suspend_timeout: int, interval: int) -> None:
    assert interval_from_suspend_timeout(suspend_timeout) == interval
    assert interval_from_suspend_timeout(-7) == DEFAULT_COLLECTION_INTERVAL


def test_sleeps_never_shrink() -> None:
    assert next_sleep(20, 5) == 20  # a shorter interval keeps the longer sleep
    assert next_sleep(20, 300) == 600  # a longer one takes over at once
    assert next_sleep(0, 0) == 1  # no busy loop


def test_publish_replaces_the_gauge_samples(caplog: pytest.LogCaptureFixture) -> None:
    prom = PromMetrics()
    stats = ExtensionStats("postgresql://unused", prom, 3600)
    stats.update_interval(-1)
    assert stats.interval == DEFAULT_COLLECTION_INTERVAL
    stats.publish([InstalledExtension("citext", "1.6", 2, "0")])
    with caplog.at_level(logging.INFO):
        stats.publish([InstalledExtension("plpgsql", "1.0", 3, "1")])
    text = prom.render().decode()
    assert (
        'compute_installed_extensions{extension_name="plpgsql",owned_by_superuser="1",'
        'version="1.0"} 3'
    ) in text
    assert "citext" not in text
    assert any(r.getMessage().startswith("[NEON_EXT_STAT] ") for r in caplog.records)
