"""Agents: registration, liveness and derived activity (SPEC F-01 … F-05)."""

from __future__ import annotations

import json
import time
from typing import Any

from huddle.domain import validate
from huddle.domain.events import EVERYONE, Kind, iso
from huddle.domain.ids import intent_ref, thread_ref
from huddle.domain.paths import normalize_module
from huddle.errors import NotFound
from huddle.service.context import ServiceContext, dumps, placeholders
from huddle.service.overseers import OVERSEER_PREFIX, require_dashboard
from huddle.service.signals import related_module_rows
from huddle.storage.base import Row, Unit, starts_with

BRIEFING_LIMIT = 50
PEER_COUNT_RANGE = (1, 10_000)
PEER_WAIT_RANGE = (0, 300)
READ_HEARTBEAT_EVERY_S = 5.0


def require_agent(unit: Unit, agent_id: str, *, field: str = "agent_id") -> Row:
    """The agent's row, or NotFound telling the caller to register."""
    agent_id = validate.identifier(agent_id, field)
    row = unit.tx.one("SELECT * FROM agents WHERE project = ? AND agent_id = ?", (unit.project, agent_id))
    if row is None or row["status"] == "deregistered":
        raise NotFound(
            f"agent {agent_id} is not registered; call register_agent first (with agent_id={agent_id!r})",
            field=field,
        )
    return row


def touch(unit: Unit, agent_id: str, *, field: str = "agent_id") -> None:
    """Any call from an agent is a heartbeat (F-02): refresh last_seen, announce a comeback."""
    # Nearly every call comes from an agent already online: one UPDATE refreshes it, and its row
    # count says it was online (RETURNING the row cost that UPDATE twice over, and hardly a caller
    # reads it: `registration` does). Anyone else is checked first.
    agent_id = validate.identifier(agent_id, field)  # before SQL: a malformed id is a 422, never a 500
    if unit.tx.execute(
        "UPDATE agents SET last_seen = ? WHERE project = ? AND agent_id = ? AND status = 'online'",
        (unit.now, unit.project, agent_id),
    ):
        return
    row = require_agent(unit, agent_id, field=field)
    unit.tx.execute(
        "UPDATE agents SET last_seen = ?, status = 'online' WHERE project = ? AND agent_id = ?",
        (unit.now, unit.project, row["agent_id"]),
    )
    if row["status"] == "offline":
        unit.emit(
            Kind.AGENT_ONLINE,
            actor=row["agent_id"],
            audience=(EVERYONE,),
            status="online",
            name=row["name"],
            modules=json.loads(row["modules"]),
        )


async def heartbeat_on_read(ctx: ServiceContext, agent_id: str) -> None:
    """Read-only calls count as heartbeats too (an agent that only polls get_updates stays online).

    Reads do not write, so the heartbeat is a separate small write, coalesced to one per agent
    every READ_HEARTBEAT_EVERY_S so that polling does not cost an fsync per call.
    """
    now = time.monotonic()
    every = min(READ_HEARTBEAT_EVERY_S, ctx.settings.agent_ttl_s / 10)
    if agent_id in ctx.read_heartbeats and now - ctx.read_heartbeats[agent_id] < every:
        return
    ctx.read_heartbeats[agent_id] = now

    def txn(unit: Unit) -> None:
        touch(unit, agent_id)

    await ctx.store.write(txn)


class AgentService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    # -- writes ---------------------------------------------------------------------------

    async def register(
        self,
        name: str,
        agent_id: str | None = None,
        modules: list[str] | None = None,
        branch: str | None = None,
        worktree: str | None = None,
        client: str | None = None,
    ) -> dict[str, Any]:
        """Registers (or re-registers, idempotently) an agent and returns its briefing.

        Without `agent_id` the id is derived from `name`, so registering twice with the same name
        is the same agent. Raises InvalidInput for bad fields.
        """
        name = validate.text(name, "name", max_chars=validate.MAX_NAME_CHARS)
        agent = validate.identifier(agent_id, "agent_id") if agent_id is not None else validate.slug(name)
        if agent.startswith(OVERSEER_PREFIX):
            require_dashboard("agent_id", agent)
        mods = sorted(
            {normalize_module(m, field=f"modules[{i}]") for i, m in enumerate(validate.items(modules, "modules"))}
        )
        branch = validate.text(branch, "branch", required=False, max_chars=256)
        worktree = validate.text(worktree, "worktree", required=False, max_chars=1024)
        client = validate.text(client, "client", required=False, max_chars=100)
        settings = self.ctx.settings

        def txn(unit: Unit) -> dict[str, Any]:
            existing = unit.tx.one(
                "SELECT status, last_seen FROM agents WHERE project = ? AND agent_id = ?", (unit.project, agent)
            )
            was_online = (
                existing is not None
                and existing["status"] == "online"
                and existing["last_seen"] >= unit.now - settings.agent_ttl_s
            )
            unit.tx.execute(
                "INSERT INTO agents (project, agent_id, name, client, branch, worktree, modules, status,"
                " registered_at, session_start, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, 'online', ?, ?, ?)"
                " ON CONFLICT (project, agent_id) DO UPDATE SET name = excluded.name, client = excluded.client,"
                " branch = excluded.branch, worktree = excluded.worktree, modules = excluded.modules,"
                " status = 'online', last_seen = excluded.last_seen,"
                " session_start = CASE WHEN agents.status = 'online' THEN agents.session_start"
                "                      ELSE excluded.session_start END",
                (unit.project, agent, name, client, branch, worktree, dumps(mods), unit.now, unit.now, unit.now),
            )
            unit.tx.execute("DELETE FROM agent_modules WHERE project = ? AND agent_id = ?", (unit.project, agent))
            unit.tx.executemany(
                "INSERT INTO agent_modules (project, module, agent_id) VALUES (?, ?, ?)",
                [(unit.project, m, agent) for m in mods],
            )
            if not was_online:
                unit.emit(
                    Kind.AGENT_ONLINE,
                    actor=agent,
                    status="online",
                    name=name,
                    modules=mods,
                    client=client,
                    branch=branch,
                )
            return {
                "agent_id": agent,
                "name": name,
                "registered": True,
                "briefing": _briefing(unit, self.ctx, agent, mods),
            }

        return await self.ctx.store.write(txn)

    async def heartbeat(
        self, agent_id: str, current_file: str | None = None, current_thread: str | None = None
    ) -> dict[str, Any]:
        """Refreshes liveness and what the agent is looking at. Raises NotFound if unregistered."""
        path = self.ctx.path(current_file, "current_file") if current_file else None
        thread = validate.text(current_thread, "current_thread", required=False, max_chars=64) or None

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, agent_id)
            unit.tx.execute(
                "UPDATE agents SET current_file = ?, current_thread = ? WHERE project = ? AND agent_id = ?",
                (path, thread, unit.project, agent_id),
            )
            return {
                "agent_id": agent_id,
                "status": "online",
                "last_seen": iso(unit.now),
                "offline_after_s": self.ctx.settings.agent_ttl_s,
            }

        return await self.ctx.store.write(txn)

    async def deregister(self, agent_id: str) -> dict[str, Any]:
        """Takes the agent out: its intents are withdrawn, threads left, locks and slots released."""

        def txn(unit: Unit) -> dict[str, Any]:
            row = require_agent(unit, agent_id)
            unit.tx.execute(
                "UPDATE agents SET status = 'deregistered', current_file = NULL, current_thread = NULL"
                " WHERE project = ? AND agent_id = ?",
                (unit.project, row["agent_id"]),
            )
            unit.tx.execute(
                "DELETE FROM agent_modules WHERE project = ? AND agent_id = ?", (unit.project, row["agent_id"])
            )
            for hook in self.ctx.agent_gone_hooks:
                hook(unit, row["agent_id"], "deregistered")
            unit.emit(Kind.AGENT_DEREGISTERED, actor=row["agent_id"], status="deregistered", name=row["name"])
            return {"agent_id": row["agent_id"], "deregistered": True}

        return await self.ctx.store.write(txn)

    def expire_silent(self, unit: Unit) -> int:
        """Sweeper step: agents silent past agent_ttl go offline, releasing what they held."""
        # Sorted here, not by ORDER BY: SQLite would rather read every agent in id order than sort the
        # few stale ones, and this runs on the writer every sweep.
        stale = sorted(
            unit.tx.all(
                "SELECT agent_id, name FROM agents WHERE project = ? AND status = 'online' AND last_seen < ?",
                (unit.project, self.ctx.online_since(unit.now)),
            ),
            key=lambda r: str(r["agent_id"]),
        )
        for row in stale:
            unit.tx.execute(
                "UPDATE agents SET status = 'offline' WHERE project = ? AND agent_id = ?",
                (unit.project, row["agent_id"]),
            )
            for hook in self.ctx.agent_gone_hooks:
                hook(unit, row["agent_id"], "offline")
            unit.emit(Kind.AGENT_OFFLINE, actor=row["agent_id"], status="offline", name=row["name"])
        return len(stale)

    # -- reads ----------------------------------------------------------------------------

    async def list_agents(self, online_only: bool = False) -> dict[str, Any]:
        """Registered agents (not deregistered) with derived activity; `online_only` drops the offline."""

        def read(unit: Unit) -> dict[str, Any]:
            return {"agents": agent_rows(unit, self.ctx, online_only=online_only)}

        return await self.ctx.store.read(read)

    async def get(self, agent_id: str) -> dict[str, Any]:
        """One agent (F-06): its registration, derived activity, active intents and live leases."""
        agent_id = validate.identifier(agent_id, "agent_id")

        def read(unit: Unit) -> dict[str, Any]:
            rows = agent_rows(unit, self.ctx, online_only=False, agent_id=agent_id)
            if not rows:
                raise NotFound(f"agent {agent_id} is not registered; list_agents shows who is", field="agent_id")
            intents = unit.tx.all(
                "SELECT id, subject, target_files FROM intents WHERE project = ? AND agent_id = ?"
                " AND status = 'active' AND expires_at > ? ORDER BY id",
                (unit.project, agent_id, unit.now),
            )
            locks = unit.tx.all(
                "SELECT path, mode, expires_at FROM locks WHERE project = ? AND agent_id = ? AND expires_at > ?"
                " ORDER BY path",
                (unit.project, agent_id, unit.now),
            )
            return {
                **rows[0],
                "intents": [
                    {
                        "intent_id": intent_ref(r["id"]),
                        "subject": r["subject"],
                        "target_files": json.loads(r["target_files"]),
                    }
                    for r in intents
                ],
                "locks": [{"path": r["path"], "mode": r["mode"], "expires_at": iso(r["expires_at"])} for r in locks],
            }

        return await self.ctx.store.read(read)

    async def activity(self) -> dict[str, Any]:
        """Derived activity of every online agent: working, waiting or idle (F-03)."""

        def read(unit: Unit) -> dict[str, Any]:
            agents = agent_rows(unit, self.ctx, online_only=True)
            return {
                "agents": [
                    {
                        k: a[k]
                        for k in (
                            "agent_id",
                            "name",
                            "activity",
                            "current_file",
                            "current_thread",
                            "waiting_on",
                            "last_seen",
                        )
                    }
                    for a in agents
                ]
            }

        return await self.ctx.store.read(read)

    async def wait_for_peers(self, count: int, timeout_s: float = 30.0) -> dict[str, Any]:
        """Blocks until at least `count` agents are online or `timeout_s` passes.

        People at the dashboard (`human:` ids) are not peers: they never take work, so they do not
        count towards `count`.
        """
        count = int(validate.within(count, "count", PEER_COUNT_RANGE, default=1))
        timeout_s = validate.within(timeout_s, "timeout_s", PEER_WAIT_RANGE, default=30)
        deadline = time.monotonic() + timeout_s
        with self.ctx.bus.subscribe(lambda e: e.kind.startswith("agent.")) as subscription:
            while True:
                online = await self._online_count()
                remaining = deadline - time.monotonic()
                if online >= count or remaining <= 0:
                    return {"ready": online >= count, "online": online, "wanted": count}
                await subscription.next_event(timeout=min(remaining, 1.0))

    async def _online_count(self) -> int:
        def read(unit: Unit) -> int:
            overseer, args = starts_with("agent_id", OVERSEER_PREFIX)
            row = unit.tx.one(
                "SELECT COUNT(*) AS n FROM agents WHERE project = ? AND status = 'online' AND last_seen >= ?"
                f" AND NOT {overseer}",
                (unit.project, self.ctx.online_since(unit.now), *args),
            )
            return int(row["n"]) if row else 0

        return await self.ctx.store.read(read)


def agent_rows(
    unit: Unit, ctx: ServiceContext, *, online_only: bool, limit: int = 5000, agent_id: str | None = None
) -> list[dict[str, Any]]:
    """Agents with their derived activity, computed in a few set queries (not one per agent)."""
    since = ctx.online_since(unit.now)
    sql = "SELECT * FROM agents WHERE project = ? AND status != 'deregistered'"
    params: list[Any] = [unit.project]
    if agent_id is not None:
        sql += " AND agent_id = ?"
        params.append(agent_id)
    if online_only:
        sql += " AND status = 'online' AND last_seen >= ?"
        params.append(since)
    rows = unit.tx.all(sql + " ORDER BY agent_id LIMIT ?", (*params, limit))
    working = {
        r["agent_id"]
        for r in unit.tx.all(
            # The window's rows first (service/files.py IN_WINDOW_FIRST): a plain DISTINCT walked every edit.
            "WITH e AS MATERIALIZED (SELECT agent_id FROM file_edits WHERE project = ? AND ts >= ?)"
            " SELECT DISTINCT agent_id FROM e",
            (unit.project, unit.now - ctx.settings.working_window_s),
        )
    }
    working |= {
        r["agent_id"]
        for r in unit.tx.all(
            "SELECT DISTINCT agent_id FROM working_files WHERE project = ? AND expires_at > ?", (unit.project, unit.now)
        )
    }
    waiting = waiting_on_threads(unit)
    out = []
    for r in rows:
        online = r["status"] == "online" and r["last_seen"] >= since
        agent_id = r["agent_id"]
        if not online:
            activity = "offline"
        elif agent_id in working:
            activity = "working"
        elif agent_id in waiting:
            activity = "waiting"
        else:
            activity = "idle"
        out.append(
            {
                "agent_id": agent_id,
                "name": r["name"],
                "client": r["client"],
                "branch": r["branch"],
                "worktree": r["worktree"],
                "modules": json.loads(r["modules"]),
                "online": online,
                "activity": activity,
                "current_file": r["current_file"],
                "current_thread": r["current_thread"],
                "waiting_on": sorted(waiting.get(agent_id, ())),
                "last_seen": iso(r["last_seen"]),
                "registered_at": iso(r["registered_at"]),
            }
        )
    return out


def waiting_on_threads(unit: Unit) -> dict[str, set[str]]:
    """agent → active threads that wait for *its* answer (an approval it owes, or a first reply)."""
    rows = unit.tx.all(
        "SELECT t.id, t.status, t.round, t.proposal, m.agent_id, m.role FROM threads t"
        " JOIN thread_members m ON m.thread_id = t.id AND m.left_at IS NULL"
        " WHERE t.project = ? AND t.status IN ('open', 'resolving')",
        (unit.project,),
    )
    if not rows:
        return {}
    ids = sorted({r["id"] for r in rows})
    approved = {
        (r["thread_id"], r["agent_id"])
        for r in unit.tx.all(
            f"SELECT a.thread_id, a.agent_id FROM thread_approvals a JOIN threads t ON t.id = a.thread_id"
            f" AND a.round = t.round WHERE a.thread_id IN ({placeholders(ids)})",
            ids,
        )
    }
    posted = {
        (r["thread_id"], r["agent_id"])
        for r in unit.tx.all(
            f"SELECT DISTINCT m.thread_id, m.agent_id FROM thread_messages m JOIN threads t ON t.id = m.thread_id"
            f" AND m.round = t.round WHERE m.thread_id IN ({placeholders(ids)})",
            ids,
        )
    }
    waiting: dict[str, set[str]] = {}
    for r in rows:
        key = (r["id"], r["agent_id"])
        if r["status"] == "resolving":
            proposer = json.loads(r["proposal"])["by"] if r["proposal"] else None
            owes = r["agent_id"] != proposer and key not in approved
        else:
            owes = r["role"] == "respondent" and key not in posted
        if owes:
            waiting.setdefault(r["agent_id"], set()).add(thread_ref(r["id"]))
    return waiting


def _briefing(unit: Unit, ctx: ServiceContext, agent_id: str, modules: list[str]) -> dict[str, Any]:
    """What a newly registered agent should know: who is here, and work touching its modules."""
    # Peers are agents to coordinate with; a person at the dashboard is not one.
    peers = [
        a
        for a in agent_rows(unit, ctx, online_only=True, limit=BRIEFING_LIMIT + 1)
        if a["agent_id"] != agent_id and not a["agent_id"].startswith(OVERSEER_PREFIX)
    ]
    intents: list[dict[str, Any]] = []
    ids = sorted({r["intent_id"] for r in related_module_rows(unit, "intent_modules", modules, agent_id)})
    if ids:
        rows = unit.tx.all(
            f"SELECT id, agent_id, subject, target_files, thread_id FROM intents WHERE id IN ({placeholders(ids)})"
            f" ORDER BY id DESC LIMIT ?",
            (*ids, BRIEFING_LIMIT),
        )
        intents = [
            {
                "intent_id": intent_ref(r["id"]),
                "agent_id": r["agent_id"],
                "subject": r["subject"],
                "target_files": json.loads(r["target_files"]),
                "thread_id": r["thread_id"],
            }
            for r in rows
        ]
    threads = unit.tx.all(
        "SELECT t.id, t.subject, t.status, t.initiator FROM thread_members m JOIN threads t ON t.id = m.thread_id"
        " WHERE m.agent_id = ? AND t.project = ? AND t.status IN ('open', 'resolving') ORDER BY t.id DESC LIMIT ?",
        (agent_id, unit.project, BRIEFING_LIMIT),
    )
    return {
        "online_agents": peers[:BRIEFING_LIMIT],
        "intents_touching_your_modules": intents,
        "your_open_threads": [
            {
                "thread_id": thread_ref(r["id"]),
                "subject": r["subject"],
                "status": r["status"],
                "initiator": r["initiator"],
            }
            for r in threads
        ],
        "next": "announce_work before editing; poll get_updates with your cursor between turns",
    }
