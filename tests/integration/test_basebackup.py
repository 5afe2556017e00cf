"""get_basebackup end to end against the stand-ins: protocol choice, identical results, retries.

Each injection point reaches the client here through the whole path compute_ctl uses
(retry policy, streaming extraction): a transient fault is retried and the fetch then
succeeds; a permanent one fails with a message naming the pageserver and the cause, within the
policy's bound.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from compute_ctl.errors import ComputeError, StorageError
from compute_ctl.spec.models import ComputeSpec
from compute_ctl.spec.resolve import ParsedSpec, resolve
from compute_ctl.storage.basebackup import BasebackupStats, get_basebackup
from compute_ctl.storage.pageserver import pageserver_client
from compute_ctl.storage.retry import RetryPolicy
from compute_dev.standins.grpc_server import GrpcFaults, start_grpc_stand_in
from compute_dev.standins.pageserver import Faults, serve_pageserver_libpq
from compute_dev.standins.timelines import Timeline, TimelineStore

FAST = RetryPolicy(max_retries=3, initial_delay=0.0, multiplier=1.0)


def tree(root: Path) -> dict[str, str]:
    """Relative path → content digest (directories as 'dir'), for comparing two unpacks."""
    out: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = "dir"
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return out


def parsed(timeline: Timeline, libpq_url: str, grpc_url: str, protocol: str) -> ParsedSpec:
    spec = ComputeSpec.model_validate(
        {
            "format_version": 1.0,
            "suspend_timeout_seconds": -1,
            "cluster": {"roles": [], "databases": []},
            "tenant_id": timeline.tenant_id,
            "timeline_id": timeline.timeline_id,
            "safekeeper_connstrings": ["127.0.0.1:1"],
            "pageserver_connection_info": {
                "shard_count": 0,
                "shards": {
                    "0000": {"pageservers": [{"libpq_url": libpq_url, "grpc_url": grpc_url}]}
                },
                "prefer_protocol": protocol,
            },
        }
    )
    return resolve(spec)


@pytest.fixture
def pgdata() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="basebackup-") as tmp:
        path = Path(tmp) / "pgdata"
        path.mkdir(mode=0o700)
        (path / "postgresql.conf").write_text("# written before the basebackup\n")
        yield path


Fetch = Callable[[ParsedSpec], Awaitable[BasebackupStats]]


def with_stand_ins(
    store: TimelineStore,
    timeline: Timeline,
    protocol: str,
    body: Callable[[ParsedSpec], Awaitable[Any]],
    *,
    faults: Faults | None = None,
    grpc_faults: GrpcFaults | None = None,
) -> Any:
    async def go() -> Any:
        libpq = await serve_pageserver_libpq(store, "127.0.0.1", 0, faults=faults)
        stand_in = await start_grpc_stand_in(store, "127.0.0.1", 0, faults=grpc_faults)
        try:
            port = libpq.sockets[0].getsockname()[1]
            pspec = parsed(timeline, f"postgres://no_user@127.0.0.1:{port}", stand_in.url, protocol)
            return await body(pspec)
        finally:
            libpq.close()
            await stand_in.stop()

    return asyncio.run(go())


def test_both_protocols_unpack_the_same_files(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    trees = {}
    for protocol in ("libpq", "grpc"):
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp)

            async def fetch(pspec: ParsedSpec, target: Path = target) -> BasebackupStats:
                return await get_basebackup(
                    pageserver_client(pspec), timeline.lsn, target, policy=FAST
                )

            stats = with_stand_ins(timeline_store, timeline, protocol, fetch)
            assert stats.compressed_bytes > 0
            assert stats.connect_micros > 0
            trees[protocol] = tree(target)
    assert trees["libpq"] == trees["grpc"]
    assert "global/pg_control" in trees["libpq"]
    assert "postgresql.conf" not in trees["libpq"]


@pytest.mark.parametrize(
    "fault",
    [
        "drop_before_handshake",
        "timeline_not_found",
        "error_mid_stream",
        "error_after_end_marker",
        "corrupt_gzip",
        "drop_mid_stream",
    ],
)
def test_libpq_transient_faults_are_retried(
    fault: str, timeline_store: TimelineStore, timeline: Timeline, pgdata: Path
) -> None:
    faults = Faults(times=2, cut_after=64 * 1024, **{fault: True})

    async def fetch(pspec: ParsedSpec) -> BasebackupStats:
        return await get_basebackup(pageserver_client(pspec), None, pgdata, policy=FAST)

    stats = with_stand_ins(timeline_store, timeline, "libpq", fetch, faults=faults)
    assert faults.fired == 2
    assert stats.compressed_bytes > 0
    assert (pgdata / "global" / "pg_control").exists()
    assert (pgdata / "postgresql.conf").read_text() == "# written before the basebackup\n"


@pytest.mark.parametrize(
    "grpc_faults",
    [
        GrpcFaults(start_code=grpc.StatusCode.UNAVAILABLE, calls=2),
        GrpcFaults(start_code=grpc.StatusCode.NOT_FOUND, calls=2),
        GrpcFaults(internal_after_chunks=1, calls=2),
    ],
    ids=["unavailable", "not-found", "internal-after-chunk"],
)
def test_grpc_transient_faults_are_retried(
    grpc_faults: GrpcFaults, timeline_store: TimelineStore, timeline: Timeline, pgdata: Path
) -> None:
    async def fetch(pspec: ParsedSpec) -> BasebackupStats:
        return await get_basebackup(pageserver_client(pspec), None, pgdata, policy=FAST)

    stats = with_stand_ins(timeline_store, timeline, "grpc", fetch, grpc_faults=grpc_faults)
    assert stats.compressed_bytes > 0
    assert (pgdata / "global" / "pg_control").exists()


def test_permanent_failure_names_pageserver_and_cause(
    timeline_store: TimelineStore, timeline: Timeline, pgdata: Path
) -> None:
    faults = Faults(deny_tenant=True)

    async def fetch(pspec: ParsedSpec) -> ComputeError:
        with pytest.raises(ComputeError) as info:
            await get_basebackup(pageserver_client(pspec), None, pgdata, policy=FAST)
        return info.value

    error = with_stand_ins(timeline_store, timeline, "libpq", fetch, faults=faults)
    assert str(error) == "failed to get basebackup@0/0"
    cause = error.__cause__
    assert isinstance(cause, StorageError)
    assert "127.0.0.1" in str(cause)
    assert faults.fired == 1  # a permission failure is not retried


def test_transient_failures_give_up_after_the_policy(
    timeline_store: TimelineStore, timeline: Timeline, pgdata: Path
) -> None:
    faults = Faults(timeline_not_found=True)

    async def fetch(pspec: ParsedSpec) -> ComputeError:
        with pytest.raises(ComputeError) as info:
            await get_basebackup(pageserver_client(pspec), timeline.lsn, pgdata, policy=FAST)
        return info.value

    error = with_stand_ins(timeline_store, timeline, "libpq", fetch, faults=faults)
    assert str(error) == f"failed to get basebackup@{timeline.lsn}"
    assert faults.fired == FAST.max_attempts
