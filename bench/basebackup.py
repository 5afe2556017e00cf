"""P4: basebackup throughput of both protocols against the physical floor.

A timeline of about 1 GiB (initdb plus synthetic relation files, half random and half zero
pages, so the gzip stream is about half the size) is served by `compute-dev storage` in its
own process from a prepared gzip file. compute_ctl's basebackup path (`get_basebackup`: client,
streaming gunzip + untar in a worker thread, the safety checks) fetches it into an empty
directory. The floor is `gzip -dc file | tar x` on the same file, in the same process tree.

Usage: python bench/basebackup.py [--size-mib 1024] [--runs 3] [--dir DIR]
Writes bench/results/basebackup.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from compute_ctl.spec.models import ComputeSpec
from compute_ctl.spec.resolve import resolve
from compute_ctl.storage.basebackup import get_basebackup
from compute_ctl.storage.pageserver import pageserver_client
from compute_dev.pgbin import find_pg_bin
from compute_dev.standins.timelines import Timeline, TimelineStore

RESULTS = Path(__file__).resolve().parent / "results"
PAGE = 8192
FILE_MIB = 64


def progress(text: str) -> None:
    print(f"[basebackup] {text}", flush=True)


def fill(datadir: Path, size_mib: int) -> int:
    """Add relation-like files (half random, half zero pages) until about `size_mib`."""
    target = datadir / "base" / "5"
    written = 0
    number = 900000
    half = os.urandom(PAGE // 2)
    while written < size_mib << 20:
        with open(target / str(number), "wb") as out:
            for _ in range((FILE_MIB << 20) // (PAGE * 256)):
                block = bytearray()
                for _ in range(256):
                    block += os.urandom(PAGE // 2) if number % 2 else half
                    block += bytes(PAGE // 2)
                out.write(block)
        written += FILE_MIB << 20
        number += 1
    return written


def du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        total += sum(os.lstat(os.path.join(root, f)).st_size for f in files)
    return total


def floor_run(archive: Path, work: Path) -> float:
    target = work / "floor"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    started = time.perf_counter()
    gunzip = subprocess.Popen(["gzip", "-dc", str(archive)], stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "x", "-C", str(target)], stdin=gunzip.stdout, check=True)
    assert gunzip.stdout is not None
    gunzip.stdout.close()
    if gunzip.wait() != 0 or untar.returncode != 0:
        raise RuntimeError("gzip -dc | tar x failed")
    return time.perf_counter() - started


def start_storage(root: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    argv = [sys.executable, "-m", "compute_dev.cli", "storage", "--dir", str(root)]
    argv += ["--libpq-port", "0", "--grpc-port", "0", "--safekeeper-ports", "0"]
    with open(root / "storage.log", "w") as log:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
    assert process.stdout is not None
    ready: dict[str, Any] = json.loads(process.stdout.readline())
    process.stdout.close()
    return process, ready


def spec_for(timeline: Timeline, ready: dict[str, Any], protocol: str) -> Any:
    shard = {"libpq_url": ready["pageserver_libpq_url"], "grpc_url": ready["pageserver_grpc_url"]}
    return resolve(
        ComputeSpec.model_validate(
            {
                "format_version": 1.0,
                "suspend_timeout_seconds": -1,
                "cluster": {"roles": [], "databases": []},
                "tenant_id": timeline.tenant_id,
                "timeline_id": timeline.timeline_id,
                "safekeeper_connstrings": ready["safekeeper_connstrings"],
                "pageserver_connection_info": {
                    "shard_count": 0,
                    "shards": {"0000": {"pageservers": [shard]}},
                    "prefer_protocol": protocol,
                },
            }
        )
    )


def client_run(pspec: Any, lsn: Any, work: Path) -> tuple[float, int]:
    target = work / "client"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(mode=0o700)
    started = time.perf_counter()
    stats = asyncio.run(get_basebackup(pageserver_client(pspec), lsn, target))
    return time.perf_counter() - started, stats.compressed_bytes


def summary(samples: list[float], size: int) -> dict[str, float]:
    median = statistics.median(samples)
    return {
        "median_s": round(median, 3),
        "min_s": round(min(samples), 3),
        "max_s": round(max(samples), 3),
        "mib_per_s": round(size / (1 << 20) / median, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="work directory (default: a new temp dir)")
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-basebackup-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    try:
        store = TimelineStore(work / "store")
        progress("initdb")
        timeline = store.create(pg_bin=find_pg_bin())
        progress(f"adding {args.size_mib} MiB of relation files")
        fill(timeline.datadir, args.size_mib)
        size = du(timeline.datadir)
        progress(f"data directory: {size / (1 << 20):.0f} MiB; compressing once")
        archive = timeline.prepare_gzip()
        compressed = archive.stat().st_size
        progress(f"gzip basebackup: {compressed / (1 << 20):.0f} MiB")

        results: dict[str, Any] = {}
        floor = []
        for run in range(args.runs):
            floor.append(floor_run(archive, work))
            progress(f"floor run {run + 1}: {floor[-1]:.2f} s")
        results["floor_gzip_tar"] = summary(floor, size)

        process, ready = start_storage(work / "store")
        try:
            for protocol in ("libpq", "grpc"):
                pspec = spec_for(timeline, ready, protocol)
                samples = []
                for run in range(args.runs):
                    seconds, received = client_run(pspec, timeline.lsn, work)
                    assert received == compressed, (received, compressed)
                    samples.append(seconds)
                    progress(f"{protocol} run {run + 1}: {seconds:.2f} s")
                results[protocol] = summary(samples, size)
                ratio = results["floor_gzip_tar"]["median_s"] / results[protocol]["median_s"]
                results[protocol]["vs_floor_throughput"] = round(ratio, 2)
        finally:
            process.terminate()
            process.wait(30)

        report = {
            "benchmark": "P4 basebackup throughput",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
            "python": platform.python_version(),
            "data_bytes": size,
            "gzip_bytes": compressed,
            "runs": args.runs,
            "results": results,
        }
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "basebackup.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
        return 0
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
