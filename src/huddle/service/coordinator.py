"""The Coordinator: every capability service behind one object, plus the expiry sweeper.

Transports hold a Coordinator and call one service method per request. Capabilities register
their agent-gone hooks, scoring signals and sweeper steps here, so none of them needs to know
the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from huddle.analysis.runner import Analysis
from huddle.background import Background
from huddle.bus.memory import EventBus
from huddle.service import instances
from huddle.service.agents import AgentService
from huddle.service.code_signals import CoChange, GitOperation, MergeConflict
from huddle.service.context import ServiceContext
from huddle.service.depmap import DependencyMapService
from huddle.service.files import FileService, clear_working_files
from huddle.service.insights import InsightService
from huddle.service.intents import IntentService, withdraw_agent_intents
from huddle.service.locks import LockService, LockSignal
from huddle.service.messages import MessageService
from huddle.service.oversight import OversightService
from huddle.service.shared_context import SharedContextService
from huddle.service.signals import IntentOverlap, RecentEdits, SameModule
from huddle.service.status import StatusService
from huddle.service.tasks import TaskService
from huddle.service.threads import ThreadService, leave_threads
from huddle.service.updates import UpdateService
from huddle.service.workers import WorkerService
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
        self.locks = LockService(self.ctx)
        self.messages = MessageService(self.ctx)
        self.shared_context = SharedContextService(self.ctx)
        self.tasks = TaskService(self.ctx)
        self.workers = WorkerService(self.ctx)
        self.insights = InsightService(self.ctx)
        self.oversight = OversightService(self.ctx, self.locks)
        self.ctx.signal_providers += [IntentOverlap(), RecentEdits(self.ctx), SameModule()]
        # Order matters: threads are left before intents are withdrawn, so a thread's own events
        # still reach the members who are leaving.
        self.ctx.agent_gone_hooks += [leave_threads, withdraw_agent_intents, clear_working_files]
        self.sweep_steps: list[SweepStep] = [
            self._reap_instances,
            self.agents.expire_silent,
            self.intents.expire,
            self.threads.expire,
            self.files.expire,
        ]
        # Coordination primitives: lock layer L, leases/tasks/slots released with their agent,
        # lease expiry, and their coordinator_status sections.
        self.ctx.signal_providers.append(LockSignal())
        self.ctx.agent_gone_hooks += [self.locks.agent_gone, self.tasks.agent_gone, self.workers.agent_gone]
        self.sweep_steps.append(self.locks.sweep)
        self.status.sections.update(
            locks=self.locks.status_section, tasks=self.tasks.status_section, workers=self.workers.status_section
        )
        self.status.live_sections["messages"] = self.messages.waiting_agents
        # Code intelligence: layer 5 is a plain lookup; 4 and M read what the analysis loops wrote.
        self.ctx.signal_providers.append(GitOperation(self.ctx))
        self.ctx.depends_from_map = self.depmap.depends_files
        self.analysis = Analysis(self.ctx)
        if self.analysis.enabled:
            self.ctx.signal_providers += [CoChange(self.ctx), MergeConflict()]
        self._sweeper = Background("huddle-sweeper")
        self._last_heartbeat = 0.0
        store.on_commit(bus.publish)

    async def start(self) -> None:
        """Opens the store (running migrations) and starts the expiry sweeper."""
        await self.store.open()
        me = self.ctx.instance

        def join(unit: Unit) -> None:
            if not self.store.shared:
                instances.forget_others(unit, me)
            instances.heartbeat(unit, me)

        await self.store.write(join)
        self._last_heartbeat = time.monotonic()
        self.ctx.leader = await self.store.lead()
        self._sweeper.start(self._sweep_forever())
        self.analysis.start()

    async def stop(self) -> None:
        """Stops the sweeper, then closes the store after its last commit."""
        await self.analysis.stop()
        await self._sweeper.stop()
        await self.store.close()

    async def readiness(self) -> dict[str, Any]:
        """For /readyz: the database answers and the expiry sweeper is alive."""
        try:
            cursor = await self.updates.latest_cursor()
            database: dict[str, Any] = {"ok": True, "latest_cursor": cursor}
        except Exception as exc:  # a broken database is exactly what readiness reports
            database = {"ok": False, "error": str(exc)}
        alive = self._sweeper.running
        return {
            "database": database,
            # On a shared database only the leader sweeps; every instance's loop must be alive.
            "sweeper": {"ok": alive, "leader": self.ctx.leader, "instance": self.ctx.instance},
            "analysis": self.analysis.readiness(),
        }

    async def sweep(self) -> int:
        """Runs every expiry step once; returns how many records changed.

        Each step is its own transaction function (they still share one commit, in one batch),
        so a step that keeps failing rolls back alone instead of stopping every other expiry.
        """
        outcomes = await asyncio.gather(*(self.store.write(step) for step in self.sweep_steps), return_exceptions=True)
        changed = 0
        for step, outcome in zip(self.sweep_steps, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error("sweep step %s failed", getattr(step, "__qualname__", step), exc_info=outcome)
            else:
                changed += outcome
        return changed

    async def _sweep_forever(self) -> None:
        """Leader election, then the expiry sweep on the leader (its first step is the leader's
        heartbeat) or a heartbeat alone on the others, every interval."""
        while True:
            try:
                self.ctx.leader = await self.store.lead()
                if self.ctx.leader:
                    await self.sweep()
                else:
                    await self._heartbeat()
            except Exception:  # keep sweeping: one bad step must not stop expiry for good
                log.exception("sweep failed")
            await asyncio.sleep(self.settings.sweep_interval_s)

    def _reap_instances(self, unit: Unit) -> int:
        """Sweeper step: the sweeping instance is alive (its heartbeat is refreshed first, in the
        transaction's own clock); instances silent past their TTL are forgotten."""
        instances.heartbeat(unit, self.ctx.instance)
        return instances.reap(unit)

    async def _heartbeat(self) -> None:
        if time.monotonic() - self._last_heartbeat < instances.HEARTBEAT_S:
            return
        me = self.ctx.instance
        await self.store.write(lambda unit: instances.heartbeat(unit, me))
        self._last_heartbeat = time.monotonic()
