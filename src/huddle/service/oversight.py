"""Human oversight: what a person at the dashboard may do that an agent may not (SPEC F-74).

A human acts under an agent id of the form `human:<name>` registered like any agent (the dashboard
does it with `register_agent`, client `dashboard`), so their thread posts and task edits fan out
as ordinary events with a recognisable actor. Only such an overseer may take a lease away from its
holder: `release_lock` lets nobody but the holder release, which is right for agents and wrong for
a person clearing a lease left behind by a stuck agent.
"""

from __future__ import annotations

from typing import Any

from huddle.domain import validate
from huddle.errors import InvalidInput, NotFound
from huddle.service.agents import touch
from huddle.service.context import ServiceContext
from huddle.service.lock_store import emit_released, expire_due, promote_waiters
from huddle.service.locks import LockService
from huddle.storage.base import Unit

OVERSEER_PREFIX = "human:"


def overseer_id(value: str, field: str = "overseer_id") -> str:
    """A valid agent id that names a human overseer (`human:<name>`), or InvalidInput saying so."""
    ident = validate.identifier(value, field)
    if not ident.startswith(OVERSEER_PREFIX) or len(ident) == len(OVERSEER_PREFIX):
        raise InvalidInput(
            f"{field} {ident!r} is not an overseer: overseer ids are 'human:<name>' (register it with"
            " register_agent first, e.g. agent_id='human:alice')",
            field=field,
        )
    return ident


class OversightService:
    def __init__(self, ctx: ServiceContext, locks: LockService):
        self.ctx = ctx
        self.locks = locks

    async def force_release_lock(
        self, overseer: str, holder: str, path: str, reason: str | None = None
    ) -> dict[str, Any]:
        """An overseer releases `holder`'s lease on `path` (e.g. a stale one); queued requests are granted.

        Emits `lock.released` with `forced_by` and the reason, addressed to the holder (so it knows
        its lease is gone), the other holders and the waiters. Raises NotFound when `holder` holds no
        live lease on `path`.
        """
        who = overseer_id(overseer)
        owner = validate.identifier(holder, "holder")
        pattern = self.locks.target(path)
        why = validate.text(reason, "reason", required=False, max_chars=500) or "stale lease"

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, who, field="overseer_id")
            expire_due(unit)
            row = unit.tx.one(
                "SELECT * FROM locks WHERE project = ? AND agent_id = ? AND path = ? AND expires_at > ?",
                (unit.project, owner, pattern.path, unit.now),
            )
            if row is None:
                raise NotFound(
                    f"{owner} holds no live lease on {pattern.path} (it may have expired or been released);"
                    " list_locks shows the current leases",
                    field="path",
                )
            unit.tx.execute("DELETE FROM locks WHERE id = ?", (row["id"],))
            emit_released(unit, row, actor=who, reason=f"released by {who}: {why}", forced_by=who)
            granted = promote_waiters(unit, actor=who)
            return {
                "released": True,
                "holder": owner,
                "path": row["path"],
                "mode": row["mode"],
                "fencing_token": row["token"],
                "forced_by": who,
                "reason": why,
                "waiters_granted": granted,
            }

        return await self.ctx.store.write(txn)
