"""Operations for people overseeing the swarm (toolset `oversight`): the dashboard's reads and the
overseer's lease release. Same shape as transports/tools.py: parse, call one service method."""

from __future__ import annotations

from typing import Annotated

from huddle.domain.validate import CURSOR_RANGE, ID_RANGE
from huddle.service import insights
from huddle.service.coordinator import Coordinator
from huddle.transports.operation import Operation, Result, between

Cursor = Annotated[int, between(CURSOR_RANGE)]

# Served over REST only: they need the dashboard credential (service/overseers.py), which an MCP
# client cannot carry.
REST_ONLY = frozenset({"force_release_lock"})


def oversight_operations(c: Coordinator) -> list[Operation]:
    async def list_events(
        before: Cursor | None = None,
        after: Cursor | None = None,
        limit: Annotated[int, between(insights.PAGE_RANGE)] = 100,
        kinds: str | None = None,
        thread_id: str | None = None,
    ) -> Result:
        """The whole event log page by page (every audience). Without `after`: newest first below
        `before`, with next_before for the older page. With `after`: oldest first, to catch up.
        kinds: comma list such as 'thread.*,lock.released'."""
        return await c.insights.list_events(before, after, limit, kinds, thread_id)

    async def conflict_signals(hours: Annotated[int, between(insights.WINDOW_RANGE)] = 24) -> Result:
        """Per hour over the last `hours`: scoring-layer firings, announce verdicts and how
        consultations ended (agreed, auto_resolved, timed_out, closed, cancelled)."""
        return await c.insights.conflict_signals(hours)

    async def force_release_lock(
        overseer_id: str,
        holder: str,
        path: str,
        reason: str | None = None,
        fencing_token: Annotated[int, between(ID_RANGE)] | None = None,
    ) -> Result:
        """Dashboard only (REST with the page's cookie; not on MCP): a person releases another
        agent's lease, e.g. a stale one. With fencing_token, only that very lease. The holder gets
        lock.released with forced_by; queued requests are granted."""
        return await c.oversight.force_release_lock(overseer_id, holder, path, reason, fencing_token)

    return [
        Operation("list_events", "oversight", list_events, read_only=True),
        Operation("conflict_signals", "oversight", conflict_signals, read_only=True),
        Operation("force_release_lock", "oversight", force_release_lock),
    ]
