"""What the whole-process benchmarks share: the storage stand-ins with a prepared basebackup,
compute_ctl started as an operator would (as the server user when we are root), HTTP probes,
percentiles and the results files.

Every benchmark script puts the repository root on `sys.path` so that `tests.support.harness`
(directories the server user may use, free ports, process stops) is shared with the tests.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.harness import stop_process  # noqa: E402

from compute_dev.pgbin import RunAs, find_pg_bin, server_user  # noqa: E402
from compute_dev.standins.timelines import Timeline, TimelineStore  # noqa: E402


def tracing_env(endpoint: str) -> dict[str, str]:
    """What a compute needs to export its spans to `endpoint` (an OTLP/HTTP receiver), with
    the SDK's default batching, as an operator would configure it (`docs/deploying.md`)."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}


def progress(tag: str, text: str) -> None:
    print(f"[{tag}] {text}", flush=True)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def postgres_version(pg_bin: Path | None = None) -> str:
    """`postgres (PostgreSQL) 15.18 (Debian …)`, as the server prints it."""
    binary = (pg_bin or find_pg_bin()) / "postgres"
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def machine() -> dict[str, Any]:
    """Where the numbers come from (no host names, no paths)."""
    return {
        "arch": platform.machine(),
        "cpus": os.cpu_count(),
        "system": platform.system(),
        "python": platform.python_version(),
        "postgres": postgres_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "tmpdir_filesystem": tmpdir_filesystem(),
    }


def tmpdir_filesystem() -> str:
    """The type of the file system temporary directories are made on (`tmpfs`, `ext4`, …),
    from /proc/mounts: recorded instead of the path itself."""
    path = os.path.realpath(tempfile.gettempdir())
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


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): always one of the samples, so the p99 of 20
    samples is the largest."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(samples: Sequence[float], digits: int = 1) -> dict[str, float]:
    """p50/p90/p99 with min, max and the count."""
    return {
        "n": len(samples),
        "p50": round(percentile(samples, 50), digits),
        "p90": round(percentile(samples, 90), digits),
        "p99": round(percentile(samples, 99), digits),
        "min": round(min(samples), digits),
        "max": round(max(samples), digits),
        "mean": round(statistics.fmean(samples), digits),
    }


def write_result(name: str, report: dict[str, Any], tag: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    progress(tag, f"results written to {path.relative_to(ROOT)}")
    return path


def compile_bytecode(tag: str) -> None:
    """Byte-compile compute_ctl and compute_dev where they are imported from, as `pip install`
    does for an installed package: an editable install run with PYTHONDONTWRITEBYTECODE would
    otherwise compile every module at every start, which no deployment does."""
    for package in ("compute_ctl", "compute_dev"):
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations is not None
        for location in spec.submodule_search_locations:
            subprocess.run(
                [sys.executable, "-m", "compileall", "-q", location],
                check=True,
                env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            )
    progress(tag, "compute_ctl byte-compiled, as an installed package is")


def compute_ctl_argv() -> list[str]:
    """The installed `compute_ctl` entry point next to this interpreter, as an operator runs
    it (falls back to `python -m compute_ctl.cli`)."""
    script = Path(sys.executable).parent / "compute_ctl"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "compute_ctl.cli"]


@dataclass
class StandIns:
    """A running `compute-dev storage` process serving one timeline from a prepared gzip."""

    process: subprocess.Popen[str]
    timeline: Timeline
    archive: Path
    libpq_port: int
    grpc_port: int
    safekeeper_ports: list[int]

    def stop(self) -> None:
        stop_process(self.process)


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def start_stand_ins(root: Path, tag: str, safekeepers: int = 3) -> StandIns:
    """initdb a timeline under `root/store`, compress its basebackup once, and serve it from
    one stand-in process (pageserver over libpq and gRPC, `safekeepers` safekeepers)."""
    store = TimelineStore(root / "store")
    progress(tag, "initdb of the timeline")
    timeline = store.create(pg_bin=find_pg_bin())
    archive = timeline.prepare_gzip()
    progress(tag, f"basebackup prepared: {archive.stat().st_size / 1024:.0f} KiB gzip")
    argv = [sys.executable, "-m", "compute_dev.cli", "storage", "--dir", str(store.root)]
    argv += ["--libpq-port", "0", "--grpc-port", "0"]
    argv += ["--safekeeper-ports", ",".join("0" * safekeepers)]
    with open(root / "storage.log", "w") as log:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    process.stdout.close()
    if not line:
        process.wait(30)
        raise RuntimeError(
            f"the storage stand-ins did not start:\n{(root / 'storage.log').read_text()}"
        )
    ready: dict[str, Any] = json.loads(line)
    return StandIns(
        process=process,
        timeline=timeline,
        archive=archive,
        libpq_port=_port_of(ready["pageserver_libpq_url"]),
        grpc_port=_port_of(ready["pageserver_grpc_url"]),
        safekeeper_ports=[_port_of(url) for url in ready["safekeeper_connstrings"]],
    )


def launch(
    argv: Sequence[str],
    workdir: Path,
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    run_as: RunAs | None = None,
) -> subprocess.Popen[bytes]:
    """Start a program as the server user in `workdir`, output to `log_path`, with `env`
    added to ours."""
    user = run_as or server_user()
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=user.preexec(),  # noqa: PLW1509 - drops to the server user
            env=user.env({**os.environ, **(env or {})}),
            cwd=workdir,
        )


def get(
    port: int, path: str, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes] | None:
    """One GET on a fresh connection: (status, body), or None when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    except OSError:
        return None
    finally:
        conn.close()


def post(
    port: int, path: str, timeout: float = 30.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes] | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    except OSError:
        return None
    finally:
        conn.close()


def wait_answer(
    port: int,
    started: float,
    process: subprocess.Popen[bytes],
    *,
    interval: float,
    deadline: float,
    headers: dict[str, str] | None = None,
) -> float:
    """Seconds from `started` (a perf_counter reading) until `GET /status` answers 200."""
    while True:
        answer = get(port, "/status", timeout=deadline, headers=headers)
        if answer is not None and answer[0] == 200:
            return time.perf_counter() - started
        if process.poll() is not None:
            raise RuntimeError(f"compute_ctl exited with status {process.returncode}")
        if time.perf_counter() - started > deadline:
            raise RuntimeError("compute_ctl's /status did not answer in time")
        time.sleep(interval)


def wait_status(
    port: int,
    wanted: str,
    process: subprocess.Popen[bytes],
    *,
    interval: float,
    deadline: float,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Poll `/status` until it says `wanted` (fails on `failed` or an exit)."""
    limit = time.monotonic() + deadline
    while True:
        answer = get(port, "/status", headers=headers)
        if answer is not None and answer[0] == 200:
            body: dict[str, Any] = json.loads(answer[1])
            if body["status"] == wanted:
                return body
            if body["status"] == "failed":
                raise RuntimeError(f"the compute failed: {body['error']}")
        if process.poll() is not None:
            raise RuntimeError(f"compute_ctl exited with status {process.returncode}")
        if time.monotonic() > limit:
            raise RuntimeError(f"status {wanted!r} not reached in {deadline} s")
        time.sleep(interval)


def terminate(port: int, process: subprocess.Popen[bytes], mode: str = "immediate") -> int:
    """`POST /terminate` and wait for the process to exit; returns its exit status."""
    post(port, f"/terminate?mode={mode}")
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        stop_process(process)
        return process.wait()


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]
