"""The frame of the Hypothesis stateful models: the real service API on a fresh database and a
manual clock, driven synchronously from a RuleBasedStateMachine.

Each machine runs its own event loop (Hypothesis calls rules synchronously) and compares the
system with a small reference model after every step. Example counts stay CI-sized; set
`HUDDLE_PROOF=full` to run many more.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from helpers import ManualClock, make_coordinator
from huddle.service.coordinator import Coordinator
from postgres_helpers import migrated_database, require_postgres

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
# On PostgreSQL every step costs several round trips: fewer examples in CI. They check the SQL
# behaves the same on both backends; the model's rules are searched on SQLite above.
POSTGRESQL_SETTINGS = settings(MODEL_SETTINGS, max_examples=400 if FULL else 12)


class ServiceMachine(RuleBasedStateMachine):
    """A Coordinator on a temporary SQLite file (or an empty PostgreSQL database, `backend`); its
    sweeper does not run — rules sweep explicitly."""

    overrides: ClassVar[dict[str, Any]] = {}
    backend: ClassVar[str] = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="huddle-model-", dir=SCRATCH))
        (self.tmp / "repo").mkdir()
        self.clock = ManualClock()
        self.database = contextlib.ExitStack()
        where = {"db_url": self.database.enter_context(migrated_database())} if self.backend == "postgresql" else {}
        self.coord: Coordinator = make_coordinator(
            self.tmp, self.tmp / "repo", clock=self.clock, **self.overrides, **where
        )
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
        self.database.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def run_on_postgresql(machine: type[ServiceMachine]) -> None:
    """Runs `machine` against the reference model with the service on PostgreSQL (a fresh database per example)."""
    require_postgres()
    on_postgresql = type(f"{machine.__name__}OnPostgreSQL", (machine,), {"backend": "postgresql"})
    run_state_machine_as_test(on_postgresql, settings=POSTGRESQL_SETTINGS)
