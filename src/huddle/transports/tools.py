"""The operation catalogue: every capability as one typed async function, served over MCP and REST.

Each operation only parses (its signature is the schema), calls one service method and returns
its result. Names and fields follow SPEC.md and stay compatible with the seed mcp-coordinator.
Operations belong to toolsets so a client can load only what it needs (`--tools core,threads`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from huddle.domain.validate import CURSOR_RANGE, ID_RANGE
from huddle.service import agents, files, intents, threads, updates
from huddle.service.coordinator import Coordinator
from huddle.transports.operation import Operation, between
from huddle.transports.tools_coordination import COORDINATION_FACTORIES
from huddle.transports.tools_dashboard import oversight_operations

__all__ = ["FACTORIES", "Operation", "OperationFactory", "all_operations"]

Result = dict[str, Any]
IntentKind = Literal[
    "edit", "refactor", "test", "build", "dependency_change", "git_commit", "git_push", "git_rebase", "git_merge"
]
MessageType = Literal["context", "question", "warning", "suggestion"]
ThreadStatus = Literal["open", "resolving", "resolved", "closed", "cancelled", "timeout", "max_rounds"]
Cursor = Annotated[int, between(CURSOR_RANGE)]
IntentTtl = Annotated[float, between(intents.TTL_RANGE)]
Line = Annotated[int, between(files.LINE_RANGE)]
Minutes = Annotated[float, between(files.WINDOW_MINUTES_RANGE)]


def core_operations(c: Coordinator) -> list[Operation]:
    async def register_agent(
        name: str,
        agent_id: str | None = None,
        modules: list[str] | None = None,
        branch: str | None = None,
        worktree: str | None = None,
        client: str | None = None,
    ) -> Result:
        """Register (idempotent) before anything else. Returns your agent_id and a briefing of who and what
        touches your modules."""
        return await c.agents.register(name, agent_id, modules, branch, worktree, client)

    async def heartbeat(agent_id: str, current_file: str | None = None, current_thread: str | None = None) -> Result:
        """Keep-alive (any call also counts). Optionally say which file/thread you are on."""
        return await c.agents.heartbeat(agent_id, current_file, current_thread)

    async def deregister_agent(agent_id: str) -> Result:
        """Leave: releases your locks, withdraws your intents, leaves your threads."""
        return await c.agents.deregister(agent_id)

    async def list_agents(online_only: bool = False) -> Result:
        """Registered agents with derived activity (working/waiting/idle/offline)."""
        return await c.agents.list_agents(online_only)

    async def get_agent(agent_id: str) -> Result:
        """One agent: registration, activity, active intents and held locks."""
        return await c.agents.get(agent_id)

    async def agent_activity() -> Result:
        """Activity of every online agent: working, waiting (owes a thread an answer) or idle."""
        return await c.agents.activity()

    async def wait_for_peers(
        count: Annotated[int, between(agents.PEER_COUNT_RANGE)],
        timeout_s: Annotated[float, between(agents.PEER_WAIT_RANGE)] = 30.0,
    ) -> Result:
        """Block until at least `count` agents are online (or timeout_s, max 300)."""
        return await c.agents.wait_for_peers(count, timeout_s)

    async def announce_work(
        agent_id: str,
        subject: str,
        target_files: list[str] | None = None,
        plan: str | None = None,
        kind: IntentKind = "edit",
        depends_on_files: list[str] | None = None,
        target_modules: list[str] | None = None,
        target_symbols: list[str] | None = None,
        ttl_s: IntentTtl | None = None,
        branch: str | None = None,
    ) -> Result:
        """Call BEFORE editing: scores your intent against online agents' work. verdict proceed | caution
        (both notified) | consult (thread opened: don't edit the contested files until it resolves).
        A git_* kind may name no files: it targets `branch` (default: the branch you registered with)."""
        return await c.intents.announce(
            agent_id,
            subject,
            target_files or [],
            plan,
            kind,
            depends_on_files,
            target_modules,
            target_symbols,
            ttl_s,
            branch,
        )

    async def check_conflicts(
        agent_id: str,
        target_files: list[str],
        kind: IntentKind = "edit",
        depends_on_files: list[str] | None = None,
        target_modules: list[str] | None = None,
        target_symbols: list[str] | None = None,
        branch: str | None = None,
    ) -> Result:
        """Dry run of announce_work: same scoring, nothing recorded."""
        return await c.intents.check_conflicts(
            agent_id, target_files, kind, depends_on_files, target_modules, target_symbols, branch
        )

    async def complete_work(agent_id: str, intent_id: str) -> Result:
        """Mark your intent done so it stops counting against others."""
        return await c.intents.complete(agent_id, intent_id)

    async def list_intents(agent_id: str | None = None, active_only: bool = True) -> Result:
        """Announced intents, newest first; filter by agent; active_only=false includes ended ones."""
        return await c.intents.list_intents(agent_id, active_only)

    async def update_intent(
        agent_id: str,
        intent_id: str,
        subject: str | None = None,
        plan: str | None = None,
        target_files: list[str] | None = None,
        depends_on_files: list[str] | None = None,
        target_modules: list[str] | None = None,
        target_symbols: list[str] | None = None,
        ttl_s: IntentTtl | None = None,
    ) -> Result:
        """Change your active intent (omitted fields unchanged); rescored like announce_work, may open a thread."""
        return await c.intents.update(
            agent_id, intent_id, subject, plan, target_files, depends_on_files, target_modules, target_symbols, ttl_s
        )

    async def get_updates(
        agent_id: str, cursor: Cursor = 0, limit: Annotated[int, between(updates.PAGE_RANGE)] = 200
    ) -> Result:
        """Everything addressed to you since `cursor`, in order; pass next_cursor next time. The source of
        truth behind every push."""
        return await c.updates.get_updates(agent_id, cursor, limit)

    async def log_action_summary(agent_id: str, summary: str) -> Result:
        """One-line summary of what you just did, for the timeline."""
        return await c.updates.log_action_summary(agent_id, summary)

    async def coordinator_status() -> Result:
        """Whole board: agents, active threads and intents, hot files, and more."""
        return await c.status.status()

    return [
        Operation("register_agent", "core", register_agent),
        Operation("heartbeat", "core", heartbeat),
        Operation("deregister_agent", "core", deregister_agent),
        Operation("list_agents", "core", list_agents, read_only=True),
        Operation("get_agent", "core", get_agent, read_only=True),
        Operation("agent_activity", "core", agent_activity, read_only=True),
        Operation("wait_for_peers", "core", wait_for_peers, read_only=True),
        Operation("announce_work", "core", announce_work),
        Operation("check_conflicts", "core", check_conflicts, read_only=True),
        Operation("complete_work", "core", complete_work),
        Operation("list_intents", "core", list_intents, read_only=True),
        Operation("update_intent", "core", update_intent),
        Operation("get_updates", "core", get_updates, read_only=True),
        Operation("log_action_summary", "core", log_action_summary),
        Operation("coordinator_status", "core", coordinator_status, read_only=True),
    ]


def thread_operations(c: Coordinator) -> list[Operation]:
    async def get_thread(thread_id: str, after_message_id: Cursor | None = None) -> Result:
        """A thread: status, proposal, approvals, its newest 500 messages."""
        return await c.threads.get(thread_id, after_message_id)

    async def post_to_thread(
        thread_id: str,
        agent_id: str,
        type: MessageType,
        content: str,
        in_reply_to: Annotated[int, between(ID_RANGE)] | None = None,
    ) -> Result:
        """Post context, a question, a warning or a suggestion to a thread."""
        return await c.threads.post(thread_id, agent_id, type, content, in_reply_to)

    async def propose_resolution(thread_id: str, agent_id: str, summary: str, plan: str | None = None) -> Result:
        """Participants only: put a resolution on the table for the others to approve."""
        return await c.threads.propose(thread_id, agent_id, summary, plan)

    async def approve_resolution(thread_id: str, agent_id: str) -> Result:
        """Approve the current proposal; when all participants agree the thread is resolved."""
        return await c.threads.approve(thread_id, agent_id)

    async def contest_resolution(thread_id: str, agent_id: str, reason: str) -> Result:
        """Reject the proposal with a reason: the thread reopens for another round."""
        return await c.threads.contest(thread_id, agent_id, reason)

    async def close_thread(thread_id: str, agent_id: str, summary: str | None = None) -> Result:
        """Participants: close a thread when the work is settled (ends its intent)."""
        return await c.threads.close(thread_id, agent_id, summary)

    async def cancel_thread(thread_id: str, agent_id: str, reason: str | None = None) -> Result:
        """Initiator only: cancel the thread and withdraw its intent."""
        return await c.threads.cancel(thread_id, agent_id, reason)

    async def get_thread_updates(thread_id: str, since_cursor: Cursor = 0) -> Result:
        """Events of one thread after since_cursor, with next_cursor."""
        return await c.threads.updates(thread_id, since_cursor)

    async def list_threads(
        status: ThreadStatus | None = None,
        agent_id: str | None = None,
        limit: Annotated[int, between(threads.LIST_LIMIT_RANGE)] = 100,
    ) -> Result:
        """Threads, newest first, optionally by status or member agent."""
        return await c.threads.list(status, agent_id, limit)

    async def claim_thread(thread_id: str, agent_id: str) -> Result:
        """Work stealing: atomically claim a thread's work; exactly one caller wins."""
        return await c.threads.claim(thread_id, agent_id)

    async def complete_thread(thread_id: str, agent_id: str, resolution: str) -> Result:
        """The claimer reports the claimed work done."""
        return await c.threads.complete(thread_id, agent_id, resolution)

    return [
        Operation("get_thread", "threads", get_thread, read_only=True),
        Operation("post_to_thread", "threads", post_to_thread),
        Operation("propose_resolution", "threads", propose_resolution),
        Operation("approve_resolution", "threads", approve_resolution),
        Operation("contest_resolution", "threads", contest_resolution),
        Operation("close_thread", "threads", close_thread),
        Operation("cancel_thread", "threads", cancel_thread),
        Operation("get_thread_updates", "threads", get_thread_updates, read_only=True),
        Operation("list_threads", "threads", list_threads, read_only=True),
        Operation("claim_thread", "threads", claim_thread),
        Operation("complete_thread", "threads", complete_thread),
    ]


def file_operations(c: Coordinator) -> list[Operation]:
    async def log_file_edit(
        agent_id: str, path: str, ranges: list[list[Line]] | None = None, symbols: list[str] | None = None
    ) -> Result:
        """Record an edit you made (optionally line ranges [[first, last], …] and symbols)."""
        return await c.files.log_edit(agent_id, path, ranges, symbols)

    async def start_editing(
        agent_id: str,
        path: str,
        ttl_s: Annotated[float, between(files.EDITING_TTL_RANGE)] | None = None,
        ranges: list[list[Line]] | None = None,
    ) -> Result:
        """Mark a file as being edited right now (hooks call this before a write), optionally its line ranges."""
        return await c.files.start_editing(agent_id, path, ttl_s, ranges)

    async def stop_editing(agent_id: str, path: str) -> Result:
        """Clear the in-flight edit marker."""
        return await c.files.stop_editing(agent_id, path)

    async def hot_files(
        since_minutes: Minutes | None = None, limit: Annotated[int, between(files.LIMIT_RANGE)] = 50
    ) -> Result:
        """Files most agents edited recently; contested when more than one."""
        return await c.files.hot_files(since_minutes, limit)

    async def get_session_files(agent_id: str) -> Result:
        """Files an agent edited in its current session."""
        return await c.files.session_files(agent_id)

    async def check_file_conflict(path: str, agent_id: str, within_minutes: Minutes | None = None) -> Result:
        """Who else edited this file recently or is editing it now."""
        return await c.files.check_file_conflict(path, agent_id, within_minutes)

    async def set_dependency_map(modules: dict[str, dict[str, list[str]]], agent_id: str | None = None) -> Result:
        """Replace the module map: {"auth": {"depends_on": ["db"], "paths": ["src/auth/"]}, …}."""
        return await c.depmap.set_map(modules, agent_id)

    async def get_blast_radius(module: str | None = None, path: str | None = None) -> Result:
        """Modules affected (transitively) by a change to a module or a path."""
        return await c.depmap.blast_radius(module, path)

    async def get_module_info(module: str) -> Result:
        """A module's paths, dependencies and dependents."""
        return await c.depmap.module_info(module)

    return [
        Operation("log_file_edit", "files", log_file_edit),
        Operation("start_editing", "files", start_editing),
        Operation("stop_editing", "files", stop_editing),
        Operation("hot_files", "files", hot_files, read_only=True),
        Operation("get_session_files", "files", get_session_files, read_only=True),
        Operation("check_file_conflict", "files", check_file_conflict, read_only=True),
        Operation("set_dependency_map", "files", set_dependency_map),
        Operation("get_blast_radius", "files", get_blast_radius, read_only=True),
        Operation("get_module_info", "files", get_module_info, read_only=True),
    ]


OperationFactory = Callable[[Coordinator], list[Operation]]
FACTORIES: list[OperationFactory] = [
    core_operations,
    thread_operations,
    file_operations,
    *COORDINATION_FACTORIES,
    oversight_operations,
]


def all_operations(c: Coordinator) -> list[Operation]:
    return [op for factory in FACTORIES for op in factory(c)]
