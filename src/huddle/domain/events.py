"""Events: one record per state change, persisted with a monotonic cursor.

The event log is the truth (`get_updates` replays it); MQTT, SSE, MCP notifications and hook
context are hints delivered after commit. `audience` says whose inbox an event lands in: agent ids,
or `*` for everyone. `actor` is the agent that caused it, so nobody is woken by their own action.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

EVERYONE = "*"


class Kind:
    """Event kinds. Dotted names group them; push channels map them to topics."""

    AGENT_ONLINE = "agent.online"
    AGENT_OFFLINE = "agent.offline"
    AGENT_DEREGISTERED = "agent.deregistered"
    INTENT_ANNOUNCED = "intent.announced"
    INTENT_ENDED = "intent.ended"
    INTENT_UPDATED = "intent.updated"  # update_intent: new targets, rescored
    IMPACT_AWARENESS = "impact.awareness"
    THREAD_OPENED = "thread.opened"
    THREAD_MESSAGE = "thread.message"
    THREAD_PROPOSAL = "thread.proposal"
    THREAD_APPROVAL = "thread.approval"
    THREAD_STATUS = "thread.status"
    THREAD_CLAIMED = "thread.claimed"
    THREAD_COMPLETED = "thread.completed"
    THREAD_RESPONDENT_LEFT = "thread.respondent_left"
    ACTION_SUMMARY = "action.summary"
    FILE_EDITED = "file.edited"
    FILE_EDITING = "file.editing"
    DEPENDENCY_MAP = "depmap.updated"
    MERGE_CONFLICT = "merge.conflict_predicted"  # git merge-tree found a conflict between two agents
    LOCK_ACQUIRED = "lock.acquired"  # granted now, or later to a queued request (data.queued)
    LOCK_RENEWED = "lock.renewed"
    LOCK_RELEASED = "lock.released"
    LOCK_EXPIRED = "lock.expired"  # addressed to the former holder: its lease was lost
    LOCK_QUEUED = "lock.queued"  # a request waits; addressed to it and to the holders in its way
    LOCK_WAIT_ENDED = "lock.wait_ended"  # a queued request gave up (timeout or disconnect)
    MESSAGE_SENT = "message.sent"  # addressed to the recipient, or * for a broadcast
    CONTEXT_SHARED = "context.shared"
    CONTEXT_DELETED = "context.deleted"
    TASK_ADDED = "task.added"
    TASK_AVAILABLE = "task.available"  # became claimable after it was added (deps done, reset, released)
    TASK_CLAIMED = "task.claimed"
    TASK_UPDATED = "task.updated"
    TASK_RESET = "task.reset"  # back to pending: reset_task, or its claimer went away
    WORKER_CLAIMED = "worker.claimed"
    WORKER_RELEASED = "worker.released"


@dataclass(frozen=True)
class Event:
    cursor: int
    ts: float
    project: str
    kind: str
    actor: str | None
    audience: tuple[str, ...]
    thread_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def iso_ts(self) -> str:
        return datetime.fromtimestamp(self.ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    @functools.cached_property
    def _addressees(self) -> frozenset[str]:
        # An event to a crowd is tested once per subscriber: a set, not a scan of 1,000 ids each time.
        return frozenset(self.audience)

    def addressed_to(self, agent_id: str) -> bool:
        addressees = self._addressees
        return EVERYONE in addressees or agent_id in addressees

    def to_dict(self) -> dict[str, Any]:
        """The wire form shared by get_updates, SSE and MQTT payloads."""
        return {
            "event": self.kind,
            "cursor": self.cursor,
            "ts": self.iso_ts,
            "agent_id": self.actor,
            "thread_id": self.thread_id,
            "audience": list(self.audience),
            **self.data,
        }


def iso(ts: float | None) -> str | None:
    """Epoch seconds → ISO-8601 UTC with a Z, as every response shows times."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
