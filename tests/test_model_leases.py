"""Leases against a reference model (Hypothesis stateful testing, manual clock, no sleeps).

Random sequences of acquire (all three modes, with and without queueing), release, renew, clock
moves and sweeps run on the real service and on a model written from the documented rules
(docs/coordination.md); after every step the live leases, their fencing tokens and expiries, and
the queue must be the same. Invariants: tokens strictly increase per path, and a lease is never
gone before its TTL unless its holder released it or changed its mode.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from helpers import ManualClock, make_coordinator
from huddle.bus.memory import Subscription
from huddle.domain.events import Event, Kind, iso
from huddle.errors import NotFound
from huddle.service.coordinator import Coordinator
from model_helpers import MODEL_SETTINGS, ServiceMachine, run_on_postgresql

AGENTS = ("a", "b", "c")
# The last one sorts past every other name under d/ (U+10FFFF): a prefix range must still cover it.
PATHS = ("a.py", "b.py", "d/", "d/c.py", "d/\U0010ffffa.py")
MODES = ("exclusive", "shared", "intent")
RANK = {"intent": 0, "shared": 1, "exclusive": 2}
WAIT_S = 300.0
GHOST_GRACE_S = 5.0
HANG_S = 30  # a bound on a hang, not a speed check: every wait here ends on an event


def overlap(p: str, q: str) -> bool:
    return p == q or (p.endswith("/") and q.startswith(p)) or (q.endswith("/") and p.startswith(q))


def blocks(held: str, requested: str) -> bool:
    return "intent" not in (held, requested) and not (held == requested == "shared")


@dataclass
class Lease:
    agent: str
    path: str
    mode: str
    token: int
    expires: float
    ttl: float
    granted_at: float


@dataclass
class Waiter:
    agent: str
    path: str
    mode: str
    ttl: float
    deadline: float
    task: asyncio.Task[dict[str, Any]]
    granted_token: int | None = None


@dataclass
class Model:
    leases: dict[tuple[str, str], Lease] = field(default_factory=dict)
    waiters: list[Waiter] = field(default_factory=list)
    last_token: int = 0
    tokens_by_path: dict[str, list[int]] = field(default_factory=dict)
    history: list[Lease] = field(default_factory=list)  # every grant, for the TTL invariant
    ended: set[int] = field(default_factory=set)  # tokens released or replaced by their holder

    def snapshot(self) -> tuple[Any, ...]:
        return (
            {k: replace(v) for k, v in self.leases.items()},
            [(w, w.granted_token) for w in self.waiters],
            self.last_token,
            {k: list(v) for k, v in self.tokens_by_path.items()},
            list(self.history),
            set(self.ended),
        )

    def restore(self, saved: tuple[Any, ...]) -> None:
        leases, waiters, self.last_token, self.tokens_by_path, self.history, self.ended = saved
        self.leases = leases
        self.waiters = [w for w, _ in waiters]
        for w, token in waiters:
            w.granted_token = token

    def grant(self, now: float, agent: str, path: str, mode: str, ttl: float) -> Lease:
        old = self.leases.get((agent, path))
        if old is not None:
            self.ended.add(old.token)
        self.last_token += 1
        lease = Lease(agent, path, mode, self.last_token, now + ttl, ttl, now)
        self.leases[(agent, path)] = lease
        self.tokens_by_path.setdefault(path, []).append(lease.token)
        self.history.append(lease)
        return lease

    def blockers(self, agent: str, path: str, mode: str, waiters: list[Waiter]) -> tuple[list[Lease], list[Waiter]]:
        if mode == "intent":
            return [], []
        held = [x for x in self.leases.values() if x.agent != agent and overlap(x.path, path) and blocks(x.mode, mode)]
        queued = [w for w in waiters if w.agent != agent and overlap(w.path, path) and blocks(w.mode, mode)]
        return held, queued

    def upgrade_in_place(self, agent: str, path: str, mode: str) -> bool:
        own = self.leases.get((agent, path))
        return own is not None and own.mode == "shared" and mode == "exclusive"

    def promote(self, now: float) -> None:
        """Queued requests that can go now are granted, first come first served."""
        still: list[Waiter] = []
        for w in list(self.waiters):
            if w.deadline <= now:
                continue
            earlier = [] if self.upgrade_in_place(w.agent, w.path, w.mode) else still
            held, queued = self.blockers(w.agent, w.path, w.mode, earlier)
            if held or queued:
                still.append(w)
                continue
            self.waiters.remove(w)
            w.granted_token = self.grant(now, w.agent, w.path, w.mode, w.ttl).token

    def expire(self, now: float, ghosts: bool = False) -> None:
        due = [k for k, x in self.leases.items() if x.expires <= now]
        for k in due:
            del self.leases[k]
        gone = [w for w in self.waiters if ghosts and w.deadline <= now - GHOST_GRACE_S]
        for w in gone:
            self.waiters.remove(w)
        if due or gone:
            self.promote(now)


def queue_watch(coord: Coordinator, agent: str, path: str, mode: str) -> Subscription:
    """Opened before the call: hears the `lock.queued` its queue entry commits."""

    def mine(event: Event) -> bool:
        data = event.data
        return event.kind == Kind.LOCK_QUEUED and (data["holder"], data["path"], data["mode"]) == (agent, path, mode)

    return coord.bus.subscribe(mine)


async def until_queued(subscription: Subscription, call: asyncio.Task[dict[str, Any]]) -> None:
    """Returns once the call's own queue entry is committed; fails if the call ends first.

    Not by polling the listing for the agent: that listing may show an older entry of the same
    agent which this very call's write is about to grant (its expiry pass promotes the queue), so
    the poll could pass before the write landed and the model would run ahead of the service.
    """
    heard = asyncio.ensure_future(subscription.next_event())
    with anyio.fail_after(HANG_S):
        await asyncio.wait({heard, call}, return_when=asyncio.FIRST_COMPLETED)
    if not heard.done():
        heard.cancel()
        raise AssertionError(f"the request was answered instead of queued: {call.result()}")


class LeaseMachine(ServiceMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.queued: list[Waiter] = []  # every request that joined the queue
        self.finished: list[Waiter] = []  # those whose caller got its grant

    @initialize()
    def register(self) -> None:
        for agent in AGENTS:
            self.run(self.coord.agents.register(agent, agent_id=agent))

    @property
    def now(self) -> float:
        return self.clock.now

    @rule(
        agent=st.sampled_from(AGENTS),
        path=st.sampled_from(PATHS),
        mode=st.sampled_from(MODES),
        ttl=st.sampled_from([10.0, 30.0, 60.0]),
    )
    def acquire(self, agent: str, path: str, mode: str, ttl: float) -> None:
        m = self.model
        m.expire(self.now)
        own = m.leases.get((agent, path))
        got = self.run(self.coord.locks.acquire(agent, path, mode, ttl))
        if own is not None and own.mode == mode:
            own.expires, own.ttl = self.now + ttl, ttl
            assert got["granted"] and got["renewed"] and got["fencing_token"] == own.token, got
            return
        downgrade = own is not None and RANK[mode] < RANK[own.mode]
        waiting = [] if downgrade or m.upgrade_in_place(agent, path, mode) else m.waiters
        held, queued = ([], []) if downgrade else m.blockers(agent, path, mode, waiting)
        if held or queued:
            assert not got["granted"], got
            assert {h["agent_id"] for h in got["holders"]} == {x.agent for x in held}, got
            return
        lease = m.grant(self.now, agent, path, mode, ttl)
        assert got["granted"] and got["fencing_token"] == lease.token, (got, lease)
        if downgrade:
            m.promote(self.now)

    @rule(agent=st.sampled_from(AGENTS), path=st.sampled_from(PATHS), mode=st.sampled_from(("exclusive", "shared")))
    def acquire_and_queue(self, agent: str, path: str, mode: str) -> None:
        """A refused request with wait_s joins the queue; the call waits for its grant."""
        m = self.model
        m.expire(self.now)
        own = m.leases.get((agent, path))
        held, queued = m.blockers(agent, path, mode, m.waiters)
        if own is not None or any(w.agent == agent for w in m.waiters) or not (held or queued):
            # Granted at once, or more than the model's simple queue bookkeeping (one request per
            # agent, none for a path it holds) wants: a plain acquire, which the model follows.
            self.acquire(agent, path, mode, 30.0)
            return
        with queue_watch(self.coord, agent, path, mode) as subscription:
            task = self.loop.create_task(self.coord.locks.acquire(agent, path, mode, 30.0, WAIT_S))
            waiter = Waiter(agent, path, mode, 30.0, self.now + WAIT_S, task)
            m.waiters.append(waiter)
            self.queued.append(waiter)
            self.run(until_queued(subscription, task))

    @rule(agent=st.sampled_from(AGENTS), path=st.sampled_from(PATHS))
    def release(self, agent: str, path: str) -> None:
        m = self.model
        m.expire(self.now)
        got = self.run(self.coord.locks.release(agent, path))
        own = m.leases.pop((agent, path), None)
        if own is None:
            assert not got["released"], got
            return
        m.ended.add(own.token)
        assert got["released"] and got["fencing_token"] == own.token, got
        m.promote(self.now)

    @rule(agent=st.sampled_from(AGENTS), path=st.sampled_from(PATHS), ttl=st.sampled_from([None, 20.0, 45.0]))
    def renew(self, agent: str, path: str, ttl: float | None) -> None:
        m = self.model
        before = m.snapshot()
        m.expire(self.now)  # may hand this agent the path from the queue, just before the renewal
        own = m.leases.get((agent, path))
        if own is None:
            m.restore(before)  # refused: the refusal rolls back the whole call, the expiry included
            try:
                self.run(self.coord.locks.renew(agent, path, ttl))
            except NotFound as exc:
                assert "acquire_lock again" in str(exc)
            else:
                raise AssertionError("renewed a lease the model says is gone")
            return
        got = self.run(self.coord.locks.renew(agent, path, ttl))
        own.ttl = ttl if ttl is not None else own.ttl
        own.expires = self.now + own.ttl
        assert got["renewed"] and got["fencing_token"] == own.token, got

    @rule(seconds=st.sampled_from([0.5, 5.0, 15.0, 40.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def sweep(self) -> None:
        self.run(self.coord.sweep())
        self.model.expire(self.now, ghosts=True)

    @invariant()
    def queued_callers_hear_their_grant(self) -> None:
        """A queued request granted in the database answers its waiting caller with that token."""
        if not hasattr(self, "model"):
            return
        for waiter in [w for w in self.queued if w.granted_token is not None and w not in self.finished]:
            got = self.run(asyncio.wait_for(asyncio.shield(waiter.task), timeout=HANG_S))
            assert got["granted"] and got["queued"] and got["fencing_token"] == waiter.granted_token, (got, waiter)
            self.finished.append(waiter)

    @invariant()
    def same_leases_and_queue(self) -> None:
        if not hasattr(self, "model"):
            return
        listed = self.run(self.coord.locks.list_locks())
        live = sorted(
            (x.agent, x.path, x.mode, x.token, iso(x.expires))
            for x in self.model.leases.values()
            if x.expires > self.now
        )
        real = sorted(
            (r["agent_id"], r["path"], r["mode"], r["fencing_token"], r["expires_at"]) for r in listed["locks"]
        )
        assert real == live
        queue = [(w.agent, w.path, w.mode) for w in self.model.waiters]
        assert [(w["agent_id"], w["path"], w["mode"]) for w in listed["waiting"]] == queue

    @invariant()
    def tokens_strictly_increase_per_path(self) -> None:
        if not hasattr(self, "model"):
            return
        for tokens in self.model.tokens_by_path.values():
            assert tokens == sorted(set(tokens))

    @invariant()
    def no_lease_ends_before_its_ttl(self) -> None:
        """Granted less than a TTL ago (counting renewals), not released nor replaced: still listed."""
        if not hasattr(self, "model"):
            return
        listed = {r["fencing_token"] for r in self.run(self.coord.locks.list_locks())["locks"]}
        for lease in self.model.leases.values():
            if lease.expires > self.now and lease.token not in self.model.ended:
                assert lease.token in listed


LeaseMachine.TestCase.settings = MODEL_SETTINGS
test_leases_behave_like_the_reference_model = LeaseMachine.TestCase


def test_leases_behave_like_the_reference_model_on_postgresql() -> None:
    run_on_postgresql(LeaseMachine)


async def test_a_queued_call_counts_as_queued_only_once_its_own_entry_is_written(
    tmp_path: Path, backend: dict[str, str]
) -> None:
    """The race that made the model flaky under load, played deterministically by holding the writer.

    b waits for a.py; a's lease on it runs out; b then asks for d/ (held by c) with wait_s. That
    call's write first expires a's lease and grants b's earlier request, then queues d/. While the
    write is held, the listing still shows b waiting (its a.py entry) — the old poll took that as
    "queued" and let the model grant a.py before the service had; the queue watch waits for d/.
    """
    clock = ManualClock()
    (tmp_path / "repo").mkdir()
    coord = make_coordinator(tmp_path, tmp_path / "repo", clock=clock, **backend)
    await coord.store.open()
    try:
        for agent in "abc":
            await coord.agents.register(agent, agent_id=agent)
        await coord.locks.acquire("a", "a.py", "exclusive", 10)
        await coord.locks.acquire("c", "d/", "exclusive", 60)
        with queue_watch(coord, "b", "a.py", "exclusive") as subscription:
            first = asyncio.ensure_future(coord.locks.acquire("b", "a.py", "exclusive", 30, WAIT_S))
            await until_queued(subscription, first)
        clock.advance(20)

        gate = threading.Event()
        held = asyncio.ensure_future(coord.store.write(lambda unit: gate.wait(HANG_S)))
        with queue_watch(coord, "b", "d/", "exclusive") as subscription:
            second = asyncio.ensure_future(coord.locks.acquire("b", "d/", "exclusive", 30, WAIT_S))
            queued = asyncio.ensure_future(until_queued(subscription, second))
            listed = await coord.locks.list_locks()
            assert [(w["agent_id"], w["path"]) for w in listed["waiting"]] == [("b", "a.py")]
            assert not queued.done()  # the write that queues d/ cannot have landed: the writer is held
            gate.set()
            await held
            await queued

        listed = await coord.locks.list_locks()
        assert sorted((r["agent_id"], r["path"]) for r in listed["locks"]) == [("b", "a.py"), ("c", "d/")]
        assert [(w["agent_id"], w["path"]) for w in listed["waiting"]] == [("b", "d/")]
        got = await first
        assert got["granted"] and got["queued"] and got["path"] == "a.py", got
        await coord.locks.release("c", "d/")
        got = await second
        assert got["granted"] and got["queued"] and got["path"] == "d/", got
    finally:
        await coord.store.close()
