"""The Coordinator: every capability service behind one object, plus the expiry sweeper.

Transports hold a Coordinator and call one service method per request. Capabilities register
their agent-gone hooks, scoring signals and sweeper steps here, so none of them needs to know
the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from huddle.bus.memory import EventBus
from huddle.service.agents import AgentService
from huddle.service.context import ServiceContext
from huddle.service.depmap import DependencyMapService
from huddle.service.files import FileService, clear_working_files
from huddle.service.intents import IntentService, withdraw_agent_intents
from huddle.service.signals import IntentOverlap, RecentEdits, SameModule
from huddle.service.status import StatusService
from huddle.service.threads import ThreadService, leave_threads
from huddle.service.updates import UpdateService
from huddle.settings import Settings
from huddle.storage.base import Store, Unit

log = logging.getLogger(__name__)
SweepStep = Callable[[Unit], int]


class Coordinator:
    def __init__(self, store: Store, bus: EventBus, settings: Settings):
        self.ctx = ServiceContext(store=store, bus=bus, settings=settings)
        self.store = store
        self.bus = bus
        self.settings = settings
        self.agents = AgentService(self.ctx)
        self.intents = IntentService(self.ctx)
        self.threads = ThreadService(self.ctx)
        self.files = FileService(self.ctx)
        self.depmap = DependencyMapService(self.ctx)
        self.updates = UpdateService(self.ctx)
        self.status = StatusService(self.ctx)
        self.ctx.signal_providers += [IntentOverlap(), RecentEdits(self.ctx), SameModule()]
        # Order matters: threads are left before intents are withdrawn, so a thread's own events
        # still reach the members who are leaving.
        self.ctx.agent_gone_hooks += [leave_threads, withdraw_agent_intents, clear_working_files]
        self.sweep_steps: list[SweepStep] = [
            self.agents.expire_silent, self.intents.expire, self.threads.expire, self.files.expire,
        ]
        self._sweeper: asyncio.Task[None] | None = None
        store.on_commit(bus.publish)

    async def start(self) -> None:
        await self.store.open()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="huddle-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self.store.close()

    async def sweep(self) -> int:
        """Runs every expiry step once in one transaction; returns how many records changed."""

        def txn(unit: Unit) -> int:
            return sum(step(unit) for step in self.sweep_steps)

        return await self.store.write(txn)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # keep sweeping: one bad step must not stop expiry for good
                log.exception("sweep failed")
            await asyncio.sleep(self.settings.sweep_interval_s)
