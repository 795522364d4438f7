"""The frame of the Hypothesis stateful models: the real service API on a fresh database and a
manual clock, driven synchronously from a RuleBasedStateMachine.

Each machine runs its own event loop (Hypothesis calls rules synchronously) and compares the
system with a small reference model after every step. Example counts stay CI-sized; set
`HUDDLE_PROOF=full` to run many more.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine

from helpers import ManualClock, make_coordinator
from huddle.service.coordinator import Coordinator

T = TypeVar("T")

FULL = os.environ.get("HUDDLE_PROOF") == "full"
# Thousands of small databases: on a RAM disk when there is one, so fsync costs nothing.
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
MODEL_SETTINGS = settings(
    max_examples=400 if FULL else 50,
    stateful_step_count=60 if FULL else 30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class ServiceMachine(RuleBasedStateMachine):
    """A Coordinator on a temporary SQLite file; its sweeper does not run — rules sweep explicitly."""

    overrides: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="huddle-model-", dir=SCRATCH))
        (self.tmp / "repo").mkdir()
        self.clock = ManualClock()
        self.coord: Coordinator = make_coordinator(self.tmp, self.tmp / "repo", clock=self.clock, **self.overrides)
        self.run(self.coord.store.open())

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def teardown(self) -> None:
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.run(asyncio.wait(pending, timeout=5))
        self.run(asyncio.sleep(0.01))  # cleanups the cancelled calls scheduled
        self.run(self.coord.store.close())
        self.loop.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
