"""Worker slots (SPEC F-53; seed 003): a fixed number of concurrency tokens, one per agent.

Only claimed slots have rows; the number of slots is the `worker_slots` setting, so raising it
takes effect on the next claim. Claiming is idempotent — an agent that already holds a slot gets
the same one back — and a slot returns to the pool when its agent goes offline or deregisters.
"""

from __future__ import annotations

from typing import Any

from huddle.domain import validate
from huddle.domain.events import EVERYONE, Kind, iso
from huddle.errors import Forbidden
from huddle.service.agents import touch
from huddle.service.context import ServiceContext
from huddle.storage.base import Unit

# Slot numbers; the pool is the `worker_slots` setting, never near this.
SLOT_RANGE = (1, 100_000)


class WorkerService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    @property
    def total(self) -> int:
        return self.ctx.settings.worker_slots

    async def claim(self, agent_id: str) -> dict[str, Any]:
        """Gives the agent the lowest free slot (or the one it holds). `{claimed: false, reason}` when all are taken."""
        agent = validate.identifier(agent_id, "agent_id")

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, agent)
            held = unit.tx.one(
                "SELECT slot FROM worker_slots WHERE project = ? AND agent_id = ?", (unit.project, agent)
            )
            if held is not None:
                return {"claimed": True, "slot": held["slot"], "already_held": True, "total": self.total}
            # One statement picks the lowest free number and takes it: no read-then-write window.
            row = unit.tx.one(
                "WITH RECURSIVE numbers (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers WHERE n < ?)"
                " INSERT INTO worker_slots (project, slot, agent_id, claimed_at)"
                " SELECT ?, n, ?, ? FROM numbers WHERE n NOT IN (SELECT slot FROM worker_slots WHERE project = ?)"
                " ORDER BY n LIMIT 1 RETURNING slot",
                (self.total, unit.project, agent, unit.now, unit.project),
            )
            if row is None:
                holders = [
                    r["agent_id"]
                    for r in unit.tx.all(
                        "SELECT agent_id FROM worker_slots WHERE project = ? ORDER BY slot", (unit.project,)
                    )
                ]
                return {
                    "claimed": False,
                    "total": self.total,
                    "reason": f"all {self.total} worker slots are taken (by {', '.join(holders)}); wait for a "
                    "worker.released event, or raise the worker_slots setting",
                }
            unit.emit(Kind.WORKER_CLAIMED, actor=agent, audience=[EVERYONE], slot=row["slot"], holder=agent)
            return {"claimed": True, "slot": row["slot"], "already_held": False, "total": self.total}

        return await self.ctx.store.write(txn)

    async def release(self, agent_id: str, slot: int | None = None) -> dict[str, Any]:
        """Returns the agent's slot to the pool. Raises Forbidden for a slot held by someone else."""
        agent = validate.identifier(agent_id, "agent_id")
        number = int(validate.within(slot, "slot", SLOT_RANGE, default=0)) if slot is not None else None

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, agent)
            if number is not None:
                owner = unit.tx.one(
                    "SELECT agent_id FROM worker_slots WHERE project = ? AND slot = ?", (unit.project, number)
                )
                if owner is not None and owner["agent_id"] != agent:
                    raise Forbidden(
                        f"slot {number} is held by {owner['agent_id']}, not {agent}; release your own", field="slot"
                    )
            row = unit.tx.one(
                "DELETE FROM worker_slots WHERE project = ? AND agent_id = ? RETURNING slot", (unit.project, agent)
            )
            if row is None:
                return {"released": False, "reason": f"{agent} holds no worker slot"}
            unit.emit(
                Kind.WORKER_RELEASED,
                actor=agent,
                audience=[EVERYONE],
                slot=row["slot"],
                holder=agent,
                reason="released",
            )
            return {"released": True, "slot": row["slot"]}

        return await self.ctx.store.write(txn)

    async def workers(self) -> dict[str, Any]:
        """Every slot: free or held (by whom, since when, working on which tasks)."""
        return await self.ctx.store.read(self.status_section)

    def status_section(self, unit: Unit) -> dict[str, Any]:
        rows = {r["slot"]: r for r in unit.tx.all("SELECT * FROM worker_slots WHERE project = ?", (unit.project,))}
        tasks: dict[str, list[str]] = {}
        for r in unit.tx.all(
            "SELECT task_id, claimed_by FROM tasks WHERE project = ? AND status IN"
            " ('claimed', 'in_progress') ORDER BY seq",
            (unit.project,),
        ):
            tasks.setdefault(r["claimed_by"], []).append(r["task_id"])
        slots = []
        for number in range(1, max([self.total, *rows]) + 1):
            row = rows.get(number)
            slots.append(
                {
                    "slot": number,
                    "status": "busy" if row else "free",
                    "agent_id": row["agent_id"] if row else None,
                    "claimed_at": iso(row["claimed_at"]) if row else None,
                    "tasks": tasks.get(row["agent_id"], []) if row else [],
                }
            )
        return {"total": self.total, "busy": len(rows), "free": max(0, self.total - len(rows)), "slots": slots}

    def agent_gone(self, unit: Unit, agent_id: str, reason: str) -> None:
        """Agent-gone hook: its slot returns to the pool (offline or deregistered)."""
        row = unit.tx.one(
            "DELETE FROM worker_slots WHERE project = ? AND agent_id = ? RETURNING slot", (unit.project, agent_id)
        )
        if row is not None:
            unit.emit(
                Kind.WORKER_RELEASED, actor=None, audience=[EVERYONE], slot=row["slot"], holder=agent_id, reason=reason
            )
