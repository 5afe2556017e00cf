"""The background tasks of one compute: named, kept referenced until they end.

asyncio keeps only weak references to tasks; a task nobody holds can vanish mid-run. Every
fire-and-forget task of the compute (sidecar configuration, migrations, the certificate watcher,
the listeners…) is started here instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[None]] = set()

    def spawn(self, work: Awaitable[None], name: str) -> asyncio.Future[None]:
        """Run `work` as a task called `name`."""
        task = asyncio.ensure_future(work)
        if isinstance(task, asyncio.Task):
            task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
