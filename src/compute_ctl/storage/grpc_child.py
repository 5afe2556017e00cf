"""The gRPC basebackup in a short-lived child process, and the parent's end of its pipe.

Why a child: grpcio and protobuf, once imported, stay resident for the whole life of the
process (about 20 MiB more VmHWM and VmRSS, and grpc's threads), yet a gRPC start needs them
only for the seconds of its basebackup. So compute_ctl never imports them for it: each attempt
runs `python -m compute_ctl.storage.grpc_child`, which calls `grpc_basebackup`
(`storage/grpc.py`, unchanged) and streams the gzip bytes back; compute_ctl feeds them to its
sink as the in-process call did. The LSN leases of a static compute (`grpc_lease_lsn`) stay
in-process: they are renewed for the compute's whole life, so a static gRPC compute loads
grpcio once its first lease is taken.

The pipe between the two:
- stdin: the request, one JSON line (URL, ids, LSN, replica, shard, and the storage token: the
  token never goes into the child's argv or environment, which /proc shows). compute_ctl keeps
  stdin open until the end; EOF on stdin means it is gone or gave up, and the child exits.
- stdout: frames, a kind byte and a 4-byte big-endian length, then the payload: `D` one gRPC
  chunk of the stream, then one final frame, `O` (JSON: connect_micros, compressed_bytes) or
  `E` (JSON: target, message, transient: the `StorageError` the client raised, which the parent
  raises again unchanged, so that the retry policy and the texts in the log and in `/status`
  are the in-process client's).
- stderr: the compute's stderr, the lines in the compute's format (`logsetup`).

A child may be started before its request is known (`start_child`, which
`PageserverClient.started_ahead` calls when a gRPC start begins): it loads grpcio first and
then waits on stdin, so that its start overlaps with finding the LSN. A child that ends
without a final frame (killed, crashed) is a transient `StorageError` naming its exit status:
the retry policy tries again with a new child. A child never outlives its attempt: the parent
kills and reaps it when the attempt fails or is cancelled (a shutdown cancels the start), and
the child dies with its parent (PR_SET_PDEATHSIG, and EOF on stdin).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import stat
import struct
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from compute_ctl.envflags import env_flag
from compute_ctl.errors import StorageError
from compute_ctl.storage.grpc_url import GrpcTarget, redact
from compute_ctl.storage.sink import ChunkSink, feed

__all__ = [
    "BasebackupRequest",
    "ChildResult",
    "basebackup_in_child",
    "child_argv",
    "discard_child",
    "discard_spare",
    "main",
    "start_child",
    "start_spare",
    "take_spare",
]

MODULE: Final = "compute_ctl.storage.grpc_child"

log = logging.getLogger(MODULE)
"""By name: run with `-m`, this module is `__main__`, which `RUST_LOG` would not match."""

HEADER: Final = struct.Struct(">cI")
DATA: Final = b"D"
OK: Final = b"O"
ERROR: Final = b"E"

MAX_DATA_FRAME: Final = 4 * 1024 * 1024
"""The client's receive limit (`MAX_RECEIVE_MESSAGE_BYTES` in `storage/grpc.py`): one chunk of
the stream is never larger."""
MAX_FINAL_FRAME: Final = 64 * 1024
MAX_REQUEST_BYTES: Final = 1 << 20
"""A request is a few hundred bytes plus the token (a JWT: a few KiB)."""

PIPE_BYTES: Final = 1 << 20
"""The stdout pipe's capacity the child asks for: a 256 KiB chunk then crosses in one write
instead of four (a pipe holds 64 KiB by default)."""

READ_BUFFER: Final = 256 * 1024
"""The parent's read buffer limit: one chunk of the stream (asyncio pauses the pipe at twice
the limit). asyncio's default, 64 KiB, paused and resumed the pipe several times per chunk
(about 10 % slower on a large basebackup); 1 MiB let the stream run ahead into compute_ctl's
heap, which then stayed about 10 MiB larger for the compute's whole life."""

EXIT_GRACE: Final = 5.0
"""Seconds a child that has sent its final frame gets to exit before it is killed."""

EXIT_PARENT_GONE: Final = 3
"""The child's exit status when its parent went away before the end (nobody reads it)."""
EXIT_USAGE: Final = 2
"""The child's exit status when it was not started with pipes, as `start_child` starts it."""


@dataclass(frozen=True)
class BasebackupRequest:
    """What `grpc_basebackup` is called with, in the JSON form that crosses the pipe."""

    url: str
    tenant: str
    timeline: str
    lsn: int | None
    replica: bool
    shard: str
    """The `neon-shard-id` header, e.g. `0004` (shard 0 of 4)."""
    token: str | None

    def encode(self) -> bytes:
        fields = {
            "url": self.url,
            "tenant": self.tenant,
            "timeline": self.timeline,
            "lsn": self.lsn,
            "replica": self.replica,
            "shard": self.shard,
            "token": self.token,
        }
        return json.dumps(fields).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> BasebackupRequest:
        """The request of one line; ValueError naming the first field that is wrong."""
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("the request is not a JSON object")
        kinds: dict[str, tuple[type, ...]] = {
            "url": (str,),
            "tenant": (str,),
            "timeline": (str,),
            "lsn": (int, type(None)),
            "replica": (bool,),
            "shard": (str,),
            "token": (str, type(None)),
        }
        values: dict[str, Any] = {name: data.get(name) for name in kinds}
        for name, allowed in kinds.items():
            value = values[name]
            if not isinstance(value, allowed) or (name == "lsn" and isinstance(value, bool)):
                raise ValueError(f"field {name!r} is missing or of the wrong type")
        return cls(**values)


@dataclass(frozen=True)
class ChildResult:
    """What the final `O` frame reports."""

    connect_micros: int
    """The child's call → the channel is up (the interpreter's start is not counted)."""
    compressed_bytes: int


# --- the parent's end --------------------------------------------------------------------------


def child_argv() -> list[str]:
    """This interpreter running this module; `-P`: the working directory (PGDATA's parent, or
    wherever compute_ctl was started) is not put on the module path."""
    return [sys.executable, "-P", "-m", MODULE]


async def start_child() -> asyncio.subprocess.Process:
    """A child that loads grpcio at once, then waits for its request on stdin."""
    return await asyncio.create_subprocess_exec(
        *child_argv(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=None,
        limit=READ_BUFFER,
    )


async def discard_child(process: asyncio.subprocess.Process) -> None:
    """Kill and reap a child from `start_child` that got no request."""
    await _end(process, graceful=False)


SPARE_ENV: Final = "COMPUTE_CTL_GRPC_CHILD_WHILE_EMPTY"
"""Set to 1, an empty compute keeps a child ready (`start_spare`): a pooled gRPC start then
waits for no interpreter start and no grpcio import (about 100 ms, docs/benchmarks.md, F1),
and each empty compute holds the child's memory (about 20 MiB of its own) until `/configure`.
A running compute never keeps one: a libpq start discards it, a gRPC start uses it up."""


@dataclass
class _Spare:
    process: asyncio.subprocess.Process | None = None
    taken: bool = False
    """The start has asked for it (or ruled it out): no spare is started after that, so that
    one whose start was still under way when `/configure` came cannot outlive the start."""


_spare = _Spare()
"""The one child an empty compute keeps ready, if any (one compute per process)."""


def spare_wanted(environ: Mapping[str, str]) -> bool:
    return env_flag(environ, SPARE_ENV)


async def start_spare() -> None:
    """Start the spare child, unless there is one; a failure to start it is only logged (the
    start will start its own and report why it cannot)."""
    if _spare.taken or (_spare.process is not None and _spare.process.returncode is None):
        return
    try:
        process = await start_child()
    except OSError as exc:
        log.warning("could not start the spare gRPC client process: %s", exc)
        return
    if _spare.taken:  # the start asked while this one was being started
        await discard_child(process)
    else:
        _spare.process = process


async def take_spare() -> asyncio.subprocess.Process | None:
    """The spare child, now the caller's; None when there is none or it has died. No spare is
    started afterwards."""
    _spare.taken = True
    process, _spare.process = _spare.process, None
    if process is not None and process.returncode is not None:
        log.warning("the spare gRPC client process ended (status %d)", process.returncode)
        await discard_child(process)  # reaps it; a new child is started instead
        return None
    return process


async def discard_spare() -> None:
    """Kill and reap the spare child, if any (a libpq start, or the end of an empty compute)."""
    process = await take_spare()
    if process is not None:
        await discard_child(process)


async def basebackup_in_child(
    request: BasebackupRequest,
    sink: ChunkSink,
    *,
    child: asyncio.subprocess.Process | None = None,
) -> ChildResult:
    """Run one gRPC basebackup in a child process (`child`, started by `start_child`, or a new
    one), pushing its chunks into `sink`; the child is reaped before this returns or raises.

    Raises what `grpc_basebackup` raises (the same `StorageError`), a transient `StorageError`
    when the child ends without saying how the stream ended, and whatever `sink.feed` raises.
    """
    process = child
    final: tuple[bytes, bytes] | None = None
    try:
        target = GrpcTarget.parse(request.url)  # a permanent error before any process starts
        if process is None:
            try:
                process = await start_child()
            except OSError as exc:  # out of processes or memory, most likely: worth a retry
                raise StorageError(
                    target.url,
                    f"basebackup from pageserver {target.url} failed: could not start the "
                    f"gRPC client process: {exc}",
                    transient=True,
                ) from None
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(request.encode())
        with contextlib.suppress(ConnectionError):  # it died already: its exit status says why
            await process.stdin.drain()
        received, final = await _read_frames(process.stdout, sink, target)
        if final is None:
            returncode = await _end(process, graceful=True)
            raise StorageError(
                target.url,
                f"basebackup from pageserver {target.url} failed: the gRPC client process "
                f"{_exit_text(returncode)} before the end of the stream",
                transient=True,
            )
        return _result(final, received, target)
    finally:
        if process is not None:
            await _end(process, graceful=final is not None)


async def _read_frames(
    stdout: asyncio.StreamReader, sink: ChunkSink, target: GrpcTarget
) -> tuple[int, tuple[bytes, bytes] | None]:
    """Feed the data frames to `sink` until the final frame: (bytes fed, (kind, payload)), or
    no final frame when the stream ends without one."""
    received = 0
    while True:
        try:
            kind, length = HEADER.unpack(await stdout.readexactly(HEADER.size))
            if kind not in (DATA, OK, ERROR) or length > (
                MAX_DATA_FRAME if kind == DATA else MAX_FINAL_FRAME
            ):
                raise _garbled(target, f"a frame of kind {kind!r} and {length} bytes")
            payload = await stdout.readexactly(length)
        except asyncio.IncompleteReadError:
            return received, None
        if kind != DATA:
            return received, (kind, payload)
        received += length
        await feed(sink, payload)


def _result(final: tuple[bytes, bytes], received: int, target: GrpcTarget) -> ChildResult:
    """The final frame's result, or the `StorageError` it carries."""
    kind, payload = final
    try:
        data = json.loads(payload)
        if kind == ERROR:
            error = StorageError(
                str(data["target"]), str(data["message"]), transient=bool(data["transient"])
            )
        else:
            result = ChildResult(int(data["connect_micros"]), int(data["compressed_bytes"]))
    except (ValueError, TypeError, KeyError):
        raise _garbled(target, f"an unreadable final frame of kind {kind!r}") from None
    if kind == ERROR:
        raise error
    if result.compressed_bytes != received:
        raise _garbled(
            target, f"{result.compressed_bytes} bytes announced, {received} bytes received"
        )
    return result


def _garbled(target: GrpcTarget, what: str) -> StorageError:
    """The two ends disagree about the pipe: a bug, which another try would repeat."""
    return StorageError(
        target.url,
        f"basebackup from pageserver {target.url} failed: the gRPC client process sent {what}",
        transient=False,
    )


def _exit_text(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"was killed by signal {name}"
    return f"exited with status {returncode}"


async def _end(process: asyncio.subprocess.Process, *, graceful: bool) -> int:
    """Close the child's stdin and reap it; its exit status. With `graceful` (it has sent its
    final frame, or closed its stdout) it gets `EXIT_GRACE` seconds to exit, else it is killed
    at once."""
    if process.stdin is not None:
        process.stdin.close()
    if graceful and process.returncode is None:
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_drained_wait(process), EXIT_GRACE)
        except asyncio.CancelledError:
            _kill(process)  # reaped by the event loop's child watcher
            raise
    _kill(process)
    return await _drained_wait(process)


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


async def _drained_wait(process: asyncio.subprocess.Process) -> int:
    """`process.wait()`, after reading (and dropping) what is left on the child's stdout.

    asyncio's `wait()` returns only once it has seen EOF on the child's pipes, and it stops
    reading a pipe whose buffer is full: a child cut off mid-stream (a failed sink, a
    cancelled attempt) would otherwise never be waited for. A killed child writes no more;
    what is left is at most the pipe's capacity."""
    if process.stdout is not None:
        with contextlib.suppress(OSError):
            while await process.stdout.read(PIPE_BYTES):
                pass
    return await process.wait()


# --- the child ---------------------------------------------------------------------------------


PR_SET_PDEATHSIG: Final = 1


def _die_with_parent() -> None:
    """Ask the kernel for SIGKILL when the parent exits. It is the parent *thread* that counts:
    compute_ctl starts children from its event loop, which runs on its main thread."""
    try:
        import ctypes  # noqa: PLC0415 - the child only

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: EOF on stdin still ends the child
        pass


class _FrameSink:
    """The child's sink: each chunk becomes a data frame on stdout, written as the parent reads
    (the pipe's back-pressure slows the gRPC stream down, as a slow sink did in-process)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def feed(self, chunk: bytes) -> None:
        self._writer.write(HEADER.pack(DATA, len(chunk)) + chunk)
        await self._writer.drain()


def _final_frame(kind: bytes, fields: dict[str, Any]) -> bytes:
    payload = json.dumps(fields).encode()
    return HEADER.pack(kind, len(payload)) + payload


def _error_fields(error: StorageError) -> dict[str, Any]:
    return {"target": error.target, "message": str(error), "transient": error.transient}


async def _basebackup(request: BasebackupRequest, writer: asyncio.StreamWriter) -> bytes | None:
    """Run the request: its final frame, or None when the parent stopped reading."""
    from compute_ctl.spec.types import Lsn, ShardIndex, TenantId, TimelineId  # noqa: PLC0415
    from compute_ctl.storage.grpc import grpc_basebackup  # noqa: PLC0415 - loaded in main

    started = time.monotonic_ns()
    connected_at = started

    def connected() -> None:
        nonlocal connected_at
        connected_at = time.monotonic_ns()

    try:
        try:
            tenant, timeline = TenantId(request.tenant), TimelineId(request.timeline)
            lsn = Lsn(request.lsn) if request.lsn is not None else None
            shard = ShardIndex.parse(request.shard)
        except ValueError as exc:
            raise _bad_request(request.url, str(exc)) from None
        compressed = await grpc_basebackup(
            request.url,
            tenant,
            timeline,
            lsn,
            replica=request.replica,
            token=request.token,
            sink=_FrameSink(writer),
            shard=shard,
            on_connected=connected,
        )
    except StorageError as exc:
        return _final_frame(ERROR, _error_fields(exc))
    except ConnectionError:  # stdout: the parent has stopped reading
        return None
    except Exception as exc:  # a bug: reported, not retried (the in-process call raised it)
        text = f"{type(exc).__name__}: {exc}"
        if request.token:
            text = text.replace(request.token, "<token>")
        log.error("the gRPC basebackup failed unexpectedly: %s", text)
        shown = redact(request.url)
        error = StorageError(
            shown,
            f"basebackup from pageserver {shown} failed: unexpected error in the gRPC client "
            f"process: {text}",
            transient=False,
        )
        return _final_frame(ERROR, _error_fields(error))
    fields = {
        "connect_micros": (connected_at - started) // 1000,
        "compressed_bytes": compressed,
    }
    return _final_frame(OK, fields)


def _bad_request(url: str | None, problem: str) -> StorageError:
    """A request the parent should never have sent: a bug, not retried."""
    shown = redact(url) if url is not None else ""
    where = f"basebackup from pageserver {shown}" if shown else "basebackup"
    return StorageError(
        shown,
        f"{where} failed: the gRPC client process got an invalid request: {problem}",
        transient=False,
    )


async def _serve() -> int:
    """Read the request, run it, write its frames; end early when stdin reaches EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_REQUEST_BYTES)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    with contextlib.suppress(OSError):  # a larger pipe is only faster
        import fcntl  # noqa: PLC0415 - the child only

        fcntl.fcntl(sys.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    try:
        line = await reader.readline()
    except ValueError:  # no newline within the limit
        line = None
    try:
        if line is None:
            raise ValueError(f"the request is longer than {MAX_REQUEST_BYTES} bytes")
        if not line.endswith(b"\n"):
            return EXIT_PARENT_GONE  # EOF before a whole request
        request = BasebackupRequest.decode(line)
    except ValueError as exc:
        frame: bytes | None = _final_frame(ERROR, _error_fields(_bad_request(None, str(exc))))
    else:
        work = asyncio.ensure_future(_basebackup(request, writer))
        gone = asyncio.ensure_future(reader.read())  # b"" once stdin is closed
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            return EXIT_PARENT_GONE
        frame = work.result()
    if frame is None:
        return EXIT_PARENT_GONE
    writer.write(frame)
    try:
        await writer.drain()
    except ConnectionError:
        return EXIT_PARENT_GONE
    writer.close()
    return 0


def main() -> NoReturn:
    """The child: die with the parent, log as the compute does, load grpcio (while the parent
    may still be finding the LSN), serve the one request, and exit.

    The exit skips the interpreter's teardown (`os._exit`, after flushing the log): with grpcio
    loaded it takes about 20 ms, which the parent would wait for, and nothing is left to tidy,
    the channel being closed and the final frame written."""
    _die_with_parent()
    from compute_ctl.logsetup import setup_logging  # noqa: PLC0415 - the child only

    setup_logging(os.environ)
    if not all(stat.S_ISFIFO(os.fstat(fd).st_mode) for fd in (0, 1)):
        # By hand, from a terminal or a file: asyncio would wait on such a stdin forever.
        log.error("%s runs under compute_ctl only: stdin and stdout must be pipes", MODULE)
        logging.shutdown()
        os._exit(EXIT_USAGE)
    import compute_ctl.storage.grpc  # noqa: F401, PLC0415 - loaded before the request comes

    code = asyncio.run(_serve())
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
