"""The installed-extensions scan of a running compute, seen through `GET /metrics` and the
`[NEON_EXT_STAT]` log line."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import SpecFactory
from tests.support.harness import Compute, http
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres

PLPGSQL = (
    'compute_installed_extensions{extension_name="plpgsql",owned_by_superuser="1",version="1.0"}'
)
CITEXT = (
    'compute_installed_extensions{extension_name="citext",owned_by_superuser="1",version="1.6"}'
)


def test_periodic_scan_reports_installed_extensions(
    compute: Compute, make_spec: SpecFactory
) -> None:
    # skip_pg_catalog_updates keeps the command-line interval: the first periodic scan
    # comes after 2 s.
    spec = make_spec()
    compute.start(
        "-S",
        str(compute.write("spec.json", spec)),
        "--installed-extensions-collection-interval",
        "1",
    )
    compute.wait_status("running")
    # The scan right after start-up: plpgsql in postgres and template1.
    wait_until("the start-up scan", lambda: compute.metric(PLPGSQL) is not None)
    assert compute.metric(PLPGSQL) == 2, compute.log()
    assert "[NEON_EXT_STAT] " in compute.log()

    compute.execute('CREATE DATABASE "ext db"')
    request = {"extension": "citext", "database": "ext db", "version": "1.6"}
    answer = http("POST", f"{compute.internal_url}/extensions", request)
    assert answer.status == 201, answer

    wait_until("citext in /metrics", lambda: compute.metric(CITEXT) == 1)
    assert compute.metric(PLPGSQL) == 3
    stat_lines = [line for line in compute.log().splitlines() if "[NEON_EXT_STAT] " in line]
    assert any('"extname":"citext"' in line for line in stat_lines), stat_lines
