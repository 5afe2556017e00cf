"""What both basebackup clients push bytes into (the streaming extractor, or a test's buffer)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Protocol


class ChunkSink(Protocol):
    """Where basebackup bytes go. `feed` may be a plain function or a coroutine."""

    def feed(self, chunk: bytes, /) -> Awaitable[None] | None: ...


async def feed(sink: ChunkSink, chunk: bytes) -> None:
    """Push one chunk, awaiting the sink if it is asynchronous."""
    result = sink.feed(chunk)
    if inspect.isawaitable(result):
        await result
