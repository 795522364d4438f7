"""The task board against a reference model (Hypothesis stateful testing, manual clock).

Random sequences of add (single and batched, with dependencies — cycles must be refused),
claim (a named task or the best available one), update, reset, and agents falling silent run on
the real service and on a model of the documented rules (SPEC F-50 … F-53). After every step
every task's status and claimer, and the available list in claim order, must agree. Invariant:
a task has at most one claimer, and only its claimer ever moved it on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from huddle.errors import Conflict, Forbidden, InvalidInput
from model_helpers import MODEL_SETTINGS, ServiceMachine, run_on_postgresql

AGENTS = ("a", "b", "c")
IDS = tuple(f"t{i}" for i in range(8))
AGENT_TTL_S = 300.0


@dataclass
class Task:
    task_id: str
    deps: tuple[str, ...]
    priority: int
    seq: int
    status: str = "pending"
    claimer: str | None = None


@dataclass
class Board:
    tasks: dict[str, Task] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    online: dict[str, bool] = field(default_factory=dict)

    def available(self) -> list[Task]:
        ready = [
            t
            for t in self.tasks.values()
            if t.status == "pending" and all(self.tasks[d].status == "done" for d in t.deps)
        ]
        return sorted(ready, key=lambda t: (-t.priority, t.seq))

    def seen(self, agent: str, now: float) -> None:
        self.last_seen[agent], self.online[agent] = now, True

    def requeue(self, task: Task) -> None:
        task.status, task.claimer = "pending", None


def has_cycle(edges: dict[str, tuple[str, ...]]) -> bool:
    state: dict[str, int] = {}

    def visit(node: str) -> bool:
        if state.get(node) == 1:
            return True
        if state.get(node) == 2 or node not in edges:
            return False
        state[node] = 1
        if any(visit(d) for d in edges[node]):
            return True
        state[node] = 2
        return False

    return any(visit(n) for n in edges)


class TaskBoardMachine(ServiceMachine):
    overrides: ClassVar[dict[str, Any]] = {"agent_ttl_s": AGENT_TTL_S}

    def __init__(self) -> None:
        super().__init__()
        self.board = Board()

    @initialize()
    def register(self) -> None:
        for agent in AGENTS:
            self.run(self.coord.agents.register(agent, agent_id=agent))
            self.board.seen(agent, self.clock.now)

    @rule(
        task_id=st.sampled_from(IDS),
        deps=st.lists(st.sampled_from(IDS), max_size=3, unique=True),
        priority=st.integers(0, 2),
    )
    def add(self, task_id: str, deps: list[str], priority: int) -> None:
        board = self.board
        existing = board.tasks.get(task_id)
        try:
            got = self.run(self.coord.tasks.add(task_id, f"do {task_id}", deps, priority))
        except InvalidInput as exc:
            assert task_id in deps or any(d not in board.tasks for d in deps), exc
            return
        except Conflict:
            assert existing is not None and (existing.deps, existing.priority) != (tuple(sorted(deps)), priority)
            return
        assert task_id not in deps and all(d in board.tasks for d in deps)
        if existing is not None:
            assert not got["created"] and (existing.deps, existing.priority) == (tuple(sorted(deps)), priority)
            return
        assert got["created"]
        board.tasks[task_id] = Task(task_id, tuple(sorted(deps)), priority, len(board.tasks))

    @rule(
        ids=st.lists(st.sampled_from(IDS), min_size=2, max_size=3, unique=True),
        edges=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), max_size=4),
    )
    def add_batch(self, ids: list[str], edges: list[tuple[int, int]]) -> None:
        """New tasks depending on each other in any order; a cycle refuses the whole batch."""
        board = self.board
        if any(i in board.tasks for i in ids):
            return
        deps: dict[str, set[str]] = {i: set() for i in ids}
        for a, b in edges:
            if a < len(ids) and b < len(ids) and a != b:
                deps[ids[a]].add(ids[b])
        graph = {i: tuple(sorted(d)) for i, d in deps.items()}
        batch = [{"task_id": i, "description": f"do {i}", "depends_on": list(graph[i])} for i in ids]
        try:
            self.run(self.coord.tasks.add_many(batch))
        except InvalidInput as exc:
            assert has_cycle(graph) and "cycle" in str(exc), exc
            return
        assert not has_cycle(graph)
        ordered: list[str] = []

        def place(task: str) -> None:  # dependencies first, depth first, in the order given: "oldest" among equals
            if task not in ordered:
                for dep in graph[task]:
                    place(dep)
                ordered.append(task)

        for i in ids:
            place(i)
        for i in ordered:
            board.tasks[i] = Task(i, graph[i], 0, len(board.tasks))

    @rule(agent=st.sampled_from(AGENTS), task_id=st.one_of(st.none(), st.sampled_from(IDS)))
    def claim(self, agent: str, task_id: str | None) -> None:
        board = self.board
        if task_id is not None and task_id not in board.tasks:
            return
        got = self.run(self.coord.tasks.claim(agent, task_id))
        board.seen(agent, self.clock.now)
        available = board.available()
        if task_id is None:
            if not available:
                assert not got["claimed"], got
                return
            want = available[0]
        else:
            want = board.tasks[task_id]
            if want.status in ("claimed", "in_progress") and want.claimer == agent:
                assert got["claimed"] and got.get("already_yours"), got
                return
            if want not in available:
                assert not got["claimed"], got
                return
        assert got["claimed"] and got["task"]["task_id"] == want.task_id, (got, want)
        want.status, want.claimer = "claimed", agent

    @rule(
        agent=st.sampled_from(AGENTS),
        task_id=st.sampled_from(IDS),
        status=st.sampled_from(("in_progress", "done", "failed")),
    )
    def update(self, agent: str, task_id: str, status: str) -> None:
        task = self.board.tasks.get(task_id)
        if task is None:
            return
        try:
            self.run(self.coord.tasks.update(task_id, agent, status))
        except Forbidden:
            assert task.status in ("claimed", "in_progress") and task.claimer != agent
            return
        except Conflict:
            assert task.status not in ("claimed", "in_progress")
            return
        assert task.status in ("claimed", "in_progress") and task.claimer == agent
        task.status = status
        self.board.seen(agent, self.clock.now)

    @rule(task_id=st.sampled_from(IDS), agent=st.one_of(st.none(), st.sampled_from(AGENTS)))
    def reset(self, task_id: str, agent: str | None) -> None:
        board = self.board
        task = board.tasks.get(task_id)
        if task is None:
            return
        try:
            got = self.run(self.coord.tasks.reset(task_id, agent))
        except Conflict:
            claimer_online = (
                task.claimer is not None
                and board.online[task.claimer]
                and board.last_seen[task.claimer] >= self.clock.now - AGENT_TTL_S
            )
            busy = task.status in ("claimed", "in_progress") and task.claimer != agent and claimer_online
            assert task.status == "done" or busy
            return
        if agent is not None:
            board.seen(agent, self.clock.now)
        if task.status == "pending":
            assert not got["reset"]
            return
        assert got["reset"] and task.status != "done"
        board.requeue(task)

    @rule(seconds=st.sampled_from([60.0, 200.0, 400.0]))
    def agents_fall_silent(self, seconds: float) -> None:
        """Time passes and the sweeper runs: silent agents go offline and their tasks go back."""
        self.clock.advance(seconds)
        self.run(self.coord.sweep())
        board = self.board
        for agent in AGENTS:
            if board.online[agent] and board.last_seen[agent] < self.clock.now - AGENT_TTL_S:
                board.online[agent] = False
                for task in board.tasks.values():
                    if task.claimer == agent and task.status in ("claimed", "in_progress"):
                        board.requeue(task)

    @invariant()
    def same_board(self) -> None:
        if not hasattr(self, "board"):
            return
        listed = self.run(self.coord.tasks.list())["tasks"]
        real = {t["task_id"]: (t["status"], t.get("claimed_by"), tuple(t["depends_on"])) for t in listed}
        want = {
            t.task_id: (t.status, t.claimer if t.status != "pending" else None, t.deps)
            for t in self.board.tasks.values()
        }
        assert real == want
        available = [t["task_id"] for t in self.run(self.coord.tasks.available())["tasks"]]
        assert available == [t.task_id for t in self.board.available()]

    @invariant()
    def a_claimed_task_has_exactly_one_claimer(self) -> None:
        if not hasattr(self, "board"):
            return
        for task in self.run(self.coord.tasks.list())["tasks"]:
            if task["status"] in ("claimed", "in_progress"):
                assert task.get("claimed_by") in AGENTS


TaskBoardMachine.TestCase.settings = MODEL_SETTINGS
test_the_task_board_behaves_like_the_reference_model = TaskBoardMachine.TestCase


def test_the_task_board_behaves_like_the_reference_model_on_postgresql() -> None:
    run_on_postgresql(TaskBoardMachine)
