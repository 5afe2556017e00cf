"""`signal_reload` (postgres/process.py) against a real PostgreSQL: the server re-reads its
configuration as after `pg_ctl reload`, and a data directory without a running postmaster is
a logged warning, not an exception."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import psycopg
import pytest

from compute_ctl.postgres.process import signal_reload
from tests.support.pgserver import PgServer


@pytest.fixture(scope="module")
def pg(plain_pg: PgServer) -> PgServer:
    return plain_pg


def show(pg: PgServer, name: str) -> str:
    with psycopg.connect(pg.connstr(), autocommit=True) as conn:
        row = conn.execute(f"SHOW {name}").fetchone()
        assert row is not None
        return str(row[0])


def test_the_server_rereads_its_configuration(pg: PgServer) -> None:
    assert show(pg, "work_mem") != "7MB"
    auto = pg.datadir / "postgresql.auto.conf"
    auto.write_text(auto.read_text() + "work_mem = '7MB'\n")
    signal_reload(pg.datadir)
    deadline = time.monotonic() + 10
    while show(pg, "work_mem") != "7MB":  # the postmaster handles SIGHUP asynchronously
        assert time.monotonic() < deadline, "the reload never took effect"
        time.sleep(0.01)


@pytest.mark.parametrize("content", [None, "", "-42\n/data\n", "not a pid\n"])
def test_no_postmaster_is_a_warning(
    tmp_path: Path, content: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    if content is not None:
        (tmp_path / "postmaster.pid").write_text(content)
    with caplog.at_level(logging.WARNING):
        signal_reload(tmp_path)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "cannot signal Postgres to reload its configuration"
    ]
