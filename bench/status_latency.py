"""P2: from exec to the first `GET /status` answer, against `python -c pass`.

    .venv/bin/python bench/status_latency.py [--runs 20] [--tracing]

compute_ctl is started as an operator starts it (the installed entry point, as the server user
when we are root) in three ways, interleaved with the floor in every round:

- `empty`: `-i ID` and nothing else; it serves the API and waits for `POST /configure` (how a
  pool of pre-started computes waits);
- `config`: `-c FILE -i ID` with a ComputeConfig that has keys (JWT checks) but no spec yet;
- `spec`: `-S FILE` with a spec for the storage stand-ins; the API answers while the compute
  starts (each run then waits for `running` before stopping it).

The clock starts just before the exec; the port is polled every 2 ms (a refused connection is
cheap) until `/status` answers 200. The floor is `python -c pass` with the same interpreter, user
and environment, exec to exit. Afterwards one `empty` start runs under `-X importtime` to show
which imports the path to the listeners pays for, and `python -X importtime -c "import
compute_ctl.cli"` is recorded too. Results go to bench/results/status_latency.json.
Goal: p50 ≤ 250 ms in every mode.

`--tracing` runs every compute with its spans exported (`OTEL_EXPORTER_OTLP_ENDPOINT`) to an
OTLP/HTTP receiver in this process (tests/otlp_receiver.py); the results then go to
bench/results/status_latency-tracing.json (or `--output`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchlib import (
    StandIns,
    compile_bytecode,
    compute_ctl_argv,
    launch,
    machine,
    now_iso,
    progress,
    spread,
    start_stand_ins,
    tracing_env,
    wait_answer,
    wait_status,
    write_result,
)
from tests.support.harness import (
    SigningKey,
    bearer,
    ctl_config,
    free_port,
    shared_tempdir,
    stop_process,
)
from tests.support.otlp_receiver import Receiver, running_receiver

from compute_dev.commands.up import build_spec
from compute_dev.pgbin import find_pg_bin, server_user

TAG = "status_latency"
GOAL_MS = 250.0
POLL_INTERVAL = 0.002
DEADLINE = 30.0
COMPUTE_ID = "bench-compute"
MODES = ("empty", "config", "spec")


class Stand:
    """The work directory, the stand-ins and the files each mode starts from."""

    env: dict[str, str] | None = None
    """Added to compute_ctl's environment (`--tracing`)."""

    def __init__(self, root: Path, stand_ins: StandIns) -> None:
        self.root = root
        self.stand_ins = stand_ins
        self.key = SigningKey()
        self.token = self.key.compute_token(COMPUTE_ID)
        self.pg_bin = find_pg_bin()
        self.pg_port = free_port()
        self.config_path = self._write(
            "config.json", {"spec": None, "compute_ctl_config": ctl_config(self.key)}
        )
        spec = build_spec(
            stand_ins.timeline,
            protocol="libpq",
            libpq_port=stand_ins.libpq_port,
            grpc_port=stand_ins.grpc_port,
            safekeeper_ports=stand_ins.safekeeper_ports,
            pg_port=self.pg_port,
            socket_dir=root,
        )
        self.spec_path = self._write("spec.json", spec)

    def _write(self, name: str, document: Any) -> Path:
        path = self.root / name
        path.write_text(json.dumps(document))
        server_user().chown(path)
        return path

    def argv(self, mode: str, http_port: int) -> list[str]:
        argv = [*compute_ctl_argv(), "-D", str(self.root / "pgdata")]
        argv += ["-C", f"postgresql://cloud_admin@127.0.0.1:{self.pg_port}/postgres"]
        argv += ["-b", str(self.pg_bin / "postgres"), "--dev"]
        argv += ["--external-http-port", str(http_port)]
        argv += ["--internal-http-port", str(free_port())]
        if mode == "empty":
            argv += ["-i", COMPUTE_ID]
        elif mode == "config":
            argv += ["-c", str(self.config_path), "-i", COMPUTE_ID]
        else:
            argv += ["-S", str(self.spec_path)]
        return argv


def floor_run(root: Path) -> float:
    """`python -c pass`: exec to exit, same interpreter, user and environment."""
    user = server_user()
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "pass"],
        preexec_fn=user.preexec(),
        env=user.env(),
        cwd=root,
        check=True,
    )
    return time.perf_counter() - started


def compute_run(stand: Stand, mode: str) -> float:
    """Seconds from exec to the first 200 from `/status`; the compute is stopped after."""
    port = free_port()
    argv = stand.argv(mode, port)
    headers = bearer(stand.token) if mode == "config" else {}
    started = time.perf_counter()
    process = launch(argv, stand.root, stand.root / f"compute-{mode}.log", env=stand.env)
    try:
        seconds = wait_answer(
            port, started, process, interval=POLL_INTERVAL, deadline=DEADLINE, headers=headers
        )
        if mode == "spec":
            wait_status(port, "running", process, interval=0.02, deadline=DEADLINE)
    finally:
        stop_process(process)
    return seconds


def import_profile(lines: list[str]) -> dict[str, Any]:
    """From `-X importtime` lines: the total, and self time summed per top-level package."""
    per_package: dict[str, int] = defaultdict(int)
    total = 0
    for line in lines:
        if not line.startswith("import time:") or "imported package" in line:
            continue
        parts = line[len("import time:") :].split("|")
        self_us, cumulative_us, name = int(parts[0]), int(parts[1]), parts[2]
        package = name.strip().split(".", 1)[0]
        per_package[package] += self_us
        if not name.startswith("  "):  # one space of indent: imported by the program itself
            total += cumulative_us
    top = sorted(per_package.items(), key=lambda item: -item[1])[:15]
    return {
        "total_ms": round(total / 1000, 1),
        "self_ms_by_package": {name: round(us / 1000, 1) for name, us in top},
    }


def profile_start(stand: Stand) -> dict[str, Any]:
    """One `empty` start under `-X importtime`: the imports paid before `/status` answers."""
    port = free_port()
    log_path = stand.root / "importtime.log"
    log_path.unlink(missing_ok=True)
    argv = stand.argv("empty", port)
    started = time.perf_counter()
    env = {**(stand.env or {}), "PYTHONPROFILEIMPORTTIME": "1"}
    process = launch(argv, stand.root, log_path, env=env)
    try:
        seconds = wait_answer(port, started, process, interval=POLL_INTERVAL, deadline=DEADLINE)
        before_answer = log_path.read_text().splitlines()
    finally:
        stop_process(process)
    profile = import_profile(before_answer)
    profile["exec_to_status_ms_with_importtime"] = round(seconds * 1000, 1)
    return profile


def cli_import_profile(root: Path) -> dict[str, Any]:
    """`python -X importtime -c "import compute_ctl.cli"`."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import compute_ctl.cli"],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    return import_profile(out.stderr.splitlines())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--output", help="results name (default: status_latency[-tracing])")
    parser.add_argument(
        "--tracing", action="store_true", help="export spans to a local OTLP/HTTP receiver"
    )
    args = parser.parse_args()
    output = args.output or ("status_latency-tracing" if args.tracing else "status_latency")
    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(running_receiver()) if args.tracing else None
        return measure(args, output, receiver)


def measure(args: argparse.Namespace, output: str, receiver: Receiver | None) -> int:
    compile_bytecode(TAG)
    root = shared_tempdir("bench-status-")
    stand_ins = start_stand_ins(root, TAG)
    samples: dict[str, list[float]] = {"floor": [], **{mode: [] for mode in MODES}}
    try:
        stand = Stand(root, stand_ins)
        if receiver is not None:
            stand.env = tracing_env(receiver.url)
            progress(TAG, f"tracing on: spans exported to {receiver.url}")
        for run in range(1, args.runs + 1):
            samples["floor"].append(floor_run(root) * 1000)
            for mode in MODES:
                samples[mode].append(compute_run(stand, mode) * 1000)
            progress(
                TAG,
                f"round {run}/{args.runs}: "
                + ", ".join(f"{name} {values[-1]:.0f} ms" for name, values in samples.items()),
            )
        progress(TAG, "one empty start under -X importtime")
        started_profile = profile_start(stand)
        progress(TAG, "python -X importtime -c 'import compute_ctl.cli'")
        cli_profile = cli_import_profile(root)
    finally:
        stand_ins.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    results = {name: spread(values) for name, values in samples.items()}
    met = all(results[mode]["p50"] <= GOAL_MS for mode in MODES)
    report = {
        "benchmark": "P2 exec to /status",
        "date": now_iso(),
        "machine": machine(),
        "runs": args.runs,
        "poll_interval_ms": POLL_INTERVAL * 1000,
        "results_ms": results,
        "over_floor_p50_ms": {
            mode: round(results[mode]["p50"] - results["floor"]["p50"], 1) for mode in MODES
        },
        "import_profile": {
            "empty_start_until_status": started_profile,
            "import_compute_ctl_cli": cli_profile,
        },
        "goal_ms": GOAL_MS,
        "met": met,
        "tracing": receiver is not None,
        "spans_received": len(receiver.spans) if receiver is not None else 0,
    }
    write_result(output, report, TAG)
    for name, values in results.items():
        progress(
            TAG, f"{name}: p50 {values['p50']} ms, p90 {values['p90']} ms, max {values['max']}"
        )
    progress(TAG, f"goal p50 ≤ {GOAL_MS:.0f} ms in every mode: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
