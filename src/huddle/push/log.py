"""Reading the event log by cursor for push channels: replay after a reconnect, catch-up after a lag.

Every push channel starts from a cursor and asks the log for what came after it, so a subscriber that
was away (SSE `Last-Event-ID`, an MQTT broker that restarted, a `huddle watch` sidecar) misses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from huddle.domain import validate
from huddle.domain.events import Event
from huddle.errors import InvalidInput
from huddle.storage.base import AUDIENCE_EVENTS, Store, Unit, addressed_to, event_from_row, starts_with
from huddle.storage.base import latest_cursor as newest_cursor

PAGE = 500


@dataclass(frozen=True)
class EventFilter:
    """Which events a subscriber wants: addressed to an agent, of one thread, of some kinds.

    `kinds` entries are exact kinds (`thread.opened`) or groups (`thread.*`). `exclude_self` drops the
    agent's own actions, so a sidecar is not woken by what its agent just did.
    """

    agent: str | None = None
    thread: str | None = None
    kinds: tuple[str, ...] = ()
    exclude_self: bool = False

    @classmethod
    def parse(
        cls,
        agent: str | None = None,
        thread: str | None = None,
        kinds: Iterable[str] | str | None = None,
        exclude_self: bool = False,
    ) -> EventFilter:
        """Validates filter values from a query string or CLI flags (raises InvalidInput)."""
        if isinstance(kinds, str):
            kinds = kinds.split(",")
        wanted: list[str] = []
        for raw in kinds or ():
            kind = raw.strip()
            if not kind:
                continue
            if len(kind) > 64 or not all(c.isalnum() or c in "._*-" for c in kind) or "*" in kind.rstrip("*"):
                raise InvalidInput(
                    f"kinds: kind filter {kind[:40]!r} is not an event kind; use e.g. thread.opened or thread.*",
                    field="kinds",
                )
            wanted.append(kind)
        return cls(
            agent=validate.identifier(agent, "agent") if agent else None,
            thread=validate.text(thread, "thread", max_chars=64) if thread else None,
            kinds=tuple(wanted),
            exclude_self=exclude_self and bool(agent),
        )

    def kind_matches(self, kind: str) -> bool:
        if not self.kinds:
            return True
        for wanted in self.kinds:
            if wanted == kind or wanted == "*" or (wanted.endswith(".*") and kind.startswith(wanted[:-1])):
                return True
        return False

    def __call__(self, event: Event) -> bool:
        """The live-path test; must stay cheap (it runs for every event and every subscriber)."""
        if self.agent is not None:
            if not event.addressed_to(self.agent):
                return False
            if self.exclude_self and event.actor == self.agent:
                return False
        if self.thread is not None and event.thread_id != self.thread:
            return False
        return self.kind_matches(event.kind)

    def as_query(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (("agent", self.agent), ("thread", self.thread), ("kinds", ",".join(self.kinds) or None))
            if v
        }


def kind_sql(kinds: tuple[str, ...]) -> tuple[str, list[Any]]:
    """The SQL twin of `EventFilter.kind_matches`: replay must pass exactly what live delivery passes."""
    if not kinds or "*" in kinds:
        return "", []
    parts: list[str] = []
    params: list[Any] = []
    for kind in kinds:
        if kind.endswith(".*"):
            condition, args = starts_with("e.kind", kind[:-1])
            parts.append(condition)
            params += args
        else:
            parts.append("e.kind = ?")
            params.append(kind)
    return " AND (" + " OR ".join(parts) + ")", params


async def read_after(store: Store, after: int, wanted: EventFilter | None = None, limit: int = PAGE) -> list[Event]:
    """Events after `after` (oldest first) that pass the filter, at most `limit`."""
    flt = wanted or EventFilter()

    def read(unit: Unit) -> list[Event]:
        kind_clause, kind_params = kind_sql(flt.kinds)
        if flt.agent is not None:
            mine, params = addressed_to(unit, flt.agent)
            sql = f"SELECT e.* FROM {AUDIENCE_EVENTS} WHERE {mine} AND a.cursor > ?"
            params.append(after)
            order = " ORDER BY a.cursor LIMIT ?"
        else:
            sql = "SELECT e.* FROM events e WHERE e.project = ? AND e.cursor > ?"
            params = [unit.project, after]
            order = " ORDER BY e.cursor LIMIT ?"
        if flt.thread is not None:
            sql += " AND e.thread_id = ?"
            params.append(flt.thread)
        if flt.exclude_self:
            sql += " AND (e.actor IS NULL OR e.actor != ?)"
            params.append(flt.agent)
        rows = unit.tx.all(sql + kind_clause + order, (*params, *kind_params, limit))
        return [event_from_row(r) for r in rows]

    return await store.read(read)


async def latest_cursor(store: Store) -> int:
    return await store.read(newest_cursor)


async def latest_for(store: Store, agent: str, limit: int) -> list[Event]:
    """The newest `limit` events addressed to `agent` (or everyone), oldest first: the inbox view."""

    def read(unit: Unit) -> list[Event]:
        mine, params = addressed_to(unit, agent)
        rows = unit.tx.all(
            f"SELECT e.* FROM {AUDIENCE_EVENTS} WHERE {mine} ORDER BY a.cursor DESC LIMIT ?", (*params, limit)
        )
        return [event_from_row(r) for r in reversed(rows)]

    return await store.read(read)


async def agent_names(store: Store) -> dict[str, str]:
    """agent_id → display name, to fill the `name` field MQTT payloads carry."""

    def read(unit: Unit) -> dict[str, str]:
        rows = unit.tx.all("SELECT agent_id, name FROM agents WHERE project = ?", (unit.project,))
        return {str(r["agent_id"]): str(r["name"]) for r in rows}

    return await store.read(read)
