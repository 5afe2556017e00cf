"""P5: `GET /status` latency of a running compute, sequential and under an open-loop load,
with compute_ctl's memory.

    .venv/bin/python bench/api_latency.py [--requests 10000] [--rate 500] [--seconds 20]

A compute is started through compute_ctl against the storage stand-ins (libpq, the spec
`compute-dev up` writes) and left `running`, its activity monitor polling Postgres as usual.
Then, on loopback only:

1. `--requests` sequential `GET /status` on one keep-alive connection (after 200 unrecorded
   warm-up requests): latency p50/p90/p99 and the rate reached;
2. an open-loop load: `--rate` requests per second for `--seconds`, each sent at its scheduled
   time whatever happened to the previous ones (a free keep-alive connection is reused, else a
   new one is opened); latency counts from the scheduled time, so a late client or a queue in
   the server both show; errors are non-200 answers, failed connections and answers slower than
   2 s.

compute_ctl's VmRSS is sampled from /proc every 100 ms throughout; VmHWM is read at the end.
The load generator is a raw-socket client (sequential) and an asyncio client (open loop) in
this process; its own overhead is measured by running both against a stub HTTP server (a
separate Python process answering a fixed body of the same size with nothing behind it): that
is the floor beside each row. CPU seconds used by compute_ctl and by the client are recorded.
Results go to bench/results/api_latency.json. Goals: p99 ≤ 5 ms (both loads), VmHWM ≤ 80 MB
(decimal: 76.3 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
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
from tests.support.harness import free_port, shared_tempdir, stop_process

from compute_dev.commands.up import build_spec
from compute_dev.pgbin import find_pg_bin, server_user

TAG = "api_latency"
P99_GOAL_MS = 5.0
RSS_GOAL_MB = 80.0
WARM_UP = 200
ANSWER_TIMEOUT = 2.0
MAX_CONNECTIONS = 64
REQUEST = b"GET /status HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"


# ------------------------------------------------------------------------------------------
# The client


def read_answer(sock: socket.socket, buffer: bytearray) -> int:
    """Read one HTTP/1.1 answer with a Content-Length body from a blocking socket; returns
    its status code. Bytes past the answer stay in `buffer`."""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buffer += chunk
    head = bytes(buffer[:end]).decode("latin-1")
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    total = end + 4 + length
    while len(buffer) < total:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buffer += chunk
    del buffer[:total]
    return int(head.split(" ", 2)[1])


def sequential(port: int, requests: int) -> dict[str, Any]:
    """`requests` GETs one after the other on one keep-alive connection."""
    latencies: list[float] = []
    errors = 0
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray()
        for _ in range(WARM_UP):
            sock.sendall(REQUEST)
            read_answer(sock, buffer)
        cpu = time.process_time()
        started = time.perf_counter()
        for _ in range(requests):
            sent = time.perf_counter()
            sock.sendall(REQUEST)
            if read_answer(sock, buffer) != 200:
                errors += 1
            latencies.append((time.perf_counter() - sent) * 1000)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return {
        "latency_ms": spread(latencies, 3),
        "requests": requests,
        "errors": errors,
        "requests_per_s": round(requests / elapsed),
        "client_cpu_s": round(cpu, 2),
        "seconds": round(elapsed, 2),
    }


@dataclass
class OpenLoop:
    port: int
    rate: float
    seconds: float
    latencies: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    connections_opened: int = 0
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)
    open_now: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer = self.idle.pop()
            if not reader.at_eof():
                return reader, writer
            # The server closed it while it sat in the pool: drop it, as an HTTP client does.
            self.open_now -= 1
            writer.close()
        if self.open_now >= MAX_CONNECTIONS:
            raise ConnectionError("connection limit")
        self.open_now += 1
        self.connections_opened += 1
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            self.open_now -= 1
            raise
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def _one(self, scheduled: float) -> None:
        loop = asyncio.get_running_loop()
        self.lateness.append((loop.time() - scheduled) * 1000)
        try:
            reader, writer = await self._connection()
        except (OSError, ConnectionError) as exc:
            self.error(type(exc).__name__)
            return
        try:
            writer.write(REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT)
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await asyncio.wait_for(reader.readexactly(length), ANSWER_TIMEOUT)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self.error(type(exc).__name__)
            self.open_now -= 1
            writer.close()
            return
        self.latencies.append((loop.time() - scheduled) * 1000)
        if lines[0].split(" ", 2)[1] != "200":
            self.error(f"status {lines[0].split(' ', 2)[1]}")
        self.idle.append((reader, writer))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        total = int(self.rate * self.seconds)
        start = loop.time() + 0.05
        tasks: set[asyncio.Task[None]] = set()
        for i in range(total):
            scheduled = start + i / self.rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._one(scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)
        for _reader, writer in self.idle:
            writer.close()


def open_loop(port: int, rate: float, seconds: float) -> dict[str, Any]:
    load = OpenLoop(port, rate, seconds)
    cpu = time.process_time()
    started = time.perf_counter()
    asyncio.run(load.run())
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    sent = len(load.lateness)
    return {
        "latency_ms": spread(load.latencies, 3) if load.latencies else None,
        "requests": sent,
        "answered": len(load.latencies),
        "errors": sum(load.errors.values()),
        "errors_by_kind": load.errors,
        "rate_per_s": rate,
        "achieved_per_s": round(len(load.latencies) / elapsed, 1),
        "seconds": round(elapsed, 2),
        "send_lateness_ms": spread(load.lateness, 3),
        "connections_opened": load.connections_opened,
        "client_cpu_s": round(cpu, 2),
    }


# ------------------------------------------------------------------------------------------
# The stub server: the floor of the client and the loopback


def serve_stub(port: int, body: bytes) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\ncontent-type: application/json\r\n\r\n%s"
        % (len(body), body)
    )

    class Stub(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.pending = b""

        def data_received(self, data: bytes) -> None:
            self.pending += data
            while (end := self.pending.find(b"\r\n\r\n")) >= 0:
                self.pending = self.pending[end + 4 :]
                self.transport.write(answer)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Stub, "127.0.0.1", port)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def start_stub(body: bytes) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--stub", str(port), "--stub-body", body.decode()],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise RuntimeError("the stub server did not start")
    return process, port


# ------------------------------------------------------------------------------------------
# Memory and CPU of compute_ctl


class Sampler(threading.Thread):
    """VmRSS every 100 ms while running."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[int] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.samples.append(rss_kib(self.pid)[0])
            self.stopping.wait(0.1)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def mib(kib: float) -> float:
    return round(kib / 1024, 1)


def mb(kib: float) -> float:
    """Decimal megabytes: the goal says MB (80 MB is 76.3 MiB)."""
    return round(kib * 1024 / 1e6, 1)


# ------------------------------------------------------------------------------------------


def start_compute(root: Path, tag: str) -> tuple[subprocess.Popen[bytes], int, Any]:
    stand_ins = start_stand_ins(root, tag)
    user = server_user()
    workdir = root / "compute"
    workdir.mkdir(mode=0o755)
    user.chown(workdir)
    pg_port = free_port()
    spec = build_spec(
        stand_ins.timeline,
        protocol="libpq",
        libpq_port=stand_ins.libpq_port,
        grpc_port=stand_ins.grpc_port,
        safekeeper_ports=stand_ins.safekeeper_ports,
        pg_port=pg_port,
        socket_dir=workdir,
    )
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    user.chown(spec_path)
    port = free_port()
    argv = [*compute_ctl_argv(), "-D", str(workdir / "pgdata"), "-S", str(spec_path)]
    argv += ["-C", f"postgresql://cloud_admin@127.0.0.1:{pg_port}/postgres"]
    argv += ["-b", str(find_pg_bin() / "postgres"), "--dev"]
    argv += ["--external-http-port", str(port), "--internal-http-port", str(free_port())]
    started = time.perf_counter()
    process = launch(argv, workdir, workdir / "compute.log")
    try:
        wait_answer(port, started, process, interval=0.02, deadline=60)
        wait_status(port, "running", process, interval=0.05, deadline=60)
    except BaseException:
        stop_process(process)
        stand_ins.stop()
        raise
    return process, port, stand_ins


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--stub", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stub-body", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub is not None:
        serve_stub(args.stub, args.stub_body.encode())
        return 0

    compile_bytecode(TAG)
    root = shared_tempdir("bench-api-")
    try:
        process, port, stand_ins = start_compute(root, TAG)
        try:
            answer = get(port, "/status")
            assert answer is not None
            body = answer[1]
            rss_idle, _ = rss_kib(process.pid)
            sampler = Sampler(process.pid)
            sampler.start()
            progress(TAG, f"compute running, compute_ctl VmRSS {mib(rss_idle)} MiB")
            cpu_before = cpu_seconds(process.pid)
            progress(TAG, f"sequential: {args.requests} GET /status on one connection")
            seq = sequential(port, args.requests)
            seq["server_cpu_s"] = round(cpu_seconds(process.pid) - cpu_before, 2)
            progress(TAG, f"sequential: {json.dumps(seq['latency_ms'])}")
            rss_after_sequential = max(sampler.samples)
            cpu_before = cpu_seconds(process.pid)
            progress(TAG, f"open loop: {args.rate:.0f} req/s for {args.seconds:.0f} s")
            load = open_loop(port, args.rate, args.seconds)
            load["server_cpu_s"] = round(cpu_seconds(process.pid) - cpu_before, 2)
            progress(TAG, f"open loop: {json.dumps(load['latency_ms'])}, errors {load['errors']}")
            sampler.stopping.set()
            sampler.join()
            rss_end, hwm = rss_kib(process.pid)
        finally:
            code = terminate(port, process)
            stand_ins.stop()
        progress(TAG, f"compute_ctl exited with status {code}")

        progress(TAG, "floor: the same clients against a stub server")
        stub, stub_port = start_stub(body)
        try:
            floor_seq = sequential(stub_port, args.requests)
            floor_load = open_loop(stub_port, args.rate, min(args.seconds, 5.0))
        finally:
            stop_process(stub)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    memory = {
        "idle_mib": mib(rss_idle),
        "max_during_sequential_mib": mib(rss_after_sequential),
        "max_during_load_mib": mib(max(sampler.samples)),
        "at_end_mib": mib(rss_end),
        "hwm_mib": mib(hwm),
        "hwm_mb": mb(hwm),
        "samples": len(sampler.samples),
    }
    seq_p99 = seq["latency_ms"]["p99"]
    load_p99 = load["latency_ms"]["p99"] if load["latency_ms"] else float("inf")
    met = {
        "sequential_p99": seq_p99 <= P99_GOAL_MS,
        "open_loop_p99": load_p99 <= P99_GOAL_MS and load["errors"] == 0,
        "rss": memory["hwm_mb"] <= RSS_GOAL_MB,
    }
    report = {
        "benchmark": "P5 API latency and memory",
        "date": now_iso(),
        "machine": machine(),
        "status_body_bytes": len(body),
        "sequential": seq,
        "open_loop": load,
        "memory": memory,
        "floor": {"sequential": floor_seq, "open_loop": floor_load},
        "goals": {"p99_ms": P99_GOAL_MS, "rss_mb": RSS_GOAL_MB},
        "met": met,
    }
    write_result("api_latency", report, TAG)
    progress(
        TAG,
        f"sequential p99 {seq_p99} ms (floor {floor_seq['latency_ms']['p99']} ms), "
        f"open loop p99 {load_p99} ms (floor {floor_load['latency_ms']['p99']} ms), "
        f"errors {load['errors']}, VmHWM {memory['hwm_mib']} MiB ({memory['hwm_mb']} MB): "
        + ", ".join(f"{name} {'met' if ok else 'NOT met'}" for name, ok in met.items()),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
