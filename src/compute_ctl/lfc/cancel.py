"""Cancellation of a running prewarm: a token set once, and a wait that honours it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import TypeVar

T = TypeVar("T")


class CancelToken:
    """Set once; whoever watches it stops what it is doing."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


class TokenCancelledError(Exception):
    """The token was cancelled while a step ran."""


async def unless_cancelled(token: CancelToken, work: Awaitable[T]) -> T:
    """`work`'s result, or TokenCancelledError as soon as the token is cancelled (the work is then
    cancelled; a worker thread behind it is abandoned). A result that is ready wins."""
    if token.cancelled:
        if isinstance(work, Coroutine):
            work.close()
        raise TokenCancelledError
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(token.wait())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    raise TokenCancelledError
