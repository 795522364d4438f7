"""Reads for people watching the swarm: the event timeline page by page, and 24-hour conflict signals.

The dashboard (SPEC F-71, F-74) shows a bounded window of the event log and lets a person page
back through older events (`list_events` with `before`), or catch up after a gap (`after`). The
conflict-signal charts count how often each scoring layer fired and how consultations ended, per
hour, from the intents and thread-status events of the window — both read by indexed ranges.
"""

from __future__ import annotations

import json
from typing import Any

from huddle.domain import validate
from huddle.domain.events import Kind, iso
from huddle.errors import InvalidInput
from huddle.push.log import EventFilter, kind_sql
from huddle.service.context import ServiceContext
from huddle.storage.base import Unit, event_from_row, latest_cursor

MAX_EVENTS_PAGE = 500
MAX_WINDOW_H = 168
PAGE_RANGE = (1, MAX_EVENTS_PAGE)
WINDOW_RANGE = (1, MAX_WINDOW_H)
OUTCOMES = ("agreed", "auto_resolved", "timed_out", "closed", "cancelled")


def outcome_of(status: str, reason: str) -> str | None:
    """How a consultation ended, from its final thread.status event (None: it has not ended).

    agreed: every participant approved the proposal. auto_resolved: Huddle settled it (the others
    left, nobody else was involved, max rounds kept the last proposal, claimed work completed).
    timed_out: no agreement before the deadline.
    """
    if status == "resolved":
        return "agreed" if reason == "consensus" else "auto_resolved"
    if status == "max_rounds":
        return "auto_resolved"
    if status == "timeout":
        return "timed_out"
    if status in ("closed", "cancelled"):
        return status
    return None


class InsightService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    async def list_events(
        self,
        before: int | None = None,
        after: int | None = None,
        limit: int = 100,
        kinds: str | None = None,
        thread_id: str | None = None,
    ) -> dict[str, Any]:
        """A page of the whole event log (every audience).

        Without `after`: the newest events below `before` (or the newest of all), newest first, with
        `next_before` to ask for the page older than that (None at the start of the log). With
        `after`: events after that cursor, oldest first, with `next_after` and `has_more` — a reader
        that was away catches up with it. `kinds` is a comma list like `thread.*,lock.released`.
        """
        if before is not None and after is not None:
            raise InvalidInput("pass before (older page) or after (catch up), not both", field="after")
        page = int(validate.within(limit, "limit", PAGE_RANGE, default=100))
        bound = None
        for name, value in (("before", before), ("after", after)):
            if value is not None:
                bound = int(validate.within(value, name, validate.CURSOR_RANGE, default=0))
        thread = validate.text(thread_id, "thread_id", required=False, max_chars=64) or None
        kinds = validate.text(kinds, "kinds", required=False, max_chars=1000) or None
        wanted = EventFilter.parse(kinds=kinds, thread=thread)

        def read(unit: Unit) -> dict[str, Any]:
            kind_clause, kind_params = kind_sql(wanted.kinds)
            sql = "SELECT e.* FROM events e WHERE e.project = ?"
            params: list[Any] = [unit.project]
            if wanted.thread is not None:
                sql += " AND e.thread_id = ?"
                params.append(wanted.thread)
            if after is not None:
                sql += " AND e.cursor > ?"
            elif before is not None:
                sql += " AND e.cursor < ?"
            if bound is not None:
                params.append(bound)
            order = " ORDER BY e.cursor ASC LIMIT ?" if after is not None else " ORDER BY e.cursor DESC LIMIT ?"
            rows = unit.tx.all(sql + kind_clause + order, (*params, *kind_params, page + 1))
            events = [event_from_row(r).to_dict() for r in rows[:page]]
            more = len(rows) > page
            out: dict[str, Any] = {"events": events, "has_more": more, "latest_cursor": latest_cursor(unit)}
            if after is not None:
                out["next_after"] = events[-1]["cursor"] if events else bound
            else:
                out["next_before"] = events[-1]["cursor"] if events and more else None
            return out

        return await self.ctx.store.read(read)

    async def conflict_signals(self, hours: int = 24) -> dict[str, Any]:
        """Per hour over the last `hours` (1…168): how often each scoring layer fired on an announce,
        how announces were judged (proceed / caution / consult), and how consultations ended
        (agreed / auto_resolved / timed_out, plus closed and cancelled)."""
        window = int(validate.within(hours, "hours", WINDOW_RANGE, default=24))

        def read(unit: Unit) -> dict[str, Any]:
            bucket_s = 3600
            # Buckets end at the next full hour, so the newest bar is the current (partial) hour.
            end = (int(unit.now) // bucket_s + 1) * bucket_s
            start = end - window * bucket_s

            def slot(ts: float) -> int:
                return min(window - 1, max(0, int((ts - start) // bucket_s)))

            layers: dict[str, list[int]] = {}
            verdicts: dict[str, list[int]] = {v: [0] * window for v in ("proceed", "caution", "consult")}
            for row in unit.tx.all(
                "SELECT created_at, verdict, impacts FROM intents WHERE project = ? AND created_at >= ?",
                (unit.project, start),
            ):
                at = slot(row["created_at"])
                verdicts.setdefault(row["verdict"], [0] * window)[at] += 1
                fired = {e["layer"] for impact in json.loads(row["impacts"]) for e in impact.get("evidence", ())}
                for layer in fired:
                    layers.setdefault(str(layer), [0] * window)[at] += 1
            outcomes: dict[str, list[int]] = {o: [0] * window for o in OUTCOMES}
            for row in unit.tx.all(
                "SELECT ts, data FROM events WHERE project = ? AND ts >= ? AND kind = ?",
                (unit.project, start, Kind.THREAD_STATUS),
            ):
                data = json.loads(row["data"])
                outcome = outcome_of(str(data.get("status")), str(data.get("reason") or ""))
                if outcome is not None:
                    outcomes[outcome][slot(row["ts"])] += 1
            return {
                "hours": window,
                "bucket_s": bucket_s,
                "since": iso(start),
                "until": iso(end),
                "bucket_starts": [iso(start + i * bucket_s) for i in range(window)],
                "layers": dict(sorted(layers.items())),
                "layer_totals": {k: sum(v) for k, v in sorted(layers.items())},
                "verdicts": verdicts,
                "outcomes": outcomes,
                "outcome_totals": {k: sum(v) for k, v in outcomes.items()},
            }

        return await self.ctx.store.read(read)
