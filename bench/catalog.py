"""Catalog reconciliation benchmark: 1,000 roles and 100 databases from an empty cluster, then
the unchanged spec again.

    .venv/bin/python bench/catalog.py [--roles N] [--databases N] [--durable]

A throwaway cluster is created in the temporary directory (set TMPDIR to choose the disk).
By default it runs with `fsync=off`, as Neon's computes do (their durability comes from the
safekeepers, not the local disk); `--durable` turns fsync back on. The first apply uses the
start-up concurrency compute_ctl would choose (a third of max_connections); the re-apply is run
with both that and the re-configure default of 1. For scale, a second cluster then receives the
same statements one after the other on a single connection, the way upstream sends them
(`--no-baseline` skips it). Results go to bench/results/catalog.json.
Goals: first apply ≤ 3 s, re-apply ≤ 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pgserver import start_server  # noqa: E402

from compute_ctl.catalog import apply_spec, max_service_connections, plan_spec  # noqa: E402
from compute_ctl.spec.models import ComputeSpec  # noqa: E402

FIRST_APPLY_GOAL_S = 3.0
REAPPLY_GOAL_MS = 150.0
SCRAM = (
    "SCRAM-SHA-256$4096:hBT22QjqpydQWqEulorfXA==$miBogcoj68JWYdsNB5PW1X6PjSLBEcNuctuhtGkb4PY="
    ":hxk2gxkwxGo6P7GCtfpMlhA9zwHvPMsCz+NQf2HfvWk="
)


def filesystem_of(path: str) -> str:
    """The type of the file system holding `path` (`tmpfs`, `ext4`, …), from /proc/mounts;
    recorded instead of the path itself."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                mount_point, fs_type = fields[1], fields[2]
                inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) > len(best):
                    best, kind = mount_point, fs_type
    except OSError:
        pass
    return kind


def progress(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def build_spec(roles: int, databases: int) -> ComputeSpec:
    role_list: list[dict[str, Any]] = []
    for i in range(roles):
        name = f"bench role {i:04d}"
        role: dict[str, Any] = {"name": name}
        if i % 2 == 0:
            role["encrypted_password"] = hashlib.md5(f"pw{i}{name}".encode()).hexdigest()  # noqa: S324
        else:
            role["encrypted_password"] = SCRAM
        role_list.append(role)
    db_list = [
        {"name": f"bench db {i:03d}", "owner": role_list[i % roles]["name"]}
        for i in range(databases)
    ]
    return ComputeSpec.model_validate(
        {
            "format_version": 1.0,
            "suspend_timeout_seconds": -1,
            "cluster": {
                "roles": role_list,
                "databases": db_list,
                "settings": [{"name": "max_connections", "value": "100", "vartype": "integer"}],
            },
        }
    )


def baseline(spec: ComputeSpec, settings: dict[str, str]) -> float:
    """Seconds to send the first apply's statements one by one on one connection."""
    server = start_server(settings=settings)
    try:
        plan = asyncio.run(plan_spec(server.connstr(), spec))
        conns: dict[str | None, psycopg.Connection[Any]] = {}
        try:
            started = time.perf_counter()
            for statement in plan.statements:
                conn = conns.get(statement.database)
                if conn is None:
                    for name in [n for n in conns if n is not None]:
                        conns.pop(name).close()  # one database at a time
                    conn = psycopg.connect(
                        server.connstr(), dbname=statement.database or "postgres", autocommit=True
                    )
                    conns[statement.database] = conn
                for name, value in statement.args:
                    conn.execute(
                        "SELECT pg_catalog.set_config(%s, %s, false)",
                        ("compute_ctl." + name, value),
                    )
                conn.execute(statement.query)
            return time.perf_counter() - started
        finally:
            for conn in conns.values():
                conn.close()
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", type=int, default=1000)
    parser.add_argument("--databases", type=int, default=100)
    parser.add_argument("--reapply-runs", type=int, default=5)
    parser.add_argument("--durable", action="store_true", help="run the cluster with fsync=on")
    parser.add_argument("--no-baseline", action="store_true", help="skip the sequential baseline")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "catalog.json")
    args = parser.parse_args()

    settings = {
        "fsync": "on" if args.durable else "off",
        "synchronous_commit": "on",
        "full_page_writes": "on",
        "max_connections": "100",
    }
    spec = build_spec(args.roles, args.databases)
    startup_concurrency = max_service_connections(spec, starting=True)
    progress(f"starting a throwaway cluster ({', '.join(f'{k}={v}' for k, v in settings.items())})")
    server = start_server(settings=settings)
    try:
        connstr = server.connstr()
        progress(
            f"first apply: {args.roles} roles, {args.databases} databases, "
            f"concurrency {startup_concurrency}"
        )
        started = time.perf_counter()
        first = asyncio.run(apply_spec(connstr, spec, concurrency=startup_concurrency))
        first_s = time.perf_counter() - started
        progress(f"first apply: {first.executed} statements in {first_s:.3f} s {first.by_phase}")

        reapply: dict[str, list[float]] = {}
        for concurrency in (startup_concurrency, 1):
            timings = []
            for run in range(args.reapply_runs):
                started = time.perf_counter()
                again = asyncio.run(apply_spec(connstr, spec, concurrency=concurrency))
                elapsed_ms = (time.perf_counter() - started) * 1000
                timings.append(elapsed_ms)
                progress(
                    f"re-apply #{run + 1} (concurrency {concurrency}): "
                    f"{again.executed} statements in {elapsed_ms:.1f} ms"
                )
                if again.executed:
                    raise SystemExit("an unchanged spec executed statements")
            reapply[str(concurrency)] = timings
        version = server.bindir.parent.name
        version_line = subprocess.run(
            [str(server.bindir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    finally:
        progress("stopping the cluster")
        server.stop()

    baseline_s = None
    if not args.no_baseline:
        progress("baseline: the same statements, one by one on one connection, on a new cluster")
        baseline_s = baseline(spec, settings)
        progress(f"baseline: {baseline_s:.3f} s")

    all_runs = [t for runs in reapply.values() for t in runs]
    result = {
        "roles": args.roles,
        "databases": args.databases,
        "cluster_settings": settings,
        "postgres_major_version": version,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "postgres_version": version_line,
        "tmpdir_filesystem": filesystem_of(os.path.realpath(tempfile.gettempdir())),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "first_apply": {
            "seconds": round(first_s, 3),
            "statements": first.executed,
            "concurrency": startup_concurrency,
            "by_phase": first.by_phase,
        },
        "sequential_baseline_seconds": round(baseline_s, 3) if baseline_s is not None else None,
        "reapply_ms": {k: [round(t, 1) for t in v] for k, v in reapply.items()},
        "reapply_median_ms": round(statistics.median(all_runs), 1),
        "reapply_max_ms": round(max(all_runs), 1),
        "goals": {"first_apply_s": FIRST_APPLY_GOAL_S, "reapply_ms": REAPPLY_GOAL_MS},
        "met": first_s <= FIRST_APPLY_GOAL_S and max(all_runs) <= REAPPLY_GOAL_MS,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    progress(
        f"first apply {first_s:.3f} s (goal {FIRST_APPLY_GOAL_S} s), re-apply median "
        f"{result['reapply_median_ms']} ms / max {result['reapply_max_ms']} ms "
        f"(goal {REAPPLY_GOAL_MS} ms): {'met' if result['met'] else 'NOT met'}"
    )
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    progress(f"results written to {shown}")
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
