"""Operations for the coordination primitives: toolsets `locks`, `messages`, `context`, `tasks`.

Same shape as transports/tools.py: each operation only parses (its signature is the schema) and
calls one service method. Names follow SPEC.md (F-30 … F-53).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import WithJsonSchema

from huddle.domain.validate import ID_RANGE
from huddle.service import locks, messages, shared_context, tasks, workers
from huddle.service.coordinator import Coordinator
from huddle.transports.operation import Operation, Result, between

LockMode = Literal["exclusive", "shared", "intent"]
Channel = Literal["general", "coordination", "ideas", "alerts", "git"]
Priority = Literal["low", "normal", "high", "urgent"]
ContextType = Literal["decision", "discovery", "convention", "blocker", "note"]
TaskStatus = Literal["pending", "claimed", "in_progress", "done", "failed"]
TaskUpdate = Literal["in_progress", "done", "failed"]
LockTtl = Annotated[float, between(locks.TTL_RANGE)]
RecordId = Annotated[int, between(ID_RANGE)]
TaskLimit = Annotated[int, between(tasks.LIST_LIMIT_RANGE)]
TaskPriority = Annotated[int, between(tasks.PRIORITY_RANGE)]
# add_tasks items stay plain objects (the task service names a wrong or unknown field itself); the
# schema still describes them, so a client sees each field, and priority's bounds are checked. The
# optional fields take null, as add_task's do.
TaskItems = Annotated[
    list[dict[str, Any]],
    WithJsonSchema(
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "task_id": {"type": "string"},
                    "description": {"type": "string"},
                    "depends_on": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
                    "priority": {
                        "anyOf": [
                            {
                                "type": "integer",
                                "minimum": tasks.PRIORITY_RANGE[0],
                                "maximum": tasks.PRIORITY_RANGE[1],
                            },
                            {"type": "null"},
                        ]
                    },
                    "payload": {"anyOf": [{"type": "object"}, {"type": "null"}]},
                },
                "required": ["task_id", "description"],
            },
        }
    ),
]


def lock_operations(c: Coordinator) -> list[Operation]:
    async def acquire_lock(
        agent_id: str,
        path: str,
        mode: LockMode = "exclusive",
        ttl_s: LockTtl | None = None,
        wait_s: Annotated[float, between(locks.WAIT_RANGE)] | None = None,
    ) -> Result:
        """Lease a file, dir (src/auth/) or glob before editing. exclusive: nobody else; shared: others share,
        none exclusive; intent: only warns. Returns {granted, fencing_token, expires_at} or {granted: false,
        holders, reason}. Same path again renews."""
        return await c.locks.acquire(agent_id, path, mode, ttl_s, wait_s)

    async def release_lock(agent_id: str, path: str) -> Result:
        """Release your lock on a path (as you acquired it); queued requests are granted at once."""
        return await c.locks.release(agent_id, path)

    async def renew_lock(agent_id: str, path: str, ttl_s: LockTtl | None = None) -> Result:
        """Extend your lease (same fencing token). Fails if it already expired: acquire again."""
        return await c.locks.renew(agent_id, path, ttl_s)

    async def list_locks(agent_id: str | None = None, path: str | None = None) -> Result:
        """Live locks and queued requests; filter by holder and/or a path they overlap."""
        return await c.locks.list_locks(agent_id, path)

    async def check_lock(path: str, fencing_token: RecordId | None = None) -> Result:
        """Who holds or waits for anything overlapping a file, directory or glob, and which modes you could get.
        With fencing_token: is that token still current there (for a fenced write)."""
        return await c.locks.check_lock(path, fencing_token)

    return [
        Operation("acquire_lock", "locks", acquire_lock),
        Operation("release_lock", "locks", release_lock),
        Operation("renew_lock", "locks", renew_lock),
        Operation("list_locks", "locks", list_locks, read_only=True),
        Operation("check_lock", "locks", check_lock, read_only=True),
    ]


def message_operations(c: Coordinator) -> list[Operation]:
    async def send_message(
        from_agent: str,
        content: str,
        to_agent: str | None = None,
        channel: Channel = "general",
        priority: Priority = "normal",
        thread_id: str | None = None,
    ) -> Result:
        """Message one agent, or every agent when to_agent is null. Optionally about a thread (T-12)."""
        return await c.messages.send(from_agent, content, to_agent, channel, priority, thread_id)

    async def list_messages(
        agent_id: str,
        unread_only: bool = False,
        channel: Channel | None = None,
        limit: Annotated[int, between(messages.LIMIT_RANGE)] = 100,
    ) -> Result:
        """Your inbox (direct and broadcast), oldest first; does not mark anything read."""
        return await c.messages.list_messages(agent_id, unread_only, channel, limit)

    async def mark_read(agent_id: str, message_ids: list[str | RecordId]) -> Result:
        """Mark messages of your inbox read (ids like M-12)."""
        return await c.messages.mark_read(agent_id, message_ids)

    async def wait_for_message(
        agent_id: str, timeout_s: Annotated[float, between(messages.WAIT_RANGE)] = 60.0
    ) -> Result:
        """Block until a message for you arrives (or timeout_s); returns your unread messages, most urgent
        first, and marks them read."""
        return await c.messages.wait_for_message(agent_id, timeout_s)

    async def get_queued_messages(agent_id: str, limit: Annotated[int, between(messages.LIMIT_RANGE)] = 100) -> Result:
        """Drain your unread messages without blocking (most urgent first); they are marked read."""
        return await c.messages.get_queued(agent_id, limit)

    return [
        Operation("send_message", "messages", send_message),
        Operation("list_messages", "messages", list_messages, read_only=True),
        Operation("mark_read", "messages", mark_read),
        Operation("wait_for_message", "messages", wait_for_message),
        Operation("get_queued_messages", "messages", get_queued_messages),
    ]


def context_operations(c: Coordinator) -> list[Operation]:
    async def share_context(agent_id: str, type: ContextType, content: str, tags: list[str] | None = None) -> Result:
        """Share a decision, discovery, convention, blocker or note with every agent (tags optional)."""
        return await c.shared_context.share(agent_id, type, content, tags)

    async def query_context(
        type: ContextType | None = None,
        keyword: str | None = None,
        tag: str | None = None,
        agent_id: str | None = None,
        limit: Annotated[int, between(shared_context.LIMIT_RANGE)] = 50,
    ) -> Result:
        """Search shared context: full-text keyword (word prefixes, all must match), type, tag, author."""
        return await c.shared_context.query(type, keyword, tag, agent_id, limit)

    async def delete_context(id: str | RecordId, agent_id: str) -> Result:
        """Delete a context entry you shared (C-12); only its author may."""
        return await c.shared_context.delete(id, agent_id)

    return [
        Operation("share_context", "context", share_context),
        Operation("query_context", "context", query_context, read_only=True),
        Operation("delete_context", "context", delete_context),
    ]


def task_operations(c: Coordinator) -> list[Operation]:
    async def add_task(
        task_id: str,
        description: str,
        depends_on: list[str] | None = None,
        priority: TaskPriority = 0,
        payload: dict[str, Any] | None = None,
        agent_id: str | None = None,
    ) -> Result:
        """Add a task to the board; depends_on names existing tasks (no cycles). Re-adding it unchanged is a
        no-op."""
        return await c.tasks.add(task_id, description, depends_on, priority, payload, agent_id)

    async def add_tasks(tasks: TaskItems, agent_id: str | None = None) -> Result:
        """Add many tasks at once ({task_id, description, depends_on?, priority?, payload?}); they may
        depend on each other in any order. All or nothing."""
        return await c.tasks.add_many(tasks, agent_id)

    async def list_tasks(status: TaskStatus | None = None, limit: TaskLimit = 500) -> Result:
        """The task board, oldest first, with counts per status."""
        return await c.tasks.list(status, limit)

    async def get_available_tasks(limit: TaskLimit = 100) -> Result:
        """Tasks you could claim now (every dependency done, unclaimed), best first."""
        return await c.tasks.available(limit)

    async def claim_task(agent_id: str, task_id: str | None = None) -> Result:
        """Atomically claim a task (without task_id: the best available one); exactly one caller wins."""
        return await c.tasks.claim(agent_id, task_id)

    async def update_task(
        task_id: str, agent_id: str, status: TaskUpdate, output: str | None = None, error: str | None = None
    ) -> Result:
        """Claimer only: report in_progress, done (unblocks dependants) or failed (with error)."""
        return await c.tasks.update(task_id, agent_id, status, output, error)

    async def reset_task(task_id: str, agent_id: str | None = None) -> Result:
        """Make a failed or abandoned task (claimer offline or gone) available again."""
        return await c.tasks.reset(task_id, agent_id)

    async def claim_worker_slot(agent_id: str) -> Result:
        """Take a worker slot (limited pool, default 5); returns your slot number, or claimed: false."""
        return await c.workers.claim(agent_id)

    async def release_worker_slot(
        agent_id: str, slot: Annotated[int, between(workers.SLOT_RANGE)] | None = None
    ) -> Result:
        """Give your worker slot back."""
        return await c.workers.release(agent_id, slot)

    async def get_workers() -> Result:
        """Every worker slot: free, or held by whom and on which tasks."""
        return await c.workers.workers()

    return [
        Operation("add_task", "tasks", add_task),
        Operation("add_tasks", "tasks", add_tasks),
        Operation("list_tasks", "tasks", list_tasks, read_only=True),
        Operation("get_available_tasks", "tasks", get_available_tasks, read_only=True),
        Operation("claim_task", "tasks", claim_task),
        Operation("update_task", "tasks", update_task),
        Operation("reset_task", "tasks", reset_task),
        Operation("claim_worker_slot", "tasks", claim_worker_slot),
        Operation("release_worker_slot", "tasks", release_worker_slot),
        Operation("get_workers", "tasks", get_workers, read_only=True),
    ]


COORDINATION_FACTORIES: list[Callable[[Coordinator], list[Operation]]] = [
    lock_operations,
    message_operations,
    context_operations,
    task_operations,
]
