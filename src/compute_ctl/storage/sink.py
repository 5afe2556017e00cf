"""What both basebackup clients push bytes into (the streaming extractor, or a test's buffer), and
what they report about a transfer."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol


class ChunkSink(Protocol):
    """Where basebackup bytes go. `feed` may be a plain function or a coroutine."""

    def feed(self, chunk: bytes, /) -> Awaitable[None] | None: ...


async def feed(sink: ChunkSink, chunk: bytes) -> None:
    """Push one chunk, awaiting the sink if it is asynchronous."""
    result = sink.feed(chunk)
    if inspect.isawaitable(result):
        await result


@dataclass(frozen=True)
class BasebackupStats:
    """The measurements of one successful basebackup (the `ComputeMetrics` fields)."""

    connect_micros: int
    """Attempt start → connection established (after authentication, before the request)."""
    compressed_bytes: int
    """Bytes of the gzip stream received."""
    duration_ms: int
    """Attempt start → the end of the transfer (a client: the server confirmed the end of the
    stream; `get_basebackup`: the archive is unpacked too)."""
