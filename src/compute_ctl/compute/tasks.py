"""The background tasks of one compute: named, kept referenced until they end.

asyncio keeps only weak references to tasks; a task nobody holds can vanish mid-run. Every
fire-and-forget task of the compute (sidecar configuration, migrations, the certificate watcher,
the listeners…) is started here instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from compute_ctl import tracing


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[None]] = set()

    def spawn(
        self, work: Awaitable[None], name: str, *, traced: bool = False
    ) -> asyncio.Future[None]:
        """Run `work` as a task called `name`; outside the caller's spans unless `traced`
        (work that belongs to the span it was started in, like the start-up's migrations)."""
        if traced or not asyncio.iscoroutine(work):
            task = asyncio.ensure_future(work)
        else:
            task = asyncio.get_running_loop().create_task(work, context=tracing.detached())
        if isinstance(task, asyncio.Task):
            task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
