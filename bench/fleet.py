"""F1-F6: what a fleet pays per compute, each beside its floor measured in the same run.

    .venv/bin/python bench/fleet.py [--runs 20] [--idle 60] [--parallel 10]

A fleet keeps pre-started, empty computes and sends `POST /configure` when a user connects, so
the start-up users wait for is `/configure` → `running` on an idle compute; what it pays all day
is each compute's memory and idle CPU. The storage stand-ins are those of P1 (bench/startup.py):
one `compute-dev storage` process, a fresh initdb timeline, three safekeepers.

- F1 pooled start: `compute_ctl -i ID` started empty, idle 2 s, then `POST /configure` with the
  spec; the time until it answers 200 (`running`). 20 times per protocol, and 20 times over
  gRPC with `COMPUTE_CTL_GRPC_CHILD_WHILE_EMPTY=1` (the basebackup's child kept ready while
  empty; its memory is recorded beside it).
- F2 `-S` start: exec → `running` (wall), as P1 starts it.
- F3 `total_startup_ms` of both kinds of start.
- F4 memory after `--idle` seconds `running` (activity monitor on): VmHWM and VmRSS.
- F5 idle cost: the CPU time of all its threads (the scheduler's ns count, utime + stime in
  ticks beside it) over the next `--idle` seconds, as a share of one core (the first
  `--idle` seconds, which hold the one-off work after `running`, are recorded beside it).
- F6 `--parallel` empty computes started at once, then configured at once: each one's
  `/configure` → 200.

The floor of F1-F3 and F6 is the tight one of P1: untar the same basebackup plus the
postgresql.conf compute_ctl wrote, then stock `postgres -D` until `postmaster.pid` says `ready`
(polled every millisecond); F6's floor is `--parallel` of them at once. Results go to
bench/results/fleet.json; docs/benchmarks.md explains them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import json
import os
import re
import shutil
import sys
import time
from typing import Any

from benchlib import (
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
    wait_answer,
    wait_status,
    write_result,
)
from startup import PROTOCOLS, Stand
from tests.support.harness import children_of, free_port, shared_tempdir

from compute_ctl.storage.grpc_child import MODULE as GRPC_CHILD_MODULE
from compute_ctl.storage.grpc_child import SPARE_ENV

TAG = "fleet"
DEADLINE = 60.0
POOL_IDLE = 2.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
GOALS = {
    "F1": 20.0,  # ms over the floor, p50
    "F2": 150.0,
    "F3": 20.0,
    "F4_libpq": 45.0,  # MiB VmHWM
    "F4_grpc": 55.0,
    "F5": 0.2,  # % of one core
    "F6": 30.0,  # ms over the floor, p50 per compute
}


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_ns(pid: int) -> int:
    """Time on a CPU of all the process' threads, in ns (the scheduler's own count: the clock
    ticks of `cpu_ticks` are 10 ms, too coarse for an idle minute)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        path = f"/proc/{pid}/task/{task}/schedstat"
        with contextlib.suppress(FileNotFoundError), open(path) as f:  # a thread that ended
            total += int(f.read().split()[0])
    return total


def memory_kinds(pid: int) -> dict[str, float]:
    """What of the resident memory is the compute's own: anonymous pages (RssAnon), file pages
    (RssFile: shared libraries and modules, shared with every other compute_ctl on the host),
    the proportional share (Pss) and the private part (USS = Private_Clean + Private_Dirty)."""
    fields: dict[str, int] = {}
    for name in ("status", "smaps_rollup"):
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                key, _, value = line.partition(":")
                parts = value.split()
                if len(parts) == 2 and parts[1] == "kB":
                    fields[key] = int(parts[0])
    return {
        "rss_anon_mib": round(fields["RssAnon"] / 1024, 1),
        "rss_file_mib": round(fields["RssFile"] / 1024, 1),
        "pss_mib": round(fields["Pss"] / 1024, 1),
        "uss_mib": round((fields["Private_Clean"] + fields["Private_Dirty"]) / 1024, 1),
    }


def post_json(port: int, path: str, body: bytes, timeout: float = DEADLINE) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Pooled:
    """One empty compute of the pool: started with `-i`, serving, waiting for a spec."""

    def __init__(self, stand: Stand, name: str, env: dict[str, str] | None = None) -> None:
        self.stand = stand
        self.workdir = stand.workdir / name
        self.workdir.mkdir(mode=0o755, exist_ok=True)
        stand.user.chown(self.workdir)
        self.pgdata = self.workdir / "pgdata"
        shutil.rmtree(self.pgdata, ignore_errors=True)
        self.port = free_port()
        self.pg_port = free_port()
        argv = [*compute_ctl_argv(), "-D", str(self.pgdata), "-i", name]
        argv += ["-C", f"postgresql://cloud_admin@127.0.0.1:{self.pg_port}/postgres"]
        argv += ["-b", str(stand.pg_bin / "postgres"), "--dev"]
        argv += ["--external-http-port", str(self.port), "--internal-http-port", str(free_port())]
        self.started = time.perf_counter()
        self.process = launch(argv, self.workdir, self.workdir / "compute.log", env=env)

    def wait_serving(self) -> None:
        wait_answer(self.port, self.started, self.process, interval=0.02, deadline=DEADLINE)

    def configure(self, protocol: str) -> float:
        """`POST /configure` with the spec for `protocol`: seconds until it answers 200."""
        spec = json.loads(self.stand.specs[protocol].read_text())
        for setting in spec["cluster"]["settings"]:
            if setting["name"] == "port":  # each compute of the pool has a port of its own
                setting["value"] = str(self.pg_port)
        body = json.dumps({"spec": spec, "compute_ctl_config": {"jwks": {"keys": []}}}).encode()
        started = time.perf_counter()
        status, answer = post_json(self.port, "/configure", body)
        elapsed = time.perf_counter() - started
        if status != 200:
            raise RuntimeError(f"/configure answered {status}: {answer[:200]!r}")
        return elapsed

    def metrics(self) -> dict[str, Any]:
        answer = get(self.port, "/metrics.json")
        assert answer is not None and answer[0] == 200, answer
        metrics: dict[str, Any] = json.loads(answer[1])
        return metrics

    def stop(self) -> None:
        code = terminate(self.port, self.process)
        if code != 0:
            raise RuntimeError(f"compute_ctl exited with status {code}")


def pooled_start(stand: Stand, protocol: str, *, spare: bool = False) -> dict[str, Any]:
    """One F1 start; with `spare`, the gRPC child kept ready while empty, whose memory just
    before `/configure` is part of the result."""
    env = {SPARE_ENV: "1"} if spare else None
    compute = Pooled(stand, f"pool-{protocol}{'-spare' if spare else ''}", env)
    child: dict[str, float] = {}
    try:
        compute.wait_serving()
        time.sleep(POOL_IDLE)  # the pool's idle compute; the wait is not what is measured
        if spare:
            child = spare_child_memory(compute.process.pid)
        configure_s = compute.configure(protocol)
        metrics = compute.metrics()
    finally:
        compute.stop()
    return {
        "configure_ms": round(configure_s * 1000, 1),
        "total_startup_ms": metrics["total_startup_ms"],
        **child,
    }


def spare_child_memory(pid: int) -> dict[str, float]:
    """VmRSS and USS of the gRPC child an empty compute keeps ready."""
    children = [c for c, argv in children_of(pid).items() if GRPC_CHILD_MODULE in argv]
    if len(children) != 1:
        raise RuntimeError(f"expected one spare gRPC child of {pid}, found {children}")
    rss, _hwm = rss_kib(children[0])
    return {
        "child_vmrss_mib": round(rss / 1024, 1),
        **{
            f"child_{key}": value
            for key, value in memory_kinds(children[0]).items()
            if key in ("uss_mib", "pss_mib")
        },
    }


def idle_cost(stand: Stand, protocol: str, seconds: float) -> dict[str, Any]:
    """F4/F5: a compute `running` for `seconds`: its memory at the end, its CPU meanwhile; then
    its CPU over `seconds` more. The first window holds the work that follows `running` once
    (migrations, the first installed-extensions scan, the heap trim); the second is what an
    idle compute pays every minute after that, which F5 is judged on."""
    compute = Pooled(stand, f"idle-{protocol}")
    try:
        compute.wait_serving()
        compute.configure(protocol)
        wait_status(compute.port, "running", compute.process, interval=0.1, deadline=DEADLINE)
        pid = compute.process.pid
        before, before_ns = cpu_ticks(pid), cpu_ns(pid)
        started = time.monotonic()
        time.sleep(seconds)
        used, used_ns = cpu_ticks(pid) - before, cpu_ns(pid) - before_ns
        elapsed = time.monotonic() - started
        rss, hwm = rss_kib(pid)
        kinds = memory_kinds(pid)
        threads = len(os.listdir(f"/proc/{pid}/task"))
        steady_before, steady_started = cpu_ns(pid), time.monotonic()
        time.sleep(seconds)
        steady_ns = cpu_ns(pid) - steady_before
        steady_elapsed = time.monotonic() - steady_started
    finally:
        compute.stop()
    return {
        "vmrss_mib": round(rss / 1024, 1),
        "vmhwm_mib": round(hwm / 1024, 1),
        **kinds,
        "threads": threads,
        "cpu_seconds": round(used / CLK_TCK, 2),
        "first_cpu_ms_scheduler": round(used_ns / 1e6, 1),
        "first_cpu_percent_of_core": round(100 * used_ns / 1e9 / elapsed, 3),
        "cpu_ms_scheduler": round(steady_ns / 1e6, 1),
        "cpu_percent_of_core": round(100 * steady_ns / 1e9 / steady_elapsed, 3),
    }


def parallel(stand: Stand, protocol: str, count: int) -> dict[str, Any]:
    """F6: `count` empty computes, then `/configure` to all at once."""
    computes = [Pooled(stand, f"par-{protocol}-{i}") for i in range(count)]
    try:
        for compute in computes:
            compute.wait_serving()
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            started = time.perf_counter()
            latencies = list(pool.map(lambda c: c.configure(protocol), computes))
            all_running = time.perf_counter() - started
    finally:
        for compute in computes:
            compute.stop()
    return {
        "per_compute_ms": [round(s * 1000, 1) for s in latencies],
        "all_running_ms": round(all_running * 1000, 1),
    }


def parallel_floor(stand: Stand, count: int) -> dict[str, Any]:
    """`count` tight floors at once, each in its own data directory."""
    floors = [FloorDir(stand, f"floor-{i}") for i in range(count)]
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        started = time.perf_counter()
        latencies = list(pool.map(lambda f: f.run(), floors))
        everything = time.perf_counter() - started
    return {
        "per_floor_ms": [round(s * 1000, 1) for s in latencies],
        "all_ready_ms": round(everything * 1000, 1),
    }


class FloorDir(Stand):
    """The tight floor in a data directory of its own (for F6's parallel floors)."""

    def __init__(self, stand: Stand, name: str) -> None:  # the stand's attributes, shared
        self.__dict__.update(stand.__dict__)
        self.workdir = stand.workdir / name
        self.workdir.mkdir(mode=0o755, exist_ok=True)
        stand.user.chown(self.workdir)
        self.pgdata = self.workdir / "pgdata"
        assert stand.conf is not None
        # A port of its own: the floors run at the same time.
        self.conf = re.sub(r"^port\s*=.*$", f"port = {free_port()}", stand.conf, flags=re.M)

    def run(self) -> float:
        return self.floor_postmaster()["total_ms"] / 1000


def verdict(value: float, goal: float) -> dict[str, Any]:
    return {"value": value, "goal": goal, "met": value <= goal}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds running for F4/F5")
    parser.add_argument("--parallel", type=int, default=10)
    parser.add_argument("--output", default="fleet", help="results name (default: fleet)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    compile_bytecode(TAG)
    root = shared_tempdir("bench-fleet-")
    stand_ins = start_stand_ins(root, TAG)
    pooled: dict[str, list[dict[str, Any]]] = {p: [] for p in PROTOCOLS}
    spare_runs: list[dict[str, Any]] = []
    direct: dict[str, list[dict[str, Any]]] = {p: [] for p in PROTOCOLS}
    floors: list[float] = []
    try:
        stand = Stand(root, stand_ins)
        progress(TAG, "warm-up round (not counted)")
        for protocol in PROTOCOLS:
            stand.compute(protocol)
            pooled_start(stand, protocol)
        pooled_start(stand, "grpc", spare=True)
        stand.floor_postmaster()
        for run in range(1, args.runs + 1):
            for protocol in PROTOCOLS:
                pooled[protocol].append(pooled_start(stand, protocol))
                direct[protocol].append(stand.compute(protocol))
            spare_runs.append(pooled_start(stand, "grpc", spare=True))
            floors.append(stand.floor_postmaster()["total_ms"])
            progress(
                TAG,
                f"round {run}/{args.runs}: "
                + ", ".join(
                    f"{p} /configure {pooled[p][-1]['configure_ms']} ms, "
                    f"-S running {direct[p][-1]['exec_to_running_ms']} ms"
                    for p in PROTOCOLS
                )
                + f", grpc with a spare child /configure {spare_runs[-1]['configure_ms']} ms"
                + f", floor {floors[-1]:.0f} ms",
            )
        idle = {}
        for protocol in PROTOCOLS:
            progress(TAG, f"{protocol}: {args.idle:.0f} s running, idle")
            idle[protocol] = idle_cost(stand, protocol, args.idle)
            progress(TAG, f"{protocol}: {idle[protocol]}")
        progress(TAG, f"{args.parallel} computes at once, and {args.parallel} floors at once")
        parallel_runs = {}
        parallel_floors = []
        for protocol in PROTOCOLS:
            parallel_runs[protocol] = parallel(stand, protocol, args.parallel)
            parallel_floors.append(parallel_floor(stand, args.parallel))
            progress(TAG, f"{protocol}: {parallel_runs[protocol]['per_compute_ms']}")
    finally:
        stand_ins.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    floor = spread(floors)
    results: dict[str, Any] = {}
    for protocol in PROTOCOLS:
        configure = spread([r["configure_ms"] for r in pooled[protocol]])
        pooled_total = spread([float(r["total_startup_ms"]) for r in pooled[protocol]])
        running = spread([r["exec_to_running_ms"] for r in direct[protocol]])
        direct_total = spread([float(r["total_startup_ms"]) for r in direct[protocol]])
        par = spread(parallel_runs[protocol]["per_compute_ms"])
        par_floor = spread([ms for run in parallel_floors for ms in run["per_floor_ms"]])
        memory_goal = GOALS[f"F4_{protocol}"]
        results[protocol] = {
            "F1_configure_ms": configure,
            "F1": verdict(round(configure["p50"] - floor["p50"], 1), GOALS["F1"]),
            "F2_exec_to_running_ms": running,
            "F2": verdict(round(running["p50"] - floor["p50"], 1), GOALS["F2"]),
            "F3_total_startup_ms_pooled": pooled_total,
            "F3_total_startup_ms_direct": direct_total,
            "F3": verdict(round(pooled_total["p50"] - floor["p50"], 1), GOALS["F3"]),
            "F4_F5_idle": idle[protocol],
            "F4": verdict(idle[protocol]["vmhwm_mib"], memory_goal),
            "F5": verdict(idle[protocol]["cpu_percent_of_core"], GOALS["F5"]),
            "F6_per_compute_ms": par,
            "F6_floor_per_compute_ms": par_floor,
            "F6_all_running_ms": parallel_runs[protocol]["all_running_ms"],
            "F6": verdict(round(par["p50"] - par_floor["p50"], 1), GOALS["F6"]),
        }
    spare = spread([r["configure_ms"] for r in spare_runs])
    results["grpc"]["F1_spare_configure_ms"] = spare
    results["grpc"]["F1_spare"] = verdict(round(spare["p50"] - floor["p50"], 1), GOALS["F1"])
    results["grpc"]["F1_spare_child"] = {
        key: spread([r[key] for r in spare_runs])["p50"]
        for key in ("child_vmrss_mib", "child_uss_mib", "child_pss_mib")
    }
    report = {
        "benchmark": "F1-F6 fleet costs",
        "date": now_iso(),
        "machine": machine(),
        "runs": args.runs,
        "idle_seconds": args.idle,
        "parallel": args.parallel,
        "floor_postmaster_ms": floor,
        "results": results,
        "raw": {
            "pooled": pooled,
            "pooled_grpc_spare": spare_runs,
            "direct": direct,
            "floor": floors,
            "parallel": parallel_runs,
        },
        "goals": GOALS,
    }
    write_result(args.output, report, TAG)
    for protocol, result in results.items():
        for key in ("F1", "F2", "F3", "F4", "F5", "F6"):
            progress(TAG, f"{protocol} {key}: {result[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
