"""The event log as agents read it: `get_updates` is the truth behind every push (F-26, F-60, F-66)."""

from __future__ import annotations

from typing import Any

from huddle.domain import validate
from huddle.domain.events import EVERYONE, Kind
from huddle.service.agents import heartbeat_on_read, require_agent, touch
from huddle.service.context import ServiceContext
from huddle.storage.base import AUDIENCE_EVENTS, Unit, addressed_to, event_from_row, latest_cursor

MAX_PAGE = 500
PAGE_RANGE = (1, MAX_PAGE)


class UpdateService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    async def get_updates(self, agent_id: str, cursor: int = 0, limit: int = 200) -> dict[str, Any]:
        """Everything addressed to the agent (or to everyone) after `cursor`, oldest first.

        Pass the returned `next_cursor` next time; `has_more` says another page is waiting.
        Reading does not move anything server-side, so a crashed client simply asks again.
        """
        agent = validate.identifier(agent_id, "agent_id")
        after = int(validate.within(cursor, "cursor", validate.CURSOR_RANGE, default=0))
        page = int(validate.within(limit, "limit", PAGE_RANGE, default=200))

        def read(unit: Unit) -> dict[str, Any]:
            require_agent(unit, agent)
            mine, params = addressed_to(unit, agent)
            rows = unit.tx.all(
                f"SELECT e.* FROM {AUDIENCE_EVENTS} WHERE {mine} AND a.cursor > ? ORDER BY a.cursor LIMIT ?",
                (*params, after, page + 1),
            )
            events = [event_from_row(r).to_dict() for r in rows[:page]]
            return {
                "agent_id": agent,
                "events": events,
                "next_cursor": events[-1]["cursor"] if events else after,
                "has_more": len(rows) > page,
            }

        result = await self.ctx.store.read(read)
        await heartbeat_on_read(self.ctx, agent)
        return result

    async def latest_cursor(self) -> int:
        """The cursor of the newest event (0 for an empty log)."""
        return await self.ctx.store.read(latest_cursor)

    async def log_action_summary(self, agent_id: str, summary: str) -> dict[str, Any]:
        """A one-line note of what the agent did, for the dashboard timeline and its peers."""
        text = validate.text(summary, "summary", max_chars=2000)

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, agent_id)
            event = unit.emit(Kind.ACTION_SUMMARY, actor=agent_id, audience=(EVERYONE,), summary=text)
            return {"logged": True, "cursor": event.cursor}

        return await self.ctx.store.write(txn)
