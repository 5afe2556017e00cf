"""P1: compute start-up through compute_ctl, per protocol, against the physical floor.

    .venv/bin/python bench/startup.py [--runs 20] [--tracing]

One `compute-dev storage` process serves a fresh initdb timeline (its gzip basebackup prepared
once, so the stand-in does not compress on the fly) over libpq and gRPC, with three safekeepers.
compute_ctl is started as a whole process (the installed entry point, as the server user when we
are root) with `-S spec.json`, the spec `compute-dev up` writes, for each protocol in turn, the
previous run's data directory removed beforehand (untimed, as for the floor); the run waits
for `running`, reads `GET /metrics.json` and ends the compute with
`POST /terminate?mode=immediate`. Every ComputeMetrics phase gets p50/p90/p99 (nearest rank: the
p99 of 20 runs is the slowest), besides the wall time from exec to the first `/status` answer and
to `running` (`/status` polled every 50 ms, so that the polling costs compute_ctl little), and
compute_ctl's memory once running.

The floor, in the same rounds and on the same data directory: `tar -xzf` of the same basebackup
file plus the postgresql.conf compute_ctl wrote, then `pg_ctl start -w` (stopped between runs,
untimed). `pg_ctl -w` checks for readiness every 100 ms, so a tighter floor is measured too: the
same untar, then `postgres -D` until `postmaster.pid` says `ready` (polled every millisecond),
which is how compute_ctl waits. One untimed warm-up round comes first.
Everything happens in one temporary directory (set TMPDIR to choose the disk; `make bench` also
runs it on tmpfs with `--output startup-tmpfs`, where the disk's noise is gone). Results go to
bench/results/startup.json. Goal: p50 total_startup_ms − floor ≤ 50 ms.

`--tracing` runs every compute with its spans exported (`OTEL_EXPORTER_OTLP_ENDPOINT`) to an
OTLP/HTTP receiver in this process (tests/otlp_receiver.py) and writes
bench/results/startup-tracing.json unless `--output` says otherwise: the cost of tracing is the
difference to a run without it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import (
    StandIns,
    compile_bytecode,
    compute_ctl_argv,
    get,
    launch,
    machine,
    now_iso,
    progress,
    rss_kib,
    spread,
    start_stand_ins,
    terminate,
    tracing_env,
    wait_answer,
    wait_status,
    write_result,
)
from tests.support.harness import free_port, shared_tempdir
from tests.support.otlp_receiver import Receiver, running_receiver

from compute_dev.commands.up import build_spec
from compute_dev.pgbin import find_pg_bin, server_user

TAG = "startup"
GOAL_OVER_FLOOR_MS = 50.0
PROTOCOLS = ("libpq", "grpc")
POLL_INTERVAL = 0.05
DEADLINE = 60.0
PHASES = (
    "sync_sk_check_ms",
    "sync_safekeepers_ms",
    "pageserver_connect_micros",
    "basebackup_ms",
    "start_postgres_ms",
    "config_ms",
    "total_startup_ms",
)
"""The ComputeMetrics timings that a start from `-S` fills (wait_for_spec_ms is 0 then, the
extension fields stay 0 without remote extensions; both are recorded in the raw runs)."""


class Stand:
    env: dict[str, str] | None = None
    """Added to compute_ctl's environment (`--tracing`)."""

    def __init__(self, root: Path, stand_ins: StandIns) -> None:
        self.root = root
        self.stand_ins = stand_ins
        self.user = server_user()
        self.pg_bin = find_pg_bin()
        self.workdir = root / "compute"
        self.workdir.mkdir(mode=0o755)
        self.user.chown(self.workdir)
        self.pgdata = self.workdir / "pgdata"
        self.pg_port = free_port()
        self.conf: str | None = None
        self.specs = {protocol: self._spec(protocol) for protocol in PROTOCOLS}

    def _spec(self, protocol: str) -> Path:
        spec = build_spec(
            self.stand_ins.timeline,
            protocol=protocol,
            libpq_port=self.stand_ins.libpq_port,
            grpc_port=self.stand_ins.grpc_port,
            safekeeper_ports=self.stand_ins.safekeeper_ports,
            pg_port=self.pg_port,
            socket_dir=self.workdir,
        )
        path = self.workdir / f"spec-{protocol}.json"
        path.write_text(json.dumps(spec))
        self.user.chown(path)
        return path

    def run_as_user(self, argv: list[str]) -> None:
        subprocess.run(
            argv,
            preexec_fn=self.user.preexec(),
            env=self.user.env(),
            cwd=self.workdir,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def compute(self, protocol: str) -> dict[str, Any]:
        """One start through compute_ctl: its metrics and the wall times seen from outside."""
        port = free_port()
        argv = [*compute_ctl_argv(), "-D", str(self.pgdata), "-S", str(self.specs[protocol])]
        argv += ["-C", f"postgresql://cloud_admin@127.0.0.1:{self.pg_port}/postgres"]
        argv += ["-b", str(self.pg_bin / "postgres"), "--dev"]
        argv += ["--external-http-port", str(port), "--internal-http-port", str(free_port())]
        # The previous run's data directory goes first, untimed, as for the floor runs.
        shutil.rmtree(self.pgdata, ignore_errors=True)
        started = time.perf_counter()
        log_path = self.workdir / f"compute-{protocol}.log"
        process = launch(argv, self.workdir, log_path, env=self.env)
        try:
            first_answer = wait_answer(
                port, started, process, interval=POLL_INTERVAL, deadline=DEADLINE
            )
            wait_status(port, "running", process, interval=POLL_INTERVAL, deadline=DEADLINE)
            running = time.perf_counter() - started
            answer = get(port, "/metrics.json")
            assert answer is not None and answer[0] == 200, answer
            metrics: dict[str, Any] = json.loads(answer[1])
            rss, hwm = rss_kib(process.pid)
            if self.conf is None:
                self.conf = (self.pgdata / "postgresql.conf").read_text()
        finally:
            code = terminate(port, process)
        if code != 0:
            raise RuntimeError(f"compute_ctl exited with status {code}")
        accounted = sum(
            metrics[name]
            for name in (
                "sync_sk_check_ms",
                "sync_safekeepers_ms",
                "basebackup_ms",
                "start_postgres_ms",
                "config_ms",
            )
        )
        return {
            **metrics,
            "other_ms": metrics["total_startup_ms"] - accounted,
            "exec_to_status_ms": round(first_answer * 1000, 1),
            "exec_to_running_ms": round(running * 1000, 1),
            "rss_at_running_mib": round(rss / 1024, 1),
            "hwm_at_running_mib": round(hwm / 1024, 1),
        }

    def _fresh_pgdata(self) -> None:
        shutil.rmtree(self.pgdata, ignore_errors=True)
        self.pgdata.mkdir(mode=0o700)
        self.user.chown(self.pgdata)

    def _untar(self) -> None:
        """The same basebackup file, unpacked as the server user, plus compute_ctl's conf."""
        assert self.conf is not None
        self.run_as_user(["tar", "-xzf", str(self.stand_ins.archive), "-C", str(self.pgdata)])
        conf = self.pgdata / "postgresql.conf"
        conf.write_text(self.conf)
        self.user.chown(conf)

    def floor_pg_ctl(self) -> dict[str, float]:
        """untar + `pg_ctl start -w`; stopped (untimed) afterwards."""
        self._fresh_pgdata()
        pg_ctl = str(self.pg_bin / "pg_ctl")
        started = time.perf_counter()
        self._untar()
        untarred = time.perf_counter()
        log = str(self.workdir / "floor-postgres.log")
        self.run_as_user([pg_ctl, "start", "-w", "-s", "-D", str(self.pgdata), "-l", log])
        ready = time.perf_counter()
        self.run_as_user([pg_ctl, "stop", "-w", "-s", "-m", "immediate", "-D", str(self.pgdata)])
        return {
            "untar_ms": round((untarred - started) * 1000, 1),
            "start_ms": round((ready - untarred) * 1000, 1),
            "total_ms": round((ready - started) * 1000, 1),
        }

    def floor_postmaster(self) -> dict[str, float]:
        """untar + `postgres -D` until postmaster.pid says ready (1 ms polls)."""
        self._fresh_pgdata()
        started = time.perf_counter()
        self._untar()
        untarred = time.perf_counter()
        pid_file = self.pgdata / "postmaster.pid"
        process = launch(
            [str(self.pg_bin / "postgres"), "-D", str(self.pgdata)],
            self.workdir,
            self.workdir / "floor-postgres.log",
        )
        try:
            while True:
                try:
                    lines = pid_file.read_text().rstrip("\n").split("\n")
                except FileNotFoundError:
                    lines = []
                if lines and lines[-1].strip() == "ready":
                    break
                if process.poll() is not None:
                    raise RuntimeError("postgres exited during the floor run")
                time.sleep(0.001)
            ready = time.perf_counter()
        finally:
            process.send_signal(signal.SIGQUIT)  # immediate shutdown
            process.wait(30)
        return {
            "untar_ms": round((untarred - started) * 1000, 1),
            "start_ms": round((ready - untarred) * 1000, 1),
            "total_ms": round((ready - started) * 1000, 1),
        }


def summarize(runs: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    return {key: spread([float(run[key]) for run in runs]) for key in keys}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--output", help="results name (default: startup[-tracing])")
    parser.add_argument(
        "--tracing", action="store_true", help="export spans to a local OTLP/HTTP receiver"
    )
    args = parser.parse_args()
    output = args.output or ("startup-tracing" if args.tracing else "startup")
    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(running_receiver()) if args.tracing else None
        return measure(args, output, receiver)


def measure(args: argparse.Namespace, output: str, receiver: Receiver | None) -> int:

    compile_bytecode(TAG)
    root = shared_tempdir("bench-startup-")
    stand_ins = start_stand_ins(root, TAG)
    computes: dict[str, list[dict[str, Any]]] = {protocol: [] for protocol in PROTOCOLS}
    floors: dict[str, list[dict[str, float]]] = {"pg_ctl": [], "postmaster": []}
    try:
        stand = Stand(root, stand_ins)
        if receiver is not None:
            stand.env = tracing_env(receiver.url)
            progress(TAG, f"tracing on: spans exported to {receiver.url}")
        progress(TAG, "warm-up round (not counted)")
        for protocol in PROTOCOLS:
            stand.compute(protocol)
        stand.floor_pg_ctl()
        stand.floor_postmaster()
        for run in range(1, args.runs + 1):
            for protocol in PROTOCOLS:
                computes[protocol].append(stand.compute(protocol))
            floors["pg_ctl"].append(stand.floor_pg_ctl())
            floors["postmaster"].append(stand.floor_postmaster())
            progress(
                TAG,
                f"round {run}/{args.runs}: "
                + ", ".join(
                    f"{protocol} total_startup_ms {computes[protocol][-1]['total_startup_ms']}"
                    for protocol in PROTOCOLS
                )
                + f", floor {floors['pg_ctl'][-1]['total_ms']:.0f} ms"
                + f" (postmaster-ready floor {floors['postmaster'][-1]['total_ms']:.0f} ms)",
            )
        archive_bytes = stand_ins.archive.stat().st_size
        datadir_bytes = sum(
            os.lstat(os.path.join(where, name)).st_size
            for where, _dirs, files in os.walk(stand_ins.timeline.datadir)
            for name in files
        )
    finally:
        stand_ins.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    floor_keys = ["untar_ms", "start_ms", "total_ms"]
    floor_summary = {name: summarize(runs, floor_keys) for name, runs in floors.items()}
    floor_p50 = floor_summary["pg_ctl"]["total_ms"]["p50"]
    tight_p50 = floor_summary["postmaster"]["total_ms"]["p50"]
    keys = [*PHASES, "other_ms", "exec_to_status_ms", "exec_to_running_ms"]
    keys += ["rss_at_running_mib", "hwm_at_running_mib"]
    results: dict[str, Any] = {}
    for protocol, runs in computes.items():
        summary = summarize(runs, keys)
        total_p50 = summary["total_startup_ms"]["p50"]
        results[protocol] = {
            "phases": summary,
            "total_minus_floor_p50_ms": round(total_p50 - floor_p50, 1),
            "total_minus_postmaster_floor_p50_ms": round(total_p50 - tight_p50, 1),
            "met": total_p50 - floor_p50 <= GOAL_OVER_FLOOR_MS,
        }
    report = {
        "benchmark": "P1 start-up phases",
        "date": now_iso(),
        "machine": machine(),
        "runs": args.runs,
        "basebackup": {"gzip_bytes": archive_bytes, "data_directory_bytes": datadir_bytes},
        "floor": floor_summary,
        "results": results,
        "raw": {"compute": computes, "floor": floors},
        "goal_over_floor_ms": GOAL_OVER_FLOOR_MS,
        "met": all(result["met"] for result in results.values()),
        "tracing": receiver is not None,
        "spans_received": len(receiver.spans) if receiver is not None else 0,
    }
    write_result(output, report, TAG)
    progress(TAG, f"floor (untar + pg_ctl start -w): p50 {floor_p50} ms")
    progress(TAG, f"floor (untar + postmaster ready): p50 {tight_p50} ms")
    for protocol, result in results.items():
        phases = result["phases"]
        progress(
            TAG,
            f"{protocol}: total_startup_ms p50 {phases['total_startup_ms']['p50']} "
            f"(p90 {phases['total_startup_ms']['p90']}, p99 {phases['total_startup_ms']['p99']}), "
            f"over the floor {result['total_minus_floor_p50_ms']} ms: "
            f"{'met' if result['met'] else 'NOT met'}",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
