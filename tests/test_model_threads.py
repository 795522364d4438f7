"""Consultation threads against a reference model (Hypothesis stateful testing, manual clock).

Threads are opened the way agents open them — colliding announces — and then driven by random
posts, proposals, approvals, contests (through max_rounds), closes, cancels, claims, completions
and quiet time past the thread timeout. The model is the documented state machine (SPEC F-20 …
F-24, README "Consultation threads"): open → resolving → resolved, back to open on a contest,
forced past max_rounds, closed by a participant, cancelled by the initiator only, timeout when
quiet; a thread's work is claimed by exactly one agent and completed by it alone. After every
step each thread's status, round, proposer, approvals, respondents and claimer must agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from huddle.errors import Conflict, Forbidden, HuddleError
from model_helpers import MODEL_SETTINGS, ServiceMachine, run_on_postgresql

AGENTS = ("a", "b", "c", "d")
TIMEOUT_S = 100.0
MAX_ROUNDS = 2
ACTIVE = ("open", "resolving")


@dataclass
class Thread:
    thread_id: str
    initiator: str
    respondents: frozenset[str]
    deadline: float
    status: str = "open"
    round: int = 1
    proposer: str | None = None
    approvals: set[str] = field(default_factory=set)
    claimed_by: str | None = None
    completed: bool = False

    @property
    def participants(self) -> frozenset[str]:
        return self.respondents | {self.initiator}


class ThreadMachine(ServiceMachine):
    overrides: ClassVar[dict[str, Any]] = {
        "thread_timeout_s": TIMEOUT_S,
        "max_rounds": MAX_ROUNDS,
        "agent_ttl_s": 10_000_000.0,
    }

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[Thread] = []
        self.files = 0

    @initialize()
    def register(self) -> None:
        for agent in AGENTS:
            self.run(self.coord.agents.register(agent, agent_id=agent))

    def expect(self, error: type[HuddleError] | None, work: Any) -> dict[str, Any] | None:
        """Runs a call that the model says succeeds (error None) or fails with `error`."""
        try:
            got: dict[str, Any] = self.run(work)
        except HuddleError as exc:
            assert error is not None and isinstance(exc, error), f"unexpected {type(exc).__name__}: {exc}"
            return None
        assert error is None, f"expected {error.__name__}, got {got}"
        return got

    def bump(self, thread: Thread) -> None:
        thread.deadline = self.clock.now + TIMEOUT_S

    @rule(
        initiator=st.sampled_from(AGENTS),
        respondents=st.lists(st.sampled_from(AGENTS), min_size=1, max_size=3, unique=True),
    )
    def open_by_colliding_announces(self, initiator: str, respondents: list[str]) -> None:
        """Respondents announce a fresh file, then the initiator does: every later announce on it
        collides (score 100) with every earlier one and opens a thread with those agents."""
        respondents = [r for r in respondents if r != initiator]
        if not respondents:
            return
        self.files += 1
        target = [f"src/f{self.files}.py"]
        earlier: list[str] = []
        for agent in [*respondents, initiator]:
            got = self.run(self.coord.intents.announce(agent, subject=f"edit {target[0]}", target_files=target))
            if not earlier:
                assert got["thread_id"] is None, got
            else:
                assert got["verdict"] == "consult" and got["thread_id"], got
                self.threads.append(Thread(got["thread_id"], agent, frozenset(earlier), self.clock.now + TIMEOUT_S))
            earlier.append(agent)

    def pick(self, data: int) -> Thread:
        return self.threads[data % len(self.threads)]

    @staticmethod
    def who(t: Thread, data: int) -> str:
        """Mostly one of the thread's participants (so the interesting transitions happen), sometimes anyone."""
        if data < 40:
            return sorted(t.participants)[data % len(t.participants)]
        return AGENTS[data % len(AGENTS)]

    @precondition(lambda self: bool(self.threads))
    @rule(n=st.integers(0, 50), who=st.integers(0, 49))
    def post(self, n: int, who: int) -> None:
        t = self.pick(n)
        agent = self.who(t, who)
        ok = t.status in ACTIVE
        self.expect(None if ok else Conflict, self.coord.threads.post(t.thread_id, agent, "context", "note"))
        if ok:
            self.bump(t)

    @precondition(lambda self: bool(self.threads))
    @rule(n=st.integers(0, 50), who=st.integers(0, 49))
    def propose(self, n: int, who: int) -> None:
        t = self.pick(n)
        agent = self.who(t, who)
        error = Conflict if t.status not in ACTIVE else Forbidden if agent not in t.participants else None
        got = self.expect(error, self.coord.threads.propose(t.thread_id, agent, "plan"))
        if got is None:
            return
        t.status, t.proposer, t.approvals = "resolving", agent, set()
        self.bump(t)
        if not t.participants - {agent}:
            t.status = "resolved"
        assert got["status"] == t.status

    def vote_error(self, t: Thread, agent: str) -> type[HuddleError] | None:
        if agent not in t.participants:
            return Forbidden
        if t.status != "resolving":
            return Conflict
        return Forbidden if agent == t.proposer else None

    @precondition(lambda self: bool(self.threads))
    @rule(n=st.integers(0, 50), who=st.integers(0, 49))
    def approve(self, n: int, who: int) -> None:
        t = self.pick(n)
        agent = self.who(t, who)
        got = self.expect(self.vote_error(t, agent), self.coord.threads.approve(t.thread_id, agent))
        if got is None:
            return
        t.approvals.add(agent)
        self.bump(t)
        if t.participants - {t.proposer} <= t.approvals:
            t.status = "resolved"
        assert got["status"] == t.status

    @precondition(lambda self: bool(self.threads))
    @rule(n=st.integers(0, 50), who=st.integers(0, 49))
    def contest(self, n: int, who: int) -> None:
        t = self.pick(n)
        agent = self.who(t, who)
        got = self.expect(self.vote_error(t, agent), self.coord.threads.contest(t.thread_id, agent, "no"))
        if got is None:
            return
        self.bump(t)
        if t.round + 1 > MAX_ROUNDS:
            t.status = "max_rounds"
        else:
            t.status, t.round, t.proposer, t.approvals = "open", t.round + 1, None, set()
        assert got["status"] == t.status

    @precondition(lambda self: bool(self.threads))
    @rule(n=st.integers(0, 50), who=st.integers(0, 49))
    def close(self, n: int, who: int) -> None:
        t = self.pick(n)
        agent = self.who(t, who)
        error = Forbidden if agent not in t.participants else Conflict if t.status in ("closed", "cancelled") else None
        if self.expect(error, self.coord.threads.close(t.thread_id, agent, "settled")) is not None:
            t.status = "closed"

    @precondition(lambda self: bool(self.threads))
    @rule(n=st.integers(0, 50), who=st.integers(0, 49))
    def cancel(self, n: int, who: int) -> None:
        t = self.pick(n)
        agent = self.who(t, who)
        error = Forbidden if agent != t.initiator else Conflict if t.status not in ACTIVE else None
        if self.expect(error, self.coord.threads.cancel(t.thread_id, agent, "dropped")) is not None:
            t.status = "cancelled"

    @precondition(lambda self: bool(self.threads))
    @rule(n=st.integers(0, 50), who=st.integers(0, 49))
    def claim(self, n: int, who: int) -> None:
        t = self.pick(n)
        agent = self.who(t, who)
        error = Conflict if t.status in ("closed", "cancelled", "timeout") else None
        got = self.expect(error, self.coord.threads.claim(t.thread_id, agent))
        if got is None:
            return
        if t.claimed_by is None:
            assert got["claimed"], got
            t.claimed_by = agent
        else:
            assert not got["claimed"] and got["claimed_by"] == t.claimed_by, got

    @precondition(lambda self: bool(self.threads))
    @rule(n=st.integers(0, 50), who=st.integers(0, 49))
    def complete(self, n: int, who: int) -> None:
        t = self.pick(n)
        agent = self.who(t, who)
        if t.status in ("closed", "cancelled", "timeout") or t.completed:
            error: type[HuddleError] | None = Conflict
        else:
            error = Forbidden if t.claimed_by != agent else None
        if self.expect(error, self.coord.threads.complete(t.thread_id, agent, "done")) is not None:
            t.completed = True
            if t.status in ACTIVE:
                t.status = "resolved"

    @rule(seconds=st.sampled_from([10.0, 40.0, 120.0]))
    def quiet_time_passes(self, seconds: float) -> None:
        """The sweeper times out active threads that have been quiet past thread_timeout_s."""
        self.clock.advance(seconds)
        self.run(self.coord.sweep())
        for t in self.threads:
            if t.status in ACTIVE and t.deadline <= self.clock.now:
                t.status = "timeout"

    @invariant()
    def same_threads(self) -> None:
        for t in getattr(self, "threads", []):
            got = self.run(self.coord.threads.get(t.thread_id))
            proposer = got["proposal"]["by"] if got["proposal"] else None
            assert (got["status"], got["round"], got["initiator"]) == (t.status, t.round, t.initiator), (got, t)
            assert proposer == t.proposer, (got, t)
            assert set(got["expected_respondents"]) == t.respondents
            assert got["claimed_by"] == t.claimed_by
            if t.status == "resolving":
                assert set(got["approvals"]) == t.approvals


ThreadMachine.TestCase.settings = MODEL_SETTINGS
test_consultation_threads_behave_like_the_reference_model = ThreadMachine.TestCase


def test_consultation_threads_behave_like_the_reference_model_on_postgresql() -> None:
    run_on_postgresql(ThreadMachine)
