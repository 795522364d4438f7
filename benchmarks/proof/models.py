"""Sequential specifications of Huddle's objects, for the linearizability checker.

- `LeaseModel`: the leases on one path (SPEC F-30 … F-32): modes exclusive / shared / intent,
  a TTL per lease, fencing tokens that strictly increase per path, renewal by re-acquiring in the
  same mode, downgrades that always succeed, and upgrades checked against the other holders.
- `ClaimModel`: a claim register — one task of the board (claim_task exactly once, update_task
  by the claimer only, done/failed final) or one thread (claim_thread exactly once).

Time. A lease's life depends on *when* the server linearized the op, which the client only
bounds: somewhere in [invoke, complete]. The state carries the earliest instant the next op may
take effect (`now`), and each lease carries the interval its expiry must lie in:
[earliest grant instant + ttl, latest grant instant + ttl]. "Still alive at t" is possible when
t < latest expiry, "already expired at t" when t ≥ earliest expiry; an op takes effect at the
earliest instant its answer allows (never later than its complete). Treating the expiry bounds
separately is a relaxation: it never reports a correct history as a violation, and it can only
miss a violation that hinges on less than one call's latency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from linearizability import INF, Op

EXCLUSIVE, SHARED, INTENT = "exclusive", "shared", "intent"
RANK = {INTENT: 0, SHARED: 1, EXCLUSIVE: 2}


def compatible(held: str, requested: str) -> bool:
    return INTENT in (held, requested) or (held == SHARED and requested == SHARED)


@dataclass(frozen=True)
class Lease:
    agent: str
    mode: str
    token: int | None  # None: granted by an indeterminate op, token never seen
    expires_lo: float
    expires_hi: float
    ttl: float


@dataclass(frozen=True)
class LeaseState:
    now: float
    max_token: int
    leases: tuple[Lease, ...]  # sorted by agent, at most one per agent (the server keys on agent+path)

    def own(self, agent: str) -> Lease | None:
        return next((lease for lease in self.leases if lease.agent == agent), None)

    def others(self, agent: str) -> tuple[Lease, ...]:
        return tuple(lease for lease in self.leases if lease.agent != agent)

    def without(self, agent: str) -> tuple[Lease, ...]:
        return self.others(agent)

    def put(self, lease: Lease) -> tuple[Lease, ...]:
        return tuple(sorted((*self.others(lease.agent), lease), key=lambda x: x.agent))


class _Window:
    """The instant an op takes effect: at least `t`, at most `hi`, below every `alive_before`."""

    def __init__(self, lo: float, hi: float):
        self.t = lo
        self.hi = hi
        self.alive_before = INF

    def expired(self, lease: Lease) -> None:
        self.t = max(self.t, lease.expires_lo)

    def alive(self, lease: Lease) -> None:
        self.alive_before = min(self.alive_before, lease.expires_hi)

    def feasible(self) -> bool:
        return self.t <= self.hi and self.t < self.alive_before


class LeaseModel:
    """The leases of one path. Op args: agent, mode, ttl. Answers as the tools give them."""

    def init(self, key: str) -> LeaseState:
        return LeaseState(now=-INF, max_token=0, leases=())

    def canonical(self, state: Any, earliest: float) -> Any:
        """Every op left takes effect at or after `earliest`: a `now` before it constrains nothing,
        and a lease surely over by then behaves as if gone (refusals, releases and renewals alike)."""
        assert isinstance(state, LeaseState)
        leases = tuple(x for x in state.leases if x.expires_hi > earliest)
        now = state.now if state.now > earliest else -INF
        return LeaseState(now, state.max_token, leases)

    def step(self, state: Any, op: Op) -> list[Any]:
        assert isinstance(state, LeaseState)
        if op.type == "fail":  # refused before it touched anything (bad input): no effect
            return [state]
        lo = max(state.now, op.invoke)
        if lo > op.complete:
            return []
        handler = {"acquire": self._acquire, "release": self._release, "renew": self._renew}[op.f]
        return handler(state, op, lo)

    # Each handler lists the ways the op could have gone and keeps those its answer allows.

    def _own_options(self, state: LeaseState, agent: str, window: _Window) -> list[tuple[str, _Window]]:
        """'alive' / 'gone' readings of the agent's own lease, each with the window it needs."""
        own = state.own(agent)
        if own is None:
            return [("gone", window)]
        out = []
        alive = _copy(window)
        alive.alive(own)
        if alive.feasible():
            out.append(("alive", alive))
        gone = _copy(window)
        gone.expired(own)
        if gone.feasible():
            out.append(("gone", gone))
        return out

    def _acquire(self, state: LeaseState, op: Op, lo: float) -> list[Any]:
        agent, mode, ttl = op.args["agent"], op.args["mode"], float(op.args["ttl"])
        res, info = op.result, op.type == "info"
        out: list[Any] = [state] if info else []
        for own_reading, window in self._own_options(state, agent, _Window(lo, op.complete)):
            own = state.own(agent) if own_reading == "alive" else None
            if own is not None and own.mode == mode:  # same mode again: a renewal, same token
                if info or (res.get("granted") and _token_matches(own, res)):
                    out.append(LeaseState(window.t, state.max_token, state.put(_renewed(own, op, window.t, ttl))))
                continue
            downgrade = own is not None and RANK[mode] < RANK[own.mode]
            rivals = [x for x in state.others(agent) if not compatible(x.mode, mode)]
            if info or res.get("granted"):
                token = None if info else res.get("fencing_token")
                if token is not None and token <= state.max_token:
                    continue  # fencing tokens only ever increase
                grant = _copy(window)
                if not downgrade:
                    for rival in rivals:
                        grant.expired(rival)
                if not grant.feasible():
                    continue
                kept = tuple(x for x in state.leases if x.agent != agent and (downgrade or x not in rivals))
                lease = Lease(agent, mode, token, grant.t + ttl, op.complete + ttl, ttl)
                after = LeaseState(grant.t, token if token is not None else state.max_token, kept)
                out.append(replace(after, leases=after.put(lease)))
            elif (
                res.get("granted") is False
                and not downgrade
                and window.feasible()
                and any(window.t < x.expires_hi for x in rivals)  # refused: a rival was still alive
            ):
                leases = state.leases if own is not None else state.without(agent)
                out.append(LeaseState(window.t, state.max_token, leases))
        return _unique(out)

    def _release(self, state: LeaseState, op: Op, lo: float) -> list[Any]:
        return self._own_lease_op(state, op, lo, "released", lambda own, t: state.without(own.agent))

    def _renew(self, state: LeaseState, op: Op, lo: float) -> list[Any]:
        def extend(own: Lease, t: float) -> tuple[Lease, ...]:
            ttl = float(op.args["ttl"]) if op.args.get("ttl") is not None else own.ttl
            return state.put(_renewed(own, op, t, ttl))

        return self._own_lease_op(state, op, lo, "renewed", extend)

    def _own_lease_op(
        self, state: LeaseState, op: Op, lo: float, key: str, apply: Callable[[Lease, float], tuple[Lease, ...]]
    ) -> list[Any]:
        """Release or renew: the caller's lease was alive (answer `key: true` with its token) or gone
        (`released: false`, or renew's "you hold no lock")."""
        agent, res, info = op.args["agent"], op.result, op.type == "info"
        out: list[Any] = [state] if info else []
        for own_reading, window in self._own_options(state, agent, _Window(lo, op.complete)):
            own = state.own(agent)
            if own_reading == "alive":
                assert own is not None
                if info or (res.get(key) and _token_matches(own, res)):
                    out.append(LeaseState(window.t, state.max_token, apply(own, window.t)))
            elif info or res.get(key) is False or res.get("held") is False:
                out.append(LeaseState(window.t, state.max_token, state.without(agent)))
        return _unique(out)


def _renewed(own: Lease, op: Op, t: float, ttl: float) -> Lease:
    """The lease after a renewal at instant t (by renew_lock, or acquire in the same mode)."""
    token = own.token if own.token is not None else op.result.get("fencing_token")
    return replace(own, token=token, expires_lo=t + ttl, expires_hi=op.complete + ttl, ttl=ttl)


def _copy(window: _Window) -> _Window:
    twin = _Window(window.t, window.hi)
    twin.alive_before = window.alive_before
    return twin


def _token_matches(lease: Lease, result: dict[str, Any]) -> bool:
    return lease.token is None or result.get("fencing_token") == lease.token


def _unique(states: list[Any]) -> list[Any]:
    return list(dict.fromkeys(states))


# -- claim registers: a task of the board, a thread's work ----------------------------------------

PENDING, CLAIMED, IN_PROGRESS, DONE, FAILED = "pending", "claimed", "in_progress", "done", "failed"
UNFINISHED = (CLAIMED, IN_PROGRESS)


class ClaimModel:
    """One task (claim, update) or one thread (claim). State: (status, claimer)."""

    def init(self, key: str) -> tuple[str, str | None]:
        return (PENDING, None)

    def canonical(self, state: Any, earliest: float) -> Any:
        return state

    def step(self, state: Any, op: Op) -> list[Any]:
        status, claimer = state
        agent, res, info = op.args["agent"], op.result, op.type == "info"
        if op.type == "fail":
            return [state]
        out: list[Any] = [state] if info else []
        if op.f == "claim":
            if status == PENDING:
                if info or (res.get("claimed") and not res.get("already_yours")):
                    out.append((CLAIMED, agent))
            elif status in UNFINISHED and claimer == agent and op.key.startswith("task:"):
                if info or (res.get("claimed") and res.get("already_yours")):
                    out.append(state)  # a retried claim: it is already yours
            elif info or (res.get("claimed") is False and res.get("claimed_by", claimer) == claimer):
                out.append(state)
        elif op.f == "update":
            new = op.args["status"]
            if status in UNFINISHED and claimer == agent:
                if info or res.get("updated"):
                    out.append((new, agent))
            elif info or res.get("refused"):
                out.append(state)
        return _unique(out)


# -- leases never end before their TTL (checked straight on the history) ------------------------


def early_takeovers(ops: list[Op]) -> tuple[int, list[tuple[Op, Op]]]:
    """Grants that took a path over from a lease which cannot yet have run out.

    For every pair of granted acquires on one path, A then B (A's token is lower), by different
    agents in conflicting modes: unless A released or changed its lease in between (or an op of A
    there has an unknown outcome, or renewed concurrently with B), A's lease lived at least until
    `invoke + ttl` of its last grant or renewal — the server stamps the grant inside the call —
    so B's answer cannot have come earlier. Returns (pairs checked, pairs that broke the rule).
    """
    checked, broken = 0, []
    by_key: dict[str, list[Op]] = {}
    for op in ops:
        if op.key.startswith("lease:"):
            by_key.setdefault(op.key, []).append(op)
    for key_ops in by_key.values():
        grants = [o for o in key_ops if o.f == "acquire" and o.type == "ok" and o.result.get("granted")]
        for a in grants:
            token = a.result.get("fencing_token")
            for b in grants:
                if b.process == a.process or compatible(a.args["mode"], b.args["mode"]):
                    continue
                if token is None or b.result.get("fencing_token", 0) <= token:
                    continue
                span = [o for o in key_ops if o.process == a.process and a.complete <= o.invoke <= b.complete]
                renewals = [o for o in span if _renews(o, token)]
                if any(_may_end(o, token) for o in span) or any(o.complete >= b.invoke for o in renewals):
                    continue  # ended, or renewed in an order against b that the history does not fix
                # A renewal sets a new expiry (now + its ttl, shorter or longer): the last one counts.
                lives_until = a.invoke + float(a.args["ttl"])
                ttl = float(a.args["ttl"])
                for o in renewals:
                    ttl = float(o.args["ttl"]) if o.args.get("ttl") is not None else ttl
                    lives_until = o.invoke + ttl
                checked += 1
                if b.complete < lives_until:
                    broken.append((a, b))
    return checked, broken


def _renews(op: Op, token: int) -> bool:
    return op.f in ("renew", "acquire") and op.type == "ok" and op.result.get("fencing_token") == token


def _may_end(op: Op, token: int) -> bool:
    """Could this op of the holder have ended or replaced its lease `token`?"""
    if op.type == "info":
        return True
    if op.f == "release":
        return op.result.get("released") is not False
    if op.f in ("acquire", "renew") and op.type == "ok":
        return op.result.get("fencing_token") not in (None, token) and bool(
            op.result.get("granted") or op.result.get("renewed")
        )
    return False
