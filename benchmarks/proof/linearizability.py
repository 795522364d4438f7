"""A linearizability checker: Wing & Gong's search with Lowe's memoisation, one key at a time.

A history is a list of `Op`s recorded by clients: when the call was sent (`invoke`), when its
answer arrived (`complete`), and the answer. An op whose answer never came (timeout, dropped
connection, a server killed mid-call) is *indeterminate* (`Op.type == "info"`, as in
Jepsen/Knossos): it may or may not have taken effect, at any time after it was sent, so its
completion is +inf and the model offers "no effect" among its outcomes.

The history is linearizable when there is a total order of the ops that (1) respects real time —
an op that completed before another was invoked comes first — and (2) is a legal run of the
sequential `Model`. Models are nondeterministic: `step` returns every state the op could lead to
given its recorded answer (an empty list means the answer is impossible in that state).

Search (Lowe, "Testing for linearizability", 2017): walk the invoke/complete entries in time
order; at an invoke try to linearize that op now, at a complete backtrack. A cache of
(set of linearized ops, model state) pairs prunes configurations already explored, which is what
makes the search practical. P-compositionality: linearizability is local, so the history is split
by key (one lease path, one task, one thread) and each part checked alone.

Pure: no I/O, no Huddle imports; the Huddle models live in `models.py`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

INF = math.inf


class SearchBudgetExceeded(RuntimeError):
    """The search ran out of steps: the key's history is undecided (neither proved nor refuted)."""


@dataclass(frozen=True)
class Op:
    """One recorded call: `f` on `key` by `process`, with its arguments and answer."""

    index: int
    process: str
    key: str
    f: str
    args: dict[str, Any]
    invoke: float
    complete: float  # INF for an indeterminate op
    type: str  # "ok" (answered), "fail" (a definite error: nothing happened), "info" (indeterminate)
    result: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "process": self.process,
            "key": self.key,
            "f": self.f,
            "args": self.args,
            "invoke": self.invoke,
            "complete": None if self.complete == INF else self.complete,
            "type": self.type,
            "result": self.result,
        }


class Model(Protocol):
    """A sequential specification of one object (one key)."""

    def init(self, key: str) -> Hashable: ...

    def step(self, state: Hashable, op: Op) -> list[Hashable]:
        """Every state `op` (with its recorded answer) can lead to from `state`; [] if none."""
        ...

    def canonical(self, state: Hashable, earliest: float) -> Hashable:
        """`state` with what no op invoked at or after `earliest` can observe forgotten, so that
        configurations that differ only there meet in the cache (return `state` if nothing is)."""
        ...


@dataclass
class Verdict:
    key: str
    ok: bool
    ops: int
    explored: int
    # On a violation: the deepest partial linearization found, the state it reached and the
    # ops that could not be placed after it.
    linearized: list[int] = field(default_factory=list)
    state: Any = None
    stuck: list[int] = field(default_factory=list)


@dataclass
class _Entry:
    op: Op
    is_call: bool
    match: _Entry | None = None
    prev: _Entry | None = None
    next: _Entry | None = None


def _entries(ops: Sequence[Op]) -> _Entry:
    """A doubly linked list (with a head sentinel) of invoke and complete entries in time order.

    At equal times invokes come first, so two ops that touch the same instant count as concurrent.
    """
    events: list[tuple[float, int, int, _Entry]] = []
    for op in ops:
        call, ret = _Entry(op, True), _Entry(op, False)
        call.match = ret
        events.append((op.invoke, 0, op.index, call))
        events.append((op.complete, 1, op.index, ret))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    head = _Entry(Op(-1, "", "", "", {}, -INF, -INF, "ok"), True)
    last = head
    for *_, entry in events:
        last.next, entry.prev = entry, last
        last = entry
    return head


def _lift(call: _Entry) -> None:
    assert call.prev is not None and call.match is not None
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret = call.match
    assert ret.prev is not None
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Entry) -> None:
    ret = call.match
    assert ret is not None and ret.prev is not None and call.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


def check_key(model: Model, key: str, ops: Sequence[Op], *, max_explored: int = 5_000_000) -> Verdict:
    """Wing–Gong–Lowe search over the ops of one key."""
    local = [Op(i, o.process, o.key, o.f, o.args, o.invoke, o.complete, o.type, o.result) for i, o in enumerate(ops)]
    head = _entries(local)
    state: Hashable = model.init(key)
    linearized = 0  # bit set of placed ops
    cache: set[tuple[int, Hashable]] = set()
    # (call entry, state before it, outcomes it offered, which outcome is in use)
    stack: list[tuple[_Entry, Hashable, list[Hashable], int]] = []
    best: tuple[int, list[int], Hashable, list[int]] = (0, [], state, [])
    explored = 0
    entry = head.next

    def try_outcomes(call: _Entry, before: Hashable, outcomes: list[Hashable], start: int) -> bool:
        nonlocal state, linearized, entry
        bit = 1 << call.op.index
        _lift(call)
        earliest = _earliest_invoke(head)
        for i in range(start, len(outcomes)):
            after = model.canonical(outcomes[i], earliest)
            if (linearized | bit, after) in cache:
                continue
            cache.add((linearized | bit, after))
            stack.append((call, before, outcomes, i))
            state, linearized = after, linearized | bit
            entry = head.next
            return True
        _unlift(call)
        return False

    while head.next is not None:
        explored += 1
        if explored > max_explored:
            raise SearchBudgetExceeded(f"key {key}: search gave up after {max_explored} steps ({len(ops)} ops)")
        assert entry is not None
        if entry.is_call:
            outcomes = model.step(state, entry.op)
            if not try_outcomes(entry, state, outcomes, 0):
                entry = entry.next
            continue
        # A complete entry: its op must already be linearized, so back up.
        if len(stack) > best[0]:
            placed = [s[0].op.index for s in stack]
            best = (len(stack), placed, state, _pending_before(head, entry))
        while True:
            if not stack:
                _, placed, at, stuck = best
                return Verdict(key, False, len(ops), explored, placed, at, stuck)
            call, before, outcomes, i = stack.pop()
            state = before
            linearized &= ~(1 << call.op.index)
            _unlift(call)
            if try_outcomes(call, before, outcomes, i + 1):
                break
            entry = call.next
            break
    return Verdict(key, True, len(ops), explored)


def _earliest_invoke(head: _Entry) -> float:
    """The invoke time of the first op still to place (entries are in time order)."""
    entry = head.next
    while entry is not None and not entry.is_call:
        entry = entry.next
    return entry.op.invoke if entry is not None else INF


def _pending_before(head: _Entry, stop: _Entry) -> list[int]:
    """Ops still to place whose invoke precedes `stop` (the complete that could not be reached)."""
    out = []
    entry = head.next
    while entry is not None and entry is not stop:
        if entry.is_call:
            out.append(entry.op.index)
        entry = entry.next
    out.append(stop.op.index)
    return sorted(set(out))


def partition(ops: Iterable[Op]) -> dict[str, list[Op]]:
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    return dict(by_key)


def check(model: Model, ops: Sequence[Op]) -> list[Verdict]:
    """Checks every key of the history; one verdict per key."""
    return [check_key(model, key, part) for key, part in sorted(partition(ops).items())]


def witness(model: Model, key: str, ops: Sequence[Op], verdict: Verdict) -> list[Op]:
    """A small sub-history that is still not linearizable on its own: the minimal offending ops.

    Starts from the ops the search could not place plus what it had placed, then drops ops one
    at a time (latest first) while the rest still fails. The result is 1-minimal: removing any
    single op left makes it linearizable.
    """
    keep = [ops[i] for i in sorted(set(verdict.linearized) | set(verdict.stuck))]
    if check_key(model, key, keep).ok:  # the frontier alone is fine: shrink the whole history
        keep = list(ops)
    changed = True
    while changed:
        changed = False
        for op in sorted(keep, key=lambda o: -o.invoke):
            trial = [o for o in keep if o is not op]
            if trial and not check_key(model, key, trial).ok:
                keep = trial
                changed = True
                break
    return sorted(keep, key=lambda o: o.invoke)
