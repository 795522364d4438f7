"""Messages between agents (SPEC F-40, F-41): direct or broadcast, with channels and priorities.

Each message gets one inbox row per recipient — a broadcast fans out to every agent registered
when it was sent — so "my unread messages" is an index range however long the history grows.
`wait_for_message` subscribes to the bus *before* it looks at the inbox, so a message committed
between the look and the wait still wakes it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from huddle.domain import validate
from huddle.domain.events import EVERYONE, Event, Kind, iso
from huddle.domain.ids import parse_ref, thread_ref
from huddle.errors import InvalidInput, NotFound
from huddle.service.agents import require_agent, touch
from huddle.service.context import ServiceContext, placeholders
from huddle.storage.base import Row, Unit

CHANNELS = ("general", "coordination", "ideas", "alerts", "git")
PRIORITIES = ("low", "normal", "high", "urgent")
MAX_CONTENT_CHARS = 10_000
MAX_WAIT_S = 300.0
DEFAULT_WAIT_S = 60.0
MAX_IDS = 500
DRAIN_LIMIT = 100
LIMIT_RANGE = (1, 1000)
WAIT_RANGE = (0, int(MAX_WAIT_S))


def message_ref(number: int) -> str:
    return f"M-{number}"


def message_dict(row: Row) -> dict[str, Any]:
    return {
        "message_id": message_ref(row["id"]),
        "from_agent": row["from_agent"],
        "to_agent": row["to_agent"],
        "broadcast": row["to_agent"] is None,
        "channel": row["channel"],
        "priority": row["priority"],
        "content": row["content"],
        "thread_id": row["thread_id"],
        "sent_at": iso(row["created_at"]),
        "read": row["read_at"] is not None,
        "read_at": iso(row["read_at"]),
    }


_INBOX_SQL = (
    "SELECT m.*, i.read_at FROM message_inbox i JOIN messages m ON m.id = i.message_id"
    " WHERE i.project = ? AND i.agent_id = ?"
)


class MessageService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self._waiting: Counter[str] = Counter()

    async def send(
        self,
        from_agent: str,
        content: str,
        to_agent: str | None = None,
        channel: str = "general",
        priority: str = "normal",
        thread_id: str | None = None,
    ) -> dict[str, Any]:
        """Sends a message to one agent, or to every registered agent when `to_agent` is None.

        Raises InvalidInput for a bad field, NotFound for an unknown sender, recipient or thread.
        """
        sender = validate.identifier(from_agent, "from_agent")
        recipient = validate.identifier(to_agent, "to_agent") if to_agent is not None else None
        if recipient == sender:
            raise InvalidInput("to_agent is yourself; name another agent, or null to broadcast", field="to_agent")
        channel = validate.choice(channel or "general", "channel", CHANNELS)
        priority = validate.choice(priority or "normal", "priority", PRIORITIES)
        text = validate.text(content, "content", max_chars=MAX_CONTENT_CHARS)
        thread = parse_ref(thread_id, "T", "thread_id") if thread_id else None

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, sender, field="from_agent")
            if recipient is not None:
                target = require_agent(unit, recipient, field="to_agent")
                recipients = [target["agent_id"]]
                online = target["status"] == "online" and target["last_seen"] >= self.ctx.online_since(unit.now)
            else:
                recipients = [
                    r["agent_id"]
                    for r in unit.tx.all(
                        "SELECT agent_id FROM agents WHERE project = ? AND status != 'deregistered' AND agent_id != ?",
                        (unit.project, sender),
                    )
                ]
                online = True
            if (
                thread is not None
                and unit.tx.one("SELECT 1 FROM threads WHERE id = ? AND project = ?", (thread, unit.project)) is None
            ):
                raise NotFound(
                    f"thread {thread_ref(thread)} does not exist; list_threads shows the open ones", field="thread_id"
                )
            ref = thread_ref(thread) if thread is not None else None
            row = unit.tx.one(
                "INSERT INTO messages (project, from_agent, to_agent, channel, priority, urgency, content, thread_id,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (unit.project, sender, recipient, channel, priority, PRIORITIES.index(priority), text, ref, unit.now),
            )
            assert row is not None
            number = int(row["id"])
            unit.tx.executemany(
                "INSERT INTO message_inbox (project, agent_id, message_id) VALUES (?, ?, ?)",
                [(unit.project, agent, number) for agent in recipients],
            )
            unit.emit(
                Kind.MESSAGE_SENT,
                actor=sender,
                audience=[recipient] if recipient else [EVERYONE],
                message_id=message_ref(number),
                from_agent=sender,
                to_agent=recipient,
                channel=channel,
                priority=priority,
                content=text,
                about_thread=ref,
            )
            out: dict[str, Any] = {
                "sent": True,
                "message_id": message_ref(number),
                "to_agent": recipient,
                "broadcast": recipient is None,
                "recipients": len(recipients),
                "sent_at": iso(unit.now),
            }
            if recipient is not None and not online:
                out["note"] = f"{recipient} is offline; the message waits in its inbox"
            return out

        return await self.ctx.store.write(txn)

    async def list_messages(
        self, agent_id: str, unread_only: bool = False, channel: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """The agent's inbox (direct and broadcast), oldest first, the latest `limit` of them. Reads only."""
        agent = validate.identifier(agent_id, "agent_id")
        chan = validate.choice(channel, "channel", CHANNELS) if channel else None
        count = int(validate.within(limit, "limit", LIMIT_RANGE, default=100))

        def read(unit: Unit) -> dict[str, Any]:
            require_agent(unit, agent)
            sql, params = _INBOX_SQL, [unit.project, agent]
            if unread_only:
                sql += " AND i.read_at IS NULL"
            if chan:
                sql += " AND m.channel = ?"
                params.append(chan)
            rows = unit.tx.all(sql + " ORDER BY i.message_id DESC LIMIT ?", (*params, count))
            unread = unit.tx.one(
                "SELECT COUNT(*) AS n FROM message_inbox WHERE project = ? AND agent_id = ? AND read_at IS NULL",
                (unit.project, agent),
            )
            return {
                "agent_id": agent,
                "messages": [message_dict(r) for r in reversed(rows)],
                "unread": int(unread["n"]) if unread else 0,
            }

        return await self.ctx.store.read(read)

    async def mark_read(self, agent_id: str, message_ids: Sequence[str | int]) -> dict[str, Any]:
        """Marks messages of the agent's inbox read. Raises NotFound (writing nothing) for ids not in it."""
        agent = validate.identifier(agent_id, "agent_id")
        ids = sorted(
            {
                parse_ref(m, "M", f"message_ids[{i}]")
                for i, m in enumerate(validate.items(message_ids, "message_ids", max_items=MAX_IDS))
            }
        )
        if not ids:
            raise InvalidInput(
                "message_ids is empty; pass the ids list_messages returned (e.g. M-12)", field="message_ids"
            )

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, agent)
            rows = unit.tx.all(
                f"SELECT message_id, read_at FROM message_inbox WHERE project = ? AND agent_id = ?"
                f" AND message_id IN ({placeholders(ids)})",
                (unit.project, agent, *ids),
            )
            missing = sorted(set(ids) - {r["message_id"] for r in rows})
            if missing:
                raise NotFound(
                    f"message(s) {', '.join(message_ref(m) for m in missing)} are not in {agent}'s inbox;"
                    " list_messages shows the ids you can mark",
                    field="message_ids",
                )
            unread = [r["message_id"] for r in rows if r["read_at"] is None]
            if unread:
                unit.tx.execute(
                    f"UPDATE message_inbox SET read_at = ? WHERE project = ? AND agent_id = ?"
                    f" AND message_id IN ({placeholders(unread)})",
                    (unit.now, unit.project, agent, *unread),
                )
            return {"marked": len(unread), "already_read": len(rows) - len(unread)}

        return await self.ctx.store.write(txn)

    def _drain(self, unit: Unit, agent: str, limit: int) -> dict[str, Any]:
        """Unread messages, most urgent first then oldest, marked read in the same transaction."""
        touch(unit, agent)
        rows = unit.tx.all(
            _INBOX_SQL + " AND i.read_at IS NULL ORDER BY m.urgency DESC, m.id LIMIT ?",
            (unit.project, agent, limit + 1),
        )
        taken = rows[:limit]
        if taken:
            ids = [r["id"] for r in taken]
            unit.tx.execute(
                f"UPDATE message_inbox SET read_at = ? WHERE project = ? AND agent_id = ?"
                f" AND message_id IN ({placeholders(ids)})",
                (unit.now, unit.project, agent, *ids),
            )
        messages = []
        for row in taken:
            item = message_dict(row)
            item["read"], item["read_at"] = True, iso(unit.now)
            messages.append(item)
        return {"agent_id": agent, "messages": messages, "count": len(messages), "more": len(rows) > limit}

    async def get_queued(self, agent_id: str, limit: int = DRAIN_LIMIT) -> dict[str, Any]:
        """Drains the agent's unread messages without blocking: returns them and marks them read."""
        agent = validate.identifier(agent_id, "agent_id")
        count = int(validate.within(limit, "limit", LIMIT_RANGE, default=DRAIN_LIMIT))
        return await self.ctx.store.write(lambda unit: self._drain(unit, agent, count))

    async def wait_for_message(self, agent_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Blocks until a message for the agent (direct or broadcast) arrives, or `timeout_s` passes.

        Returns the unread messages (marked read), at once if some are already waiting, with
        `timed_out: true` and no messages when nothing came. Raises InvalidInput for timeout_s
        outside 0…300 and NotFound for an unregistered agent.
        """
        agent = validate.identifier(agent_id, "agent_id")
        timeout = validate.within(timeout_s, "timeout_s", WAIT_RANGE, default=DEFAULT_WAIT_S)
        keepalive = max(1.0, self.ctx.settings.agent_ttl_s / 3)
        started = time.monotonic()
        deadline = started + timeout

        def wakes(event: Event) -> bool:
            return event.kind == Kind.MESSAGE_SENT and event.actor != agent and event.addressed_to(agent)

        with self.ctx.bus.subscribe(wakes) as subscription:
            self._waiting[agent] += 1
            try:
                while True:
                    result = await self.ctx.store.write(lambda unit: self._drain(unit, agent, DRAIN_LIMIT))
                    remaining = deadline - time.monotonic()
                    if result["messages"] or remaining <= 0:
                        result["timed_out"] = not result["messages"]
                        result["waited_s"] = round(time.monotonic() - started, 3)
                        return result
                    # Wake on a message, or now and then to stay online during a long wait.
                    await subscription.next_event(timeout=min(remaining, keepalive))
            finally:
                self._waiting[agent] -= 1
                if self._waiting[agent] <= 0:
                    del self._waiting[agent]

    def waiting_agents(self) -> dict[str, Any]:
        """Live status: agents blocked in wait_for_message right now."""
        return {"waiting": sorted(self._waiting)}
