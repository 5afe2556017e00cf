"""The stand-ins' timeline store: initdb-backed timelines and the pageserver-like tarball.

The tarball is the payload every basebackup test downloads, so it is checked for the
pageserver's shape (GNU headers, modes, signal files, pg_control late, no
postgresql.conf, end marker, exact chunking) and for the property that makes it useful here:
stock PostgreSQL starts from it.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from compute_ctl.archive import extract_stream
from compute_ctl.spec.types import Lsn, TenantId, TimelineId
from compute_dev.commands.timeline import add_timeline_parser
from compute_dev.pgbin import find_pg_bin, server_user
from compute_dev.standins import timelines
from compute_dev.standins.timelines import Timeline, TimelineError, TimelineStore


@pytest.fixture(scope="module")
def shared_dir() -> Iterator[Path]:
    """A scratch directory the `postgres` user can traverse (pytest's own is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="compute-ctl-timelines-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def store(shared_dir: Path) -> TimelineStore:
    return TimelineStore(shared_dir / "store")


@pytest.fixture(scope="module")
def timeline(store: TimelineStore) -> Timeline:
    return store.create()


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        return archive.getmembers()


@pytest.mark.postgres
def test_create_records_ids_and_checkpoint_lsn(store: TimelineStore, timeline: Timeline) -> None:
    record = json.loads((timeline.datadir.parent / "timeline.json").read_text())
    assert record == {
        "tenant_id": timeline.tenant_id,
        "timeline_id": timeline.timeline_id,
        "lsn": str(timeline.lsn),
    }
    assert timeline.datadir == (
        store.root / "tenants" / timeline.tenant_id / "timelines" / timeline.timeline_id / "pgdata"
    )
    # The LSN is pg_controldata's latest checkpoint location of the stored directory.
    control = subprocess.run(
        [str(find_pg_bin() / "pg_controldata"), "-D", str(timeline.datadir)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LC_ALL": "C"},
    ).stdout
    (line,) = [x for x in control.splitlines() if x.startswith("Latest checkpoint location:")]
    assert Lsn.parse(line.split(":", 1)[1]) == timeline.lsn > 0
    assert (timeline.datadir / "PG_VERSION").is_file()
    # initdb ran as the server user, and the directory is theirs.
    assert timeline.datadir.stat().st_uid == server_user().uid
    assert store.get(timeline.tenant_id, timeline.timeline_id) == timeline
    assert timeline in store.list()


@pytest.mark.postgres
def test_create_with_given_ids_and_refuse_duplicates(shared_dir: Path) -> None:
    store = TimelineStore(shared_dir / "given")
    tenant, timeline_id = TenantId("AB" * 16), TimelineId("0" * 31 + "1")
    made = store.create(tenant_id=tenant, timeline_id=timeline_id)
    assert (made.tenant_id, made.timeline_id) == ("ab" * 16, "0" * 31 + "1")
    with pytest.raises(TimelineError, match="already exists"):
        store.create(tenant_id=tenant, timeline_id=timeline_id)
    assert store.list() == [made]


def test_get_and_list_on_empty_store(tmp_path: Path) -> None:
    store = TimelineStore(tmp_path)
    assert store.get(TenantId.generate(), TimelineId.generate()) is None
    assert store.list() == []


def test_half_made_timeline_is_invisible(tmp_path: Path) -> None:
    """Without timeline.json (written last) a directory is not a timeline."""
    tenant, timeline_id = TenantId.generate(), TimelineId.generate()
    (tmp_path / "tenants" / tenant / "timelines" / timeline_id / "pgdata").mkdir(parents=True)
    store = TimelineStore(tmp_path)
    assert store.get(tenant, timeline_id) is None
    assert store.list() == []


def test_corrupt_record_is_an_error(tmp_path: Path) -> None:
    tenant, timeline_id = TenantId.generate(), TimelineId.generate()
    directory = tmp_path / "tenants" / tenant / "timelines" / timeline_id
    directory.mkdir(parents=True)
    (directory / "timeline.json").write_text('{"tenant_id": "x"}')
    with pytest.raises(TimelineError, match="not a timeline record"):
        TimelineStore(tmp_path).get(tenant, timeline_id)


@pytest.mark.postgres
def test_tarball_shape(timeline: Timeline) -> None:
    stray = timeline.datadir / "postmaster.pid"
    stray.write_text("12345\n")
    try:
        before = int(time.time())
        data = b"".join(timeline.tar_chunks(gzip=False))
        after = int(time.time())
    finally:
        stray.unlink()
    members = _members(data)
    names = [m.name for m in members]

    for excluded in ("postgresql.conf", "postmaster.pid", "postmaster.opts"):
        assert excluded not in names
    assert (timeline.datadir / "postgresql.conf").exists()  # excluded, not missing
    for present in ("pg_hba.conf", "pg_ident.conf", "postgresql.auto.conf", "PG_VERSION"):
        assert present in names
    assert len(names) == len(set(names))

    # GNU headers, modes, one "now" mtime, root ownership not leaked.
    assert data[257:265] == b"ustar  \0"
    dirs = [m for m in members if m.isdir()]
    files = [m for m in members if m.isfile()]
    assert len(dirs) + len(files) == len(members)
    assert {m.mode for m in dirs} == {0o755}
    assert {m.mode for m in files} == {0o600}
    assert len({m.mtime for m in members}) == 1
    assert before <= members[0].mtime <= after

    # Directories first; then data; the signal files, pg_control, and the WAL at the very end.
    first_file = names.index(files[0].name)
    assert all(m.isdir() for m in members[:first_file])
    assert "base" in names[:first_file]
    assert "pg_wal/archive_status" in names[:first_file]
    tail = names[names.index("neon.signal") :]
    assert tail[:3] == ["neon.signal", "zenith.signal", "global/pg_control"]
    assert tail[3:] and all(n.startswith("pg_wal/") for n in tail[3:])

    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        signals = []
        for name in ("neon.signal", "zenith.signal"):
            handle = archive.extractfile(name)
            assert handle is not None
            signals.append(handle.read())
    assert signals == [b"PREV LSN: invalid"] * 2

    # Content is the stored file, byte for byte.
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        handle = archive.extractfile("global/pg_control")
        assert handle is not None
        assert handle.read() == (timeline.datadir / "global/pg_control").read_bytes()

    # Exactly one end-of-archive marker: two zero blocks, nothing after.
    assert data.endswith(bytes(1024))
    assert len(data) % 512 == 0
    last = members[-1]
    end_of_last = last.offset_data + -(-last.size // 512) * 512
    assert len(data) == end_of_last + 1024


@pytest.mark.postgres
def test_chunking_and_gzip(timeline: Timeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timelines, "_now", lambda: 1_700_000_000)
    raw = list(timeline.tar_chunks(gzip=False, chunk_size=100_000))
    assert all(len(c) == 100_000 for c in raw[:-1])
    assert 0 < len(raw[-1]) <= 100_000
    packed = list(timeline.tar_chunks(gzip=True))
    assert all(len(c) == 256 * 1024 for c in packed[:-1])
    assert 0 < len(packed[-1]) <= 256 * 1024
    joined = b"".join(packed)
    assert joined[:2] == b"\x1f\x8b"
    assert gzip.decompress(joined) == b"".join(raw)
    assert sum(map(len, packed)) < sum(map(len, raw))


def test_tar_chunks_rejects_bad_chunk_size(tmp_path: Path) -> None:
    fake = Timeline(TenantId.generate(), TimelineId.generate(), Lsn(1), tmp_path)
    with pytest.raises(ValueError, match="chunk_size"):
        next(fake.tar_chunks(gzip=False, chunk_size=0))


def test_tar_of_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    fake = Timeline(TenantId.generate(), TimelineId.generate(), Lsn(1), tmp_path / "gone")
    with pytest.raises(TimelineError, match="no data directory"):
        next(fake.tar_chunks(gzip=False))


def test_tarball_is_streamed_not_built_in_memory(tmp_path: Path) -> None:
    """A large (sparse) file streams with a bounded amount of memory, gzip or not."""
    datadir = tmp_path / "pgdata"
    (datadir / "base" / "1").mkdir(parents=True)
    size = 256 * 1024 * 1024
    with (datadir / "base" / "1" / "16384").open("wb") as handle:
        handle.truncate(size)
    fake = Timeline(TenantId.generate(), TimelineId.generate(), Lsn(1), datadir)
    for gzipped in (False, True):
        total = 0
        tracemalloc.start()
        try:
            for chunk in fake.tar_chunks(gzip=gzipped):
                total += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 16 * 1024 * 1024, f"peak {peak} bytes for gzip={gzipped}"
        if not gzipped:
            assert total > size


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_server_user(argv: list[str]) -> subprocess.CompletedProcess[str]:
    user = server_user()
    return subprocess.run(
        argv, preexec_fn=user.preexec(), env=user.env(), capture_output=True, text=True, check=False
    )


@pytest.mark.postgres
def test_stock_postgres_starts_from_the_tarball(timeline: Timeline, shared_dir: Path) -> None:
    """Unpack the gzip stream the way compute_ctl does (ignore_zeros, own postgresql.conf),
    then start and query the cluster as the server user."""
    user = server_user()
    pg_bin = find_pg_bin()
    work = Path(tempfile.mkdtemp(prefix="unpack-", dir=shared_dir))
    pgdata, sockets = work / "pgdata", work / "sockets"
    pgdata.mkdir(mode=0o700)
    sockets.mkdir()
    (pgdata / "postgresql.conf").write_text("# written before the unpack\n")
    extract_stream(timeline.tar_chunks(gzip=True), pgdata)
    assert (pgdata / "postgresql.conf").read_text() == "# written before the unpack\n"
    port = _free_port()
    (pgdata / "postgresql.conf").write_text(
        f"port = {port}\n"
        "listen_addresses = '127.0.0.1'\n"
        f"unix_socket_directories = '{sockets}'\n"
        "fsync = off\n"
    )
    pgdata.chmod(0o700)
    user.chown(work)
    pg_ctl = str(pg_bin / "pg_ctl")
    log = work / "postgres.log"
    started = _as_server_user(
        [pg_ctl, "start", "-w", "-t", "60", "-D", str(pgdata), "-l", str(log)]
    )
    try:
        server_log = log.read_text() if log.exists() else "(pg_ctl wrote no log file)"
        assert started.returncode == 0, (
            f"pg_ctl start exited {started.returncode}: {started.stdout}{started.stderr}"
            f"{server_log}"
        )
        with psycopg.connect(
            host=str(sockets), port=port, user="cloud_admin", dbname="postgres"
        ) as conn:
            row = conn.execute("SELECT current_user, pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        assert row[0] == "cloud_admin"
        assert Lsn.parse(row[1]) >= timeline.lsn
    finally:
        stopped = _as_server_user([pg_ctl, "stop", "-m", "fast", "-w", "-D", str(pgdata)])
        shutil.rmtree(work, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stderr


@pytest.mark.postgres
def test_cli_create_prints_json(shared_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="compute-dev")
    add_timeline_parser(parser.add_subparsers(dest="command", required=True))
    root = shared_dir / "cli"
    tenant = TenantId.generate()
    args = parser.parse_args(
        ["timeline", "create", "--dir", str(root), "--tenant-id", tenant.upper()]
    )
    assert args.handler(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"tenant_id", "timeline_id", "lsn"}
    assert printed["tenant_id"] == tenant
    made = TimelineStore(root).get(
        TenantId(printed["tenant_id"]), TimelineId(printed["timeline_id"])
    )
    assert made is not None
    assert str(made.lsn) == printed["lsn"]
    # The same command again (same ids) fails with one line on stderr, no traceback.
    again = parser.parse_args(
        [
            "timeline",
            "create",
            "--dir",
            str(root),
            "--tenant-id",
            tenant,
            "--timeline-id",
            printed["timeline_id"],
        ]
    )
    assert again.handler(again) == 1
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["timeline", "create", "--dir", str(root), "--tenant-id", "nothex"])


def test_failed_initdb_leaves_nothing_behind(shared_dir: Path) -> None:
    fake_bin = Path(tempfile.mkdtemp(prefix="fake-bin-", dir=shared_dir))
    fake_bin.chmod(0o755)
    (fake_bin / "postgres").write_text("")
    initdb = fake_bin / "initdb"
    initdb.write_text("#!/bin/sh\necho 'initdb: boom' >&2\nexit 3\n")
    initdb.chmod(0o755)
    store = TimelineStore(shared_dir / "failing")
    tenant, timeline_id = TenantId.generate(), TimelineId.generate()
    with pytest.raises(TimelineError, match="initdb failed with exit status 3: initdb: boom"):
        store.create(tenant_id=tenant, timeline_id=timeline_id, pg_bin=fake_bin)
    assert not (store.root / "tenants" / tenant / "timelines" / timeline_id).exists()
    assert store.list() == []
