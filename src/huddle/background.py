"""A long-running task owned by one component: started with it, cancelled and awaited on stop.

The sweeper, the MQTT bridge and connection, SSE dispatch and MCP notifications each run one such
loop; this keeps the start/cancel/await-and-swallow-CancelledError dance in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


class Background:
    def __init__(self, name: str):
        self.name = name
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.create_task(work, name=self.name)

    async def stop(self) -> None:
        """Cancels the task and waits for it to finish; a no-op when it never started."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
