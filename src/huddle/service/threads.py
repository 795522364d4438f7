"""Consultation threads: where colliding agents agree before editing (SPEC F-20 … F-26).

The rules (who may propose, approve, close…) live in `domain.threads`; this module loads a
thread, asks the rules, applies the transition and emits one event per transition. Every
thread event is addressed to the thread's members, so `get_updates` replays the exchange.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from huddle.domain import threads as rules
from huddle.domain import validate
from huddle.domain.events import Kind, iso
from huddle.domain.ids import intent_ref, parse_ref, thread_ref
from huddle.errors import NotFound
from huddle.service.agents import touch
from huddle.service.context import ServiceContext, dumps
from huddle.service.lifecycle import end_intent
from huddle.storage.base import Row, Unit, event_from_row

MAX_MESSAGES_RETURNED = 500
LIST_LIMIT_RANGE = (1, 1000)
ThreadStep = Callable[[Unit, Row, rules.ThreadView, list[str]], dict[str, Any]]


def open_thread(
    unit: Unit,
    ctx: ServiceContext,
    *,
    initiator: str,
    subject: str,
    intent_id: int | None,
    respondents: Sequence[str],
    target_files: Sequence[str],
    impacts: list[dict[str, Any]],
) -> str:
    """Opens a thread inside the caller's transaction and returns its id (T-n)."""
    row = unit.tx.one(
        "INSERT INTO threads (project, subject, initiator, intent_id, status, round, max_rounds, deadline,"
        " created_at, updated_at, target_files) VALUES (?, ?, ?, ?, 'open', 1, ?, ?, ?, ?, ?) RETURNING id",
        (
            unit.project,
            subject,
            initiator,
            intent_id,
            ctx.settings.max_rounds,
            unit.now + ctx.settings.thread_timeout_s,
            unit.now,
            unit.now,
            dumps(list(target_files)),
        ),
    )
    assert row is not None
    number = int(row["id"])
    members = [(number, initiator, "initiator")] + [(number, r, "respondent") for r in respondents if r != initiator]
    unit.tx.executemany("INSERT INTO thread_members (thread_id, agent_id, role) VALUES (?, ?, ?)", members)
    ref = thread_ref(number)
    unit.emit(
        Kind.THREAD_OPENED,
        actor=initiator,
        audience=[m[1] for m in members],
        thread_id=ref,
        subject=subject,
        initiator_id=initiator,
        expected_respondents=[m[1] for m in members[1:]],
        target_files=list(target_files),
        intent_id=intent_ref(intent_id) if intent_id else None,
        impacts=impacts,
        status=rules.OPEN,
    )
    return ref


NARROWED = "initiator narrowed the intent; no collision remains"


def settle_after_intent_update(unit: Unit, thread_id: str, concerned: set[str], actor: str) -> tuple[bool, list[str]]:
    """update_intent hook: resolves the intent's active thread when no respondent collides any more.

    A thread is a consultation about a collision. When its initiator narrows the intent so that no
    respondent still collides, there is nothing left to agree on: the thread resolves (not closes —
    closing ends the intent, and the initiator's work goes on) with the resolution NARROWED, and its
    members get the usual thread.status event. Returns (resolved, the thread's members).
    """
    _, view, members = _load(unit, thread_id)
    if view.status not in (rules.OPEN, rules.RESOLVING):
        return False, []  # an ended thread: nothing to settle, nobody to tell
    if view.respondents & concerned:
        return False, members
    _set_status(unit, view, members, rules.RESOLVED, actor=actor, resolution=NARROWED, reason=NARROWED)
    return True, members


def _load(unit: Unit, thread_id: str | int) -> tuple[Row, rules.ThreadView, list[str]]:
    number = parse_ref(thread_id, "T", "thread_id")
    row = unit.tx.one("SELECT * FROM threads WHERE id = ? AND project = ?", (number, unit.project))
    if row is None:
        raise NotFound(
            f"thread {thread_ref(number)} does not exist; list_threads shows the open ones", field="thread_id"
        )
    members = unit.tx.all(
        "SELECT agent_id, role, left_at FROM thread_members WHERE thread_id = ? ORDER BY agent_id", (number,)
    )
    approvals = frozenset(
        r["agent_id"]
        for r in unit.tx.all(
            "SELECT agent_id FROM thread_approvals WHERE thread_id = ? AND round = ?", (number, row["round"])
        )
    )
    proposal = json.loads(row["proposal"]) if row["proposal"] else None
    view = rules.ThreadView(
        thread_id=thread_ref(number),
        status=row["status"],
        round=row["round"],
        max_rounds=row["max_rounds"],
        initiator=row["initiator"],
        respondents=frozenset(m["agent_id"] for m in members if m["role"] == "respondent" and m["left_at"] is None),
        proposer=proposal["by"] if proposal else None,
        approvals=approvals,
        claimed_by=row["claimed_by"],
    )
    return row, view, [m["agent_id"] for m in members]


def _set_status(
    unit: Unit,
    view: rules.ThreadView,
    members: list[str],
    status: str,
    *,
    actor: str | None,
    resolution: str | None = None,
    reason: str = "",
) -> None:
    number = parse_ref(view.thread_id, "T", "thread_id")
    ended = unit.now if status in rules.TERMINAL else None
    unit.tx.execute(
        "UPDATE threads SET status = ?, updated_at = ?, ended_at = COALESCE(?, ended_at),"
        " resolution = COALESCE(?, resolution) WHERE id = ?",
        (status, unit.now, ended, resolution, number),
    )
    _status_event(unit, view, members, status, actor=actor, resolution=resolution, reason=reason)


def _status_event(
    unit: Unit,
    view: rules.ThreadView,
    members: list[str],
    status: str,
    *,
    actor: str | None,
    at_round: int | None = None,
    resolution: str | None = None,
    reason: str = "",
) -> None:
    """The one event every status transition emits (the caller has already stored the change)."""
    unit.emit(
        Kind.THREAD_STATUS,
        actor=actor,
        audience=members,
        thread_id=view.thread_id,
        status=status,
        previous=view.status,
        round=view.round if at_round is None else at_round,
        resolution=resolution,
        reason=reason,
    )


def _end_thread_intent(unit: Unit, row: Row, status: str, actor: str) -> None:
    """Closing or cancelling a thread ends the intent that opened it (F-10)."""
    if row["intent_id"] is not None:
        end_intent(unit, int(row["intent_id"]), "completed" if status == rules.CLOSED else "withdrawn", actor=actor)


class ThreadService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    async def _act(self, thread_id: str, agent_id: str, step: ThreadStep) -> dict[str, Any]:
        """Runs one thread transition in a transaction: the caller's heartbeat, the thread, then `step`."""

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, agent_id)
            return step(unit, *_load(unit, thread_id))

        return await self.ctx.store.write(txn)

    async def get(self, thread_id: str, after_message_id: int | None = None) -> dict[str, Any]:
        """The thread with proposal, approvals and its newest messages (at most 500, oldest first).

        `total_messages` counts them all and `truncated` says older ones were left out. With
        `after_message_id`, only messages after that one (a reader catching up cheaply). Raises
        NotFound or InvalidInput for the id.
        """
        after = (
            None
            if after_message_id is None
            else int(validate.within(after_message_id, "after_message_id", validate.CURSOR_RANGE, default=0))
        )

        def read(unit: Unit) -> dict[str, Any]:
            return thread_dict(unit, *_load(unit, thread_id)[:2], after_message_id=after)

        return await self.ctx.store.read(read)

    async def post(
        self, thread_id: str, agent_id: str, type: str, content: str, in_reply_to: int | None = None
    ) -> dict[str, Any]:
        """Adds a message (context, question, warning, suggestion); anyone registered may post."""
        kind = validate.choice(type, "type", rules.MESSAGE_TYPES)
        content = validate.text(content, "content")
        if in_reply_to is not None:
            in_reply_to = int(validate.within(in_reply_to, "in_reply_to", validate.ID_RANGE, default=1))

        def step(unit: Unit, row: Row, view: rules.ThreadView, members: list[str]) -> dict[str, Any]:
            rules.check_post(view)
            number = int(row["id"])
            if (
                in_reply_to is not None
                and unit.tx.one("SELECT 1 FROM thread_messages WHERE id = ? AND thread_id = ?", (in_reply_to, number))
                is None
            ):
                raise NotFound(f"message {in_reply_to} is not in thread {view.thread_id}", field="in_reply_to")
            msg = unit.tx.one(
                "INSERT INTO thread_messages (thread_id, agent_id, type, content, in_reply_to, round, ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (number, agent_id, kind, content, in_reply_to, view.round, unit.now),
            )
            assert msg is not None
            self._bump(unit, number)
            audience = members if agent_id in members else [*members, agent_id]
            unit.emit(
                Kind.THREAD_MESSAGE,
                actor=agent_id,
                audience=audience,
                thread_id=view.thread_id,
                message_id=msg["id"],
                type=kind,
                content=content,
                in_reply_to=in_reply_to,
                round=view.round,
            )
            return {"thread_id": view.thread_id, "message_id": msg["id"], "status": view.status}

        return await self._act(thread_id, agent_id, step)

    async def propose(self, thread_id: str, agent_id: str, summary: str, plan: str | None = None) -> dict[str, Any]:
        """Puts a resolution on the table (participants only); the others then approve or contest."""
        summary = validate.text(summary, "summary", max_chars=4000)
        plan = validate.text(plan, "plan", required=False)

        def step(unit: Unit, row: Row, view: rules.ThreadView, members: list[str]) -> dict[str, Any]:
            rules.check_propose(view, agent_id)
            proposal = {"summary": summary, "plan": plan, "by": agent_id, "round": view.round, "at": iso(unit.now)}
            number = int(row["id"])
            unit.tx.execute("DELETE FROM thread_approvals WHERE thread_id = ? AND round = ?", (number, view.round))
            unit.tx.execute(
                "UPDATE threads SET proposal = ?, status = 'resolving' WHERE id = ?", (dumps(proposal), number)
            )
            self._bump(unit, number)
            unit.emit(
                Kind.THREAD_PROPOSAL,
                actor=agent_id,
                audience=members,
                thread_id=view.thread_id,
                summary=summary,
                plan=plan,
                round=view.round,
            )
            if view.status != rules.RESOLVING:
                _status_event(unit, view, members, rules.RESOLVING, actor=agent_id, reason="proposal")
            waiting_for = sorted(view.participants - {agent_id})
            if not waiting_for:  # nobody else is left to agree: the proposal stands
                _set_status(
                    unit,
                    view,
                    members,
                    rules.RESOLVED,
                    actor=agent_id,
                    resolution=summary,
                    reason="no other participant",
                )
                return {"thread_id": view.thread_id, "status": rules.RESOLVED, "round": view.round}
            return {
                "thread_id": view.thread_id,
                "status": rules.RESOLVING,
                "round": view.round,
                "waiting_for": waiting_for,
            }

        return await self._act(thread_id, agent_id, step)

    async def approve(self, thread_id: str, agent_id: str) -> dict[str, Any]:
        """Approves the current proposal; when every needed approval is in, the thread resolves."""

        def step(unit: Unit, row: Row, view: rules.ThreadView, members: list[str]) -> dict[str, Any]:
            rules.check_vote(view, agent_id, "approve")
            number = int(row["id"])
            unit.tx.execute(
                "INSERT INTO thread_approvals (thread_id, round, agent_id, ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (number, view.round, agent_id, unit.now),
            )
            self._bump(unit, number)
            unit.emit(
                Kind.THREAD_APPROVAL, actor=agent_id, audience=members, thread_id=view.thread_id, round=view.round
            )
            after = rules.ThreadView(**{**view.__dict__, "approvals": view.approvals | {agent_id}})
            if after.has_consensus():
                summary = json.loads(row["proposal"])["summary"]
                _set_status(unit, view, members, rules.RESOLVED, actor=agent_id, resolution=summary, reason="consensus")
                return {"thread_id": view.thread_id, "status": rules.RESOLVED, "resolution": summary}
            return {
                "thread_id": view.thread_id,
                "status": view.status,
                "waiting_for": sorted(after.needed_approvals() - after.approvals),
            }

        return await self._act(thread_id, agent_id, step)

    async def contest(self, thread_id: str, agent_id: str, reason: str) -> dict[str, Any]:
        """Rejects the proposal: back to `open` for another round, or forced resolution past max_rounds."""
        reason = validate.text(reason, "reason", max_chars=4000)

        def step(unit: Unit, row: Row, view: rules.ThreadView, members: list[str]) -> dict[str, Any]:
            rules.check_vote(view, agent_id, "contest")
            status, next_round = rules.after_contest(view)
            number = int(row["id"])
            unit.tx.execute(
                "INSERT INTO thread_messages (thread_id, agent_id, type, content, round, ts)"
                " VALUES (?, ?, 'contest', ?, ?, ?)",
                (number, agent_id, reason, view.round, unit.now),
            )
            self._bump(unit, number)
            if status == rules.MAX_ROUNDS:
                forced = json.loads(row["proposal"])["summary"]
                _set_status(
                    unit,
                    view,
                    members,
                    rules.MAX_ROUNDS,
                    actor=agent_id,
                    resolution=forced,
                    reason=f"contested after {view.max_rounds} rounds: the last proposal stands",
                )
                return {"thread_id": view.thread_id, "status": rules.MAX_ROUNDS, "resolution": forced}
            unit.tx.execute(
                "UPDATE threads SET status = 'open', round = ?, proposal = NULL WHERE id = ?", (next_round, number)
            )
            _status_event(
                unit, view, members, rules.OPEN, actor=agent_id, at_round=next_round, reason=f"contested: {reason}"
            )
            return {"thread_id": view.thread_id, "status": rules.OPEN, "round": next_round}

        return await self._act(thread_id, agent_id, step)

    async def close(self, thread_id: str, agent_id: str, summary: str | None = None) -> dict[str, Any]:
        """Closes the thread once the work is settled (participants only); ends its intent."""
        summary = validate.text(summary, "summary", required=False, max_chars=4000)
        return await self._finish(thread_id, agent_id, rules.CLOSED, summary, rules.check_close)

    async def cancel(self, thread_id: str, agent_id: str, reason: str | None = None) -> dict[str, Any]:
        """Cancels the thread (initiator only): the work is abandoned; its intent is withdrawn."""
        reason = validate.text(reason, "reason", required=False, max_chars=4000)
        return await self._finish(thread_id, agent_id, rules.CANCELLED, reason, rules.check_cancel)

    async def _finish(
        self, thread_id: str, agent_id: str, status: str, text: str, check: Callable[[rules.ThreadView, str], None]
    ) -> dict[str, Any]:
        def step(unit: Unit, row: Row, view: rules.ThreadView, members: list[str]) -> dict[str, Any]:
            check(view, agent_id)
            _set_status(unit, view, members, status, actor=agent_id, resolution=text or None, reason=text)
            _end_thread_intent(unit, row, status, agent_id)
            return {"thread_id": view.thread_id, "status": status}

        return await self._act(thread_id, agent_id, step)

    async def claim(self, thread_id: str, agent_id: str) -> dict[str, Any]:
        """Work stealing: exactly one caller wins an unclaimed thread (a single conditional UPDATE)."""

        def step(unit: Unit, row: Row, view: rules.ThreadView, members: list[str]) -> dict[str, Any]:
            rules.check_claim(view, agent_id)
            won = unit.tx.execute(
                "UPDATE threads SET claimed_by = ?, claimed_at = ? WHERE id = ? AND claimed_by IS NULL",
                (agent_id, unit.now, int(row["id"])),
            )
            if not won:
                current = unit.tx.one("SELECT claimed_by FROM threads WHERE id = ?", (int(row["id"]),))
                holder = current["claimed_by"] if current else "someone"
                return {
                    "thread_id": view.thread_id,
                    "claimed": False,
                    "claimed_by": holder,
                    "reason": f"already claimed by {holder}",
                }
            unit.emit(
                Kind.THREAD_CLAIMED,
                actor=agent_id,
                audience=[*members, agent_id],
                thread_id=view.thread_id,
                claimed_by=agent_id,
            )
            return {"thread_id": view.thread_id, "claimed": True, "claimed_by": agent_id}

        return await self._act(thread_id, agent_id, step)

    async def complete(self, thread_id: str, agent_id: str, resolution: str) -> dict[str, Any]:
        """The claimer reports the claimed work done; an active thread becomes resolved."""
        resolution = validate.text(resolution, "resolution", max_chars=4000)

        def step(unit: Unit, row: Row, view: rules.ThreadView, members: list[str]) -> dict[str, Any]:
            rules.check_complete(view, agent_id, already_completed=row["completed_at"] is not None)
            unit.tx.execute(
                "UPDATE threads SET completed_at = ?, resolution = ? WHERE id = ?",
                (unit.now, resolution, int(row["id"])),
            )
            unit.emit(
                Kind.THREAD_COMPLETED,
                actor=agent_id,
                audience=[*members, agent_id],
                thread_id=view.thread_id,
                resolution=resolution,
            )
            status = view.status
            if view.status in rules.ACTIVE:
                _set_status(
                    unit,
                    view,
                    members,
                    rules.RESOLVED,
                    actor=agent_id,
                    resolution=resolution,
                    reason="claimed work completed",
                )
                status = rules.RESOLVED
            return {"thread_id": view.thread_id, "status": status, "completed": True}

        return await self._act(thread_id, agent_id, step)

    async def list(self, status: str | None = None, agent_id: str | None = None, limit: int = 100) -> dict[str, Any]:
        """Threads, newest first, by status and/or member. Raises InvalidInput for an unknown status."""
        if status is not None:
            validate.choice(status, "status", rules.ALL_STATUSES)
        limit = int(validate.within(limit, "limit", LIST_LIMIT_RANGE, default=100))

        def read(unit: Unit) -> dict[str, Any]:
            sql = "SELECT t.* FROM threads t"
            params: list[Any] = []
            if agent_id:
                sql += " JOIN thread_members m ON m.thread_id = t.id AND m.agent_id = ?"
                params.append(validate.identifier(agent_id, "agent_id"))
            sql += " WHERE t.project = ?"
            params.append(unit.project)
            if status:
                sql += " AND t.status = ?"
                params.append(status)
            rows = unit.tx.all(sql + " ORDER BY t.id DESC LIMIT ?", (*params, limit))
            return {"threads": [summary_dict(unit, r) for r in rows]}

        return await self.ctx.store.read(read)

    async def updates(self, thread_id: str, since_cursor: int = 0) -> dict[str, Any]:
        """Every event of one thread after `since_cursor`, in order, with the next cursor."""
        since = int(validate.within(since_cursor, "since_cursor", validate.CURSOR_RANGE, default=0))

        def read(unit: Unit) -> dict[str, Any]:
            view = _load(unit, thread_id)[1]
            rows = unit.tx.all(
                "SELECT * FROM events WHERE thread_id = ? AND cursor > ? ORDER BY cursor LIMIT 500",
                (view.thread_id, since),
            )
            events = [event_from_row(r).to_dict() for r in rows]
            return {
                "thread_id": view.thread_id,
                "status": view.status,
                "events": events,
                "next_cursor": events[-1]["cursor"] if events else since,
            }

        return await self.ctx.store.read(read)

    def expire(self, unit: Unit) -> int:
        """Sweeper step: active threads past their deadline time out."""
        rows = unit.tx.all(
            "SELECT id FROM threads WHERE project = ? AND status IN ('open', 'resolving') AND deadline <= ?"
            " ORDER BY id",
            (unit.project, unit.now),
        )
        for row in rows:
            _, view, members = _load(unit, int(row["id"]))
            _set_status(
                unit,
                view,
                members,
                rules.TIMEOUT,
                actor=None,
                reason=f"no agreement within {self.ctx.settings.thread_timeout_s:g} s of the last activity",
            )
        return len(rows)

    def _bump(self, unit: Unit, number: int) -> None:
        """Activity pushes the deadline out: a thread times out only when it goes quiet."""
        unit.tx.execute(
            "UPDATE threads SET updated_at = ?, deadline = ? WHERE id = ?",
            (unit.now, unit.now + self.ctx.settings.thread_timeout_s, number),
        )


def leave_threads(unit: Unit, agent_id: str, reason: str) -> None:
    """Agent-gone hook (F-23): an agent going away leaves the respondent lists of active threads.

    A thread whose last respondent left resolves (there is nobody left to consult); one whose
    remaining participants all approved the current proposal resolves by consensus. A thread whose
    initiator deregistered is cancelled: the work it was about is withdrawn with the agent. (An
    initiator that merely went offline may come back; its threads time out if it does not.)
    """
    if reason == "deregistered":
        started = unit.tx.all(
            "SELECT id FROM threads WHERE project = ? AND initiator = ? AND status IN ('open', 'resolving')",
            (unit.project, agent_id),
        )
        for row in started:
            _, view, members = _load(unit, int(row["id"]))
            _set_status(unit, view, members, rules.CANCELLED, actor=agent_id, reason=f"initiator {agent_id} left")
    rows = unit.tx.all(
        "SELECT t.id FROM thread_members m JOIN threads t ON t.id = m.thread_id WHERE m.agent_id = ?"
        " AND m.role = 'respondent' AND m.left_at IS NULL AND t.project = ? AND t.status IN ('open', 'resolving')",
        (agent_id, unit.project),
    )
    for row in rows:
        number = int(row["id"])
        unit.tx.execute(
            "UPDATE thread_members SET left_at = ? WHERE thread_id = ? AND agent_id = ?", (unit.now, number, agent_id)
        )
        thread, view, members = _load(unit, number)
        unit.emit(
            Kind.THREAD_RESPONDENT_LEFT,
            actor=agent_id,
            audience=members,
            thread_id=view.thread_id,
            reason=reason,
            remaining=sorted(view.respondents),
        )
        if not view.respondents:
            _set_status(
                unit,
                view,
                members,
                rules.RESOLVED,
                actor=None,
                resolution="every respondent left",
                reason=f"last respondent {agent_id} went {reason}",
            )
        elif view.has_consensus():
            _set_status(
                unit,
                view,
                members,
                rules.RESOLVED,
                actor=None,
                resolution=json.loads(thread["proposal"])["summary"],
                reason="consensus among the remaining participants",
            )


def summary_dict(unit: Unit, row: Row) -> dict[str, Any]:
    members = unit.tx.all(
        "SELECT agent_id, role, left_at FROM thread_members WHERE thread_id = ? ORDER BY agent_id", (row["id"],)
    )
    return {
        "thread_id": thread_ref(row["id"]),
        "subject": row["subject"],
        "status": row["status"],
        "round": row["round"],
        "initiator": row["initiator"],
        "expected_respondents": [m["agent_id"] for m in members if m["role"] == "respondent" and m["left_at"] is None],
        "claimed_by": row["claimed_by"],
        "resolution": row["resolution"],
        "target_files": json.loads(row["target_files"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "deadline": iso(row["deadline"]) if row["status"] in rules.ACTIVE else None,
    }


def thread_dict(unit: Unit, row: Row, view: rules.ThreadView, after_message_id: int | None = None) -> dict[str, Any]:
    # The newest messages, not the oldest: a long consultation is read for where it stands now.
    after = after_message_id or 0
    messages = unit.tx.all(
        "SELECT * FROM (SELECT * FROM thread_messages WHERE thread_id = ? AND id > ? ORDER BY id DESC LIMIT ?)"
        " AS newest ORDER BY id",
        (row["id"], after, MAX_MESSAGES_RETURNED),
    )
    total = unit.tx.one("SELECT COUNT(*) AS n FROM thread_messages WHERE thread_id = ?", (row["id"],))
    matching = unit.tx.one(
        "SELECT COUNT(*) AS n FROM thread_messages WHERE thread_id = ? AND id > ?", (row["id"], after)
    )
    assert total is not None and matching is not None
    out = summary_dict(unit, row)
    out.update(
        {
            "intent_id": intent_ref(row["intent_id"]) if row["intent_id"] else None,
            "proposal": json.loads(row["proposal"]) if row["proposal"] else None,
            "approvals": sorted(view.approvals),
            "waiting_for": sorted(view.needed_approvals() - view.approvals) if view.status == rules.RESOLVING else [],
            "messages": [
                {
                    "message_id": m["id"],
                    "agent_id": m["agent_id"],
                    "type": m["type"],
                    "content": m["content"],
                    "in_reply_to": m["in_reply_to"],
                    "round": m["round"],
                    "ts": iso(m["ts"]),
                }
                for m in messages
            ],
            "total_messages": int(total["n"]),
            "truncated": int(matching["n"]) > len(messages),
        }
    )
    return out
