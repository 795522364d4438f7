"""Leases on files, directories and globs (SPEC F-30 … F-32), and scoring layer L (F-11).

What a path covers, when two overlap and which modes coexist are pure rules in domain/locks.py;
this service stores grants, queues, fencing tokens and expiry.

Rules this service adds (documented in docs/coordination.md):
- Every grant gets a fencing token from one per-project counter, so tokens strictly increase for
  every path, across overlapping paths, and across restarts.
- Re-acquiring your own lock on the same path in the same mode renews it (same token, new
  expiry). A different mode is a new grant with a new token: a downgrade (exclusive → shared or
  intent, shared → intent) always succeeds; an upgrade must be compatible with the other holders.
  A shared → exclusive upgrade is checked against holders only, not the queue — queued requests
  are waiting for your lock anyway, and queueing behind them would deadlock.
- `wait_s` queues a request; queued requests are granted first come, first served, whenever a
  lock is released, downgraded or expires, or a queued request ahead gives up.
- Expired leases are removed by the sweeper (and before every acquire) and their holder gets a
  `lock.expired` event. Deregistering releases an agent's locks at once; going offline does not —
  its leases end by their own TTL.
- A directory lease is refused while a symlink below the directory leads out of it
  (`src/` holding `src/link → ../lib`). Covering the link's target instead was considered and
  rejected: a later request for `lib/x.py` would then have to learn which held directories reach
  `lib/` through some link — a walk of every held directory on every request instead of one index
  lookup — and a link made or moved later would silently change what an old lease covers. Refusing
  keeps "one name per file" (service/repo_aliases.py): every lease names files by their real names,
  as globs already must. Links that stay inside the directory, and links that loop, are fine.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Coroutine, Iterable
from typing import Any

from huddle.bus.memory import Subscription
from huddle.domain import validate
from huddle.domain.events import Event, Kind, iso
from huddle.domain.locks import (
    EXCLUSIVE,
    INTENT,
    MODES,
    Claim,
    LockPattern,
    PatternError,
    blockers,
    compile_pattern,
    is_glob,
    mode_rank,
    overlaps,
)
from huddle.domain.scoring import Evidence, Layer
from huddle.errors import InvalidInput, NotFound
from huddle.service import repo_aliases
from huddle.service.agents import touch
from huddle.service.context import ServiceContext, WorkRequest, placeholders
from huddle.service.instances import drop_waiters_of_gone_instances
from huddle.service.lock_store import (
    candidate_clause,
    claim_of,
    deny,
    describe_holder,
    emit_released,
    expire_due,
    file_leases_that_may_be_directories,
    grant,
    is_upgrade_in_place,
    lease_as_directory,
    lock_dict,
    overlapping,
    pattern_of,
    positions,
    promote_waiters,
)
from huddle.storage.base import Row, Unit

MIN_TTL_S = 1.0
MAX_TTL_S = 24 * 3600.0
MAX_WAIT_S = 300.0
# Whole numbers, as the tool schemas state them.
TTL_RANGE = (int(MIN_TTL_S), int(MAX_TTL_S))
WAIT_RANGE = (0, int(MAX_WAIT_S))
MAX_LOCKS_PER_AGENT = 1000
LIST_LIMIT = 1000
# A queued request whose caller vanished without cleaning up is dropped this long after its deadline.
GHOST_WAITER_GRACE_S = 5.0
# How long whether a lock path is a directory on disk is remembered.
DISK_CACHE_S = 5.0
DISK_CACHE_SIZE = 10_000


class LockService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self._cleanups: set[asyncio.Task[Any]] = set()
        self._disk_cache: dict[str, tuple[str, float]] = {}

    # -- input ------------------------------------------------------------------------------

    def target(self, raw: str, field: str = "path") -> LockPattern:
        """Normalises and compiles a lock path. An existing directory named without its trailing
        slash is the directory; an existing file whose name has glob characters is that file."""
        norm = self.ctx.path(raw, field)
        literal = False
        if is_glob(norm):
            literal = self._on_disk(norm.rstrip("/")) != "missing"
        elif not norm.endswith("/") and self._on_disk(norm) == "dir":
            norm += "/"
        try:
            return compile_pattern(norm, literal)
        except PatternError as exc:
            raise InvalidInput(
                f"{field} {raw!r}: {exc}; see the glob rules in docs/coordination.md", field=field
            ) from None

    def _on_disk(self, relative: str) -> str:
        """'dir', 'file' or 'missing', remembered for a few seconds.

        A stat is a blocking call that hands the GIL to the database thread and waits to get it
        back; under load that wait dominated the event loop, and what a path is rarely changes.
        """
        now = time.monotonic()
        cached = self._disk_cache.get(relative)
        if cached is not None and now - cached[1] < DISK_CACHE_S:
            return cached[0]
        full = os.path.join(self.ctx.repo_root, relative)
        kind = "dir" if os.path.isdir(full) else "file" if os.path.exists(full) else "missing"
        if len(self._disk_cache) >= DISK_CACHE_SIZE:
            self._disk_cache.clear()
        self._disk_cache[relative] = (kind, now)
        return kind

    async def _refuse_links_leaving(self, pattern: LockPattern, raw: str) -> None:
        """A directory lease must not reach files under other names through a symlink (see the rules above)."""
        # A walk of the directory, remembered for a few seconds by RepoAliases: off the event loop
        # when it has to happen, inline when it is remembered (a thread hop costs more than the lookup).
        aliases = self.ctx.aliases
        if aliases.walked(pattern.path):
            leaving = aliases.links_leaving(pattern.path)
        else:
            leaving = await asyncio.to_thread(aliases.links_leaving, pattern.path)
        if leaving is None:
            raise InvalidInput(
                f"path {raw!r}: the directory {pattern.path} holds more than {repo_aliases.MAX_LINK_SCAN} entries "
                "to check for symlinks that lead out of it; lease a deeper directory (e.g. src/auth/) or the files "
                "themselves",
                field="path",
            )
        if leaving:
            link, target = leaving[0]
            where = "the repository root" if target == "." else repr(target)
            more = f" (and {len(leaving) - 1} more such links)" if len(leaving) > 1 else ""
            raise InvalidInput(
                f"path {raw!r}: the symlink {link!r} below {pattern.path} leads to {where}, outside the directory"
                f"{more}, so the lease would cover those files under another name while a lease on their real "
                "name would not meet it; lease the directories or files beside the link by their real names "
                "(and the link's target by its own), or remove the link",
                field="path",
            )

    def _renamed_to_directories(self, unit: Unit, pattern: LockPattern) -> None:
        """Leases taken on a name while it was a file, that is a directory now, become directory
        leases before `pattern` is checked against them — else the directory would escape them."""
        for row in file_leases_that_may_be_directories(unit, pattern):
            # A fresh stat, not the cached answer: the name changed kind, the cache may not know yet.
            if os.path.isdir(os.path.join(self.ctx.repo_root, row["path"])):
                lease_as_directory(unit, row)

    def _ttl(self, ttl_s: float | None) -> float:
        default = min(self.ctx.settings.lock_ttl_s, MAX_TTL_S)
        return validate.within(ttl_s, "ttl_s", TTL_RANGE, default=default)

    # -- writes -----------------------------------------------------------------------------

    async def acquire(
        self, agent_id: str, path: str, mode: str = EXCLUSIVE, ttl_s: float | None = None, wait_s: float | None = None
    ) -> dict[str, Any]:
        """Grants a lease on `path`, or says who holds it; with `wait_s`, queues and waits for it.

        Returns `{granted: true, fencing_token, expires_at, warnings?}` or `{granted: false, holders,
        reason}`. Raises InvalidInput for a bad path, mode, ttl_s or wait_s, or when the agent already
        holds MAX_LOCKS_PER_AGENT locks; NotFound for an unregistered agent.
        """
        agent = validate.identifier(agent_id, "agent_id")
        mode = validate.choice(mode, "mode", MODES)
        pattern = self.target(path)
        ttl = self._ttl(ttl_s)
        wait = validate.within(wait_s, "wait_s", WAIT_RANGE, default=0.0)
        if pattern.kind == "dir":
            await self._refuse_links_leaving(pattern, path)
        if wait <= 0 or mode == INTENT:
            return await self.ctx.store.write(lambda unit: self._acquire(unit, agent, pattern, mode, ttl, 0.0))

        def mine(event: Event) -> bool:
            return (
                event.kind == Kind.LOCK_ACQUIRED
                and event.data.get("holder") == agent
                and event.data.get("waiter_id") is not None
            )

        started = time.monotonic()
        # Subscribe before the write, so a grant committed right after it cannot be missed.
        with self.ctx.bus.subscribe(mine) as subscription:
            write = asyncio.ensure_future(
                self.ctx.store.write(lambda unit: self._acquire(unit, agent, pattern, mode, ttl, wait))
            )
            try:
                # Shielded: a caller that goes away mid-write must not leave a queue entry behind
                # that nobody will ever clean up (it would be granted to nobody for a whole TTL).
                first = await asyncio.shield(write)
            except asyncio.CancelledError:
                self._background(self._abandon(write, agent, wait))
                raise
            if "waiter_id" not in first:
                return first
            return await self._wait(subscription, agent, int(first.pop("waiter_id")), wait, started)

    async def _abandon(self, write: asyncio.Future[dict[str, Any]], agent: str, wait: float) -> None:
        """After a cancelled acquire: once its write lands, leave the queue it may have joined."""
        try:
            first = await write
        except Exception:  # the write failed: nothing was queued
            return
        if "waiter_id" in first:
            waiter_id = int(first["waiter_id"])
            await self.ctx.store.write(lambda unit: self._give_up(unit, agent, waiter_id, wait, "cancelled"))

    def _background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def _acquire(
        self, unit: Unit, agent: str, pattern: LockPattern, mode: str, ttl: float, wait: float
    ) -> dict[str, Any]:
        touch(unit, agent)
        expire_due(unit)
        self._renamed_to_directories(unit, pattern)
        rows = overlapping(unit, "locks", pattern)
        own = next((r for r in rows if r["agent_id"] == agent and r["path"] == pattern.path), None)
        if own is not None and own["mode"] == mode:
            return self._renew_row(unit, own, ttl, renewed_by_acquire=True)
        holder_rows = [r for r in rows if r["agent_id"] != agent]
        downgrade = own is not None and mode_rank(mode) < mode_rank(own["mode"])
        waiter_rows = (
            []
            if downgrade or is_upgrade_in_place(own, mode)
            else [r for r in overlapping(unit, "lock_waiters", pattern) if r["agent_id"] != agent]
        )
        if waiter_rows and drop_waiters_of_gone_instances(unit):  # nobody queues behind a dead process
            waiter_rows = [r for r in overlapping(unit, "lock_waiters", pattern) if r["agent_id"] != agent]
        request = Claim(agent, pattern, mode)
        blocking = (
            []
            if downgrade
            else blockers(request, [claim_of(r) for r in holder_rows], [claim_of(r) for r in waiter_rows])
        )
        if not blocking:
            if own is None:
                held = unit.tx.one(
                    "SELECT COUNT(*) AS n FROM locks WHERE project = ? AND agent_id = ?", (unit.project, agent)
                )
                if held is not None and held["n"] >= MAX_LOCKS_PER_AGENT:
                    raise InvalidInput(
                        f"agent {agent} already holds {MAX_LOCKS_PER_AGENT} locks; release some, or lock a "
                        "directory (src/auth/) or a glob instead of every file",
                        field="path",
                    )
            result = grant(unit, agent, pattern, mode, ttl, previous=own, others=holder_rows, actor=agent)
            if downgrade:
                promote_waiters(unit, actor=agent)
            return result
        denied = deny(unit, pattern, blocking, holder_rows, waiter_rows)
        if wait <= 0:
            return denied
        row = unit.tx.one(
            "INSERT INTO lock_waiters (project, agent_id, path, literal, kind, anchor, mode, ttl_s, created_at,"
            " deadline, instance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                unit.project,
                agent,
                pattern.path,
                int(pattern.literal),
                pattern.kind,
                pattern.anchor,
                mode,
                ttl,
                unit.now,
                unit.now + wait,
                self.ctx.instance,
            ),
        )
        assert row is not None
        in_the_way = sorted({r["agent_id"] for r in holder_rows})
        unit.emit(
            Kind.LOCK_QUEUED,
            actor=agent,
            audience=[agent, *in_the_way],
            holder=agent,
            path=pattern.path,
            mode=mode,
            wait_s=wait,
            blocked_by=[h["agent_id"] for h in denied["holders"]],
        )
        return {**denied, "waiter_id": int(row["id"])}

    async def _wait(
        self, subscription: Subscription, agent: str, waiter_id: int, wait: float, started: float
    ) -> dict[str, Any]:
        deadline = started + wait
        keepalive = max(1.0, self.ctx.settings.agent_ttl_s / 3)
        resolved = False
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                event = await subscription.next_event(timeout=min(remaining, keepalive))
                if event is None:
                    if deadline - time.monotonic() > 0:
                        await self.ctx.store.write(lambda unit: touch(unit, agent))  # a long wait is not silence
                    continue
                if event.data.get("waiter_id") == waiter_id:
                    resolved = True
                    return self._granted_from_event(event, time.monotonic() - started)
            result = await self.ctx.store.write(lambda unit: self._give_up(unit, agent, waiter_id, wait, "timeout"))
            resolved = True
            return result
        finally:
            if not resolved:  # the caller went away: leave the queue so nobody waits behind a ghost
                self._background(
                    self.ctx.store.write(lambda unit: self._give_up(unit, agent, waiter_id, wait, "cancelled"))
                )

    @staticmethod
    def _granted_from_event(event: Event, waited: float) -> dict[str, Any]:
        data = event.data
        out: dict[str, Any] = {
            "granted": True,
            "path": data["path"],
            "mode": data["mode"],
            "fencing_token": data["fencing_token"],
            "expires_at": data["expires_at"],
            "queued": True,
            "waited_s": round(waited, 3),
        }
        if data.get("previous_mode"):
            out["previous_mode"] = data["previous_mode"]
        if data.get("warnings"):
            out["warnings"] = data["warnings"]
        return out

    def _give_up(self, unit: Unit, agent: str, waiter_id: int, wait: float, reason: str) -> dict[str, Any]:
        row = unit.tx.one("SELECT * FROM lock_waiters WHERE id = ?", (waiter_id,))
        if row is None:  # granted meanwhile (or dropped by a restart): the lock row says which
            lock = unit.tx.one("SELECT * FROM locks WHERE waiter_id = ? AND agent_id = ?", (waiter_id, agent))
            if lock is not None and reason == "cancelled":
                # Granted just as its caller went away: nobody knows they hold it, so give it back.
                unit.tx.execute("DELETE FROM locks WHERE id = ?", (lock["id"],))
                emit_released(unit, lock, actor=agent, reason="requester went away")
                promote_waiters(unit, actor=agent)
                return {"granted": False, "path": lock["path"], "holders": [], "reason": "cancelled"}
            if lock is not None:
                return {
                    "granted": True,
                    "path": lock["path"],
                    "mode": lock["mode"],
                    "fencing_token": lock["token"],
                    "expires_at": iso(lock["expires_at"]),
                    "queued": True,
                    "waited_s": wait,
                }
            return {
                "granted": False,
                "path": None,
                "holders": [],
                "reason": "your queued request ended before it was granted (the server restarted); ask again",
            }
        unit.tx.execute("DELETE FROM lock_waiters WHERE id = ?", (waiter_id,))
        unit.emit(
            Kind.LOCK_WAIT_ENDED,
            actor=agent,
            audience=[agent],
            holder=agent,
            path=row["path"],
            mode=row["mode"],
            reason=reason,
        )
        promote_waiters(unit, actor=agent)  # requests queued behind this one may go now
        pattern = pattern_of(row)
        holder_rows = [r for r in overlapping(unit, "locks", pattern) if r["agent_id"] != agent]
        waiter_rows = [
            r for r in overlapping(unit, "lock_waiters", pattern) if r["agent_id"] != agent and r["id"] < waiter_id
        ]
        blocking = blockers(
            Claim(agent, pattern, row["mode"]), [claim_of(r) for r in holder_rows], [claim_of(r) for r in waiter_rows]
        )
        return deny(unit, pattern, blocking, holder_rows, waiter_rows, waited=wait)

    def _renew_row(self, unit: Unit, row: Row, ttl: float, *, renewed_by_acquire: bool = False) -> dict[str, Any]:
        expires = unit.now + ttl
        unit.tx.execute(
            "UPDATE locks SET expires_at = ?, ttl_s = ?, renewed_at = ? WHERE id = ?",
            (expires, ttl, unit.now, row["id"]),
        )
        unit.emit(
            Kind.LOCK_RENEWED,
            actor=row["agent_id"],
            audience=[row["agent_id"]],
            holder=row["agent_id"],
            path=row["path"],
            mode=row["mode"],
            fencing_token=row["token"],
            expires_at=iso(expires),
        )
        key = "granted" if renewed_by_acquire else "renewed"
        return {
            key: True,
            "path": row["path"],
            "kind": row["kind"],
            "mode": row["mode"],
            "fencing_token": row["token"],
            "expires_at": iso(expires),
            "ttl_s": ttl,
            "renewed": True,
        }

    def _own_row(self, unit: Unit, agent: str, pattern: LockPattern) -> Row | None:
        """The agent's lock on this path, also when the path was named with or without its trailing slash
        (a name leased as a file that became a directory is held as the directory since)."""
        bare = pattern.path.rstrip("/")
        names = [bare, bare + "/"] if pattern.kind != "glob" else [pattern.path]
        return unit.tx.one(
            f"SELECT * FROM locks WHERE project = ? AND agent_id = ? AND path IN ({placeholders(names)})"
            " AND expires_at > ?",
            (unit.project, agent, *names, unit.now),
        )

    async def release(self, agent_id: str, path: str) -> dict[str, Any]:
        """Releases the caller's lock on `path` and grants queued requests that can go now.

        Returns `{released: false, reason}` when the caller holds no lock there (e.g. it expired).
        """
        agent = validate.identifier(agent_id, "agent_id")
        pattern = self.target(path)

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, agent)
            expire_due(unit)
            row = self._own_row(unit, agent, pattern)
            if row is None:
                return {
                    "released": False,
                    "path": pattern.path,
                    "reason": f"you hold no lock on {pattern.path}; it may have expired (look for lock.expired"
                    " in get_updates) — list_locks with your agent_id shows what you hold",
                }
            unit.tx.execute("DELETE FROM locks WHERE id = ?", (row["id"],))
            emit_released(unit, row, actor=agent, reason="released")
            promote_waiters(unit, actor=agent)
            return {"released": True, "path": row["path"], "mode": row["mode"], "fencing_token": row["token"]}

        return await self.ctx.store.write(txn)

    async def renew(self, agent_id: str, path: str, ttl_s: float | None = None) -> dict[str, Any]:
        """Extends the caller's lease on `path` (same fencing token). Without ttl_s the lock's own TTL is reused.

        Raises NotFound when the caller holds no live lock there (acquire it again: new token).
        """
        agent = validate.identifier(agent_id, "agent_id")
        pattern = self.target(path)
        ttl = None if ttl_s is None else self._ttl(ttl_s)

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, agent)
            expire_due(unit)
            row = self._own_row(unit, agent, pattern)
            if row is None:
                raise NotFound(
                    f"you hold no lock on {pattern.path} (it may have expired — see lock.expired in "
                    "get_updates); call acquire_lock again, which issues a new fencing token",
                    field="path",
                )
            return self._renew_row(unit, row, ttl if ttl is not None else float(row["ttl_s"]))

        return await self.ctx.store.write(txn)

    # -- reads ------------------------------------------------------------------------------

    async def list_locks(self, agent_id: str | None = None, path: str | None = None) -> dict[str, Any]:
        """Live locks and queued requests, optionally one agent's and/or those overlapping `path`."""
        agent = validate.identifier(agent_id, "agent_id") if agent_id else None
        pattern = self.target(path) if path else None

        def read(unit: Unit) -> dict[str, Any]:
            if pattern is not None:
                locks = overlapping(unit, "locks", pattern, live_after=unit.now)
                waiting = overlapping(unit, "lock_waiters", pattern)
            else:
                locks = unit.tx.all(
                    "SELECT * FROM locks WHERE project = ? AND expires_at > ? ORDER BY id LIMIT ?",
                    (unit.project, unit.now, LIST_LIMIT * 10),
                )
                waiting = unit.tx.all(
                    "SELECT * FROM lock_waiters WHERE project = ? ORDER BY id LIMIT ?", (unit.project, LIST_LIMIT)
                )
            if agent is not None:
                locks = [r for r in locks if r["agent_id"] == agent]
                waiting = [r for r in waiting if r["agent_id"] == agent]
            return {
                "locks": [lock_dict(r, unit.now) for r in locks[:LIST_LIMIT]],
                "count": len(locks),
                "waiting": positions(waiting, unit.now),
            }

        return await self.ctx.store.read(read)

    async def check_lock(self, path: str, fencing_token: int | None = None) -> dict[str, Any]:
        """Who holds or waits for anything overlapping `path` (a file, directory or glob).

        With `fencing_token`, also whether that token is still current for `path` (`fencing`),
        so a resource written through can refuse a holder whose lease ended. Raises InvalidInput
        for a bad path or token.
        """
        pattern = self.target(path)
        token = None if fencing_token is None else _token(fencing_token)

        def read(unit: Unit) -> dict[str, Any]:
            rows = overlapping(unit, "locks", pattern, live_after=unit.now)
            exclusive = [r for r in rows if r["mode"] == EXCLUSIVE]
            blocking = [r for r in rows if r["mode"] != INTENT]
            out: dict[str, Any] = {
                "path": pattern.path,
                "kind": pattern.kind,
                "locked": bool(blocking),
                "exclusive_holder": exclusive[0]["agent_id"] if exclusive else None,
                "holders": [lock_dict(r, unit.now) for r in rows],
                "waiting": positions(overlapping(unit, "lock_waiters", pattern), unit.now),
                "can_acquire": {"exclusive": not blocking, "shared": not exclusive, "intent": True},
            }
            if blocking:
                out["reason"] = "; ".join(describe_holder(r, pattern.path) for r in blocking)
            if token is not None:
                out["fencing"] = fencing_verdict(rows, token, pattern.path, unit.now)
            return out

        return await self.ctx.store.read(read)

    # -- extension points -------------------------------------------------------------------

    def sweep(self, unit: Unit) -> int:
        """Sweeper step: expired leases free themselves; queue entries of a stopped process go.

        A queued request waits on its caller's connection, held by one server process; when that
        process stops heartbeating (service/instances.py) nobody will ever answer the caller, so
        its entries are dropped — by whichever instance sweeps, and never a live instance's.
        """
        dropped = unit.tx.execute(
            "DELETE FROM lock_waiters WHERE project = ? AND instance NOT IN"
            " (SELECT instance FROM instances WHERE project = ?)",
            (unit.project, unit.project),
        )
        if dropped:
            promote_waiters(unit, actor=None)
        return dropped + expire_due(unit, ghost_grace_s=GHOST_WAITER_GRACE_S)

    def agent_gone(self, unit: Unit, agent_id: str, reason: str) -> None:
        """Deregistration releases the agent's locks and queued requests now; offline ones keep their TTL."""
        if reason != "deregistered":
            return
        rows = unit.tx.all(
            "SELECT * FROM locks WHERE project = ? AND agent_id = ? ORDER BY id", (unit.project, agent_id)
        )
        for row in rows:
            unit.tx.execute("DELETE FROM locks WHERE id = ?", (row["id"],))
            emit_released(unit, row, actor=agent_id, reason="deregistered")
        unit.tx.execute("DELETE FROM lock_waiters WHERE project = ? AND agent_id = ?", (unit.project, agent_id))
        promote_waiters(unit, actor=agent_id)

    def status_section(self, unit: Unit) -> dict[str, Any]:
        rows = unit.tx.all(
            "SELECT * FROM locks WHERE project = ? AND expires_at > ? ORDER BY id LIMIT 201", (unit.project, unit.now)
        )
        count = unit.tx.one(
            "SELECT COUNT(*) AS n FROM locks WHERE project = ? AND expires_at > ?", (unit.project, unit.now)
        )
        waiting = unit.tx.all("SELECT * FROM lock_waiters WHERE project = ? ORDER BY id LIMIT 200", (unit.project,))
        return {
            "active": int(count["n"]) if count else 0,
            "waiting": len(waiting),
            "list": [lock_dict(r, unit.now) for r in rows[:200]],
            "queue": positions(waiting, unit.now),
        }


def _token(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(
            "fencing_token must be a positive whole number, as acquire_lock returned it", field="fencing_token"
        )
    return int(validate.within(value, "fencing_token", validate.ID_RANGE, default=1))


def fencing_verdict(live: list[Row], token: int, path: str, now: float) -> dict[str, Any]:
    """Is `token` the token of a live lease overlapping `path`? What a fenced resource asks before a write.

    `valid_for_s` is how much longer the lease lives at the server's `now`: a resource that
    applies the write within that time (measured from before it asked) applies it under the lease.
    """
    newest = max((int(r["token"]) for r in live if r["mode"] != INTENT), default=None)
    match = next((r for r in live if int(r["token"]) == token), None)
    if match is None:
        return {
            "token": token,
            "current": False,
            "newest_token": newest,
            "reason": f"fencing token {token} is not held on {path}: its lease expired or was released, or it was"
            " issued for another path"
            + (f"; the newest live token here is {newest}" if newest is not None else "")
            + ". Refuse the write; its holder must acquire_lock again",
        }
    return {
        "token": token,
        "current": True,
        "holder": match["agent_id"],
        "mode": match["mode"],
        "lock_path": match["path"],
        "newest_token": newest,
        "valid_for_s": round(float(match["expires_at"]) - now, 3),
    }


class LockSignal:
    """Scoring layer L: a file I target is locked exclusively by another agent (score 100)."""

    def __call__(self, unit: Unit, request: WorkRequest) -> Iterable[tuple[str, Evidence]]:
        if not request.target_files:
            return
        # Compiling target patterns is the expensive part: skip it when no one else holds an
        # exclusive lock at all, which is the common case.
        anyone = unit.tx.one(
            "SELECT 1 FROM locks WHERE project = ? AND mode = ? AND expires_at > ? AND agent_id != ? LIMIT 1",
            (unit.project, EXCLUSIVE, unit.now, request.agent_id),
        )
        if anyone is None:
            return
        targets = [compile_pattern(p, literal=True) for p in request.target_files]
        clause, params = candidate_clause(targets)
        rows = unit.tx.all(
            f"SELECT * FROM locks WHERE project = ? AND mode = ? AND agent_id != ? AND expires_at > ? AND {clause}",
            (unit.project, EXCLUSIVE, request.agent_id, unit.now, *params),
        )
        by_agent: dict[str, tuple[set[str], list[Row]]] = {}
        for row in rows:
            hit = {t.path for t in targets if overlaps(pattern_of(row), t)}
            if hit:
                files, locks = by_agent.setdefault(row["agent_id"], (set(), []))
                files.update(hit)
                locks.append(row)
        for agent_id, (files, locks) in by_agent.items():
            reasons = "; ".join(
                describe_holder(r, f)
                for r in locks
                for f in sorted(files)
                if overlaps(pattern_of(r), compile_pattern(f, literal=True))
            )
            yield (
                agent_id,
                Evidence(
                    Layer.LOCK,
                    Layer.SCORES[Layer.LOCK],
                    tuple(sorted(files)),
                    reasons,
                    extra={
                        "locks": [
                            {
                                "path": r["path"],
                                "mode": r["mode"],
                                "fencing_token": r["token"],
                                "expires_at": iso(r["expires_at"]),
                            }
                            for r in locks
                        ]
                    },
                ),
            )
