"""Claude Code hooks: what Huddle answers at each point of a session (SPEC F-34, F-64, F-80…F-82).

Both hook forms end here: `"type": "http"` hooks POST the payload straight to the server, and the
command form (`huddle hook claude EVENT`) forwards its stdin to the same route. The answer is the
hook output Claude Code reads (see `huddle.domain.claude_hooks`).

Identity (F-82): a hook acts for `X-Huddle-Agent` (the `HUDDLE_AGENT` variable of the session) when
given, else for the agent its session was mapped to, else for `claude-` + the session id's first 8
characters. SessionStart registers that agent and tells it its id in `additionalContext`, so its
MCP calls use the same id.

Pending events (F-64) are delivered into the session as `additionalContext` at UserPromptSubmit
and, when there is news, at PreToolUse. Each agent has one delivery cursor stored here, moved in
the same transaction that reads the events, so each event is delivered exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huddle.domain import claude_hooks as wire
from huddle.domain import validate
from huddle.errors import InvalidInput, NotFound
from huddle.service.hook_paths import HookPaths, git_output
from huddle.storage.base import AUDIENCE_EVENTS, Unit, addressed_to, event_from_row, latest_cursor

if TYPE_CHECKING:
    from huddle.service.coordinator import Coordinator

log = logging.getLogger(__name__)

CLIENT = "claude-code"
DELIVERY_SCAN = 200
DELIVERY_LINES = 20
BRIEFING_ITEMS = 15
MAX_READ_BYTES = 2_000_000


class ClaudeHookService:
    """One method per hook event; `handle` dispatches the event named in the route."""

    def __init__(self, coordinator: Coordinator):
        self.c = coordinator
        self.ctx = coordinator.ctx
        self.paths = HookPaths(self.ctx.repo_root)

    async def handle(self, event: str, payload: Mapping[str, Any], declared_agent: str | None) -> dict[str, Any]:
        """Answers one hook call with the JSON Claude Code expects. Raises InvalidInput for a bad payload."""
        name = wire.event_name(event)
        wire.check_payload(payload)
        agent, registered, news_waiting = await self.agent_for(payload, declared_agent, peek_news=name == "PreToolUse")
        if name == "SessionStart":
            return await self.session_start(agent, payload)
        if name == "SessionEnd":
            return await self.session_end(agent, payload)
        if not registered:  # hooks installed mid-session (no SessionStart seen) still act for a registered agent
            await self._register(agent, payload)
        if name == "PreToolUse":
            return await self.pre_tool_use(agent, payload, news_waiting)
        if name == "PostToolUse":
            return await self.post_tool_use(agent, payload)
        if name == "PostToolUseFailure":
            return await self.post_tool_use_failure(agent, payload)
        return wire.context_output("UserPromptSubmit", await self.deliver(agent))

    # -- identity -------------------------------------------------------------------------------

    async def agent_for(
        self, payload: Mapping[str, Any], declared: str | None, *, peek_news: bool = False
    ) -> tuple[str, bool, bool]:
        """(agent, registered, news waiting) for a hook call, in one read.

        The agent is the declared id, else the session's mapped agent, else the derived id; a new or
        changed mapping is recorded. `news waiting` is only looked at when `peek_news` is set.
        """
        session = wire.session_id(payload)
        chosen = validate.identifier(declared, "X-Huddle-Agent") if declared else None
        cwd = payload.get("cwd") if isinstance(payload.get("cwd"), str) else ""

        def read(unit: Unit) -> tuple[str | None, str, bool, bool]:
            row = unit.tx.one(
                "SELECT agent_id FROM client_sessions WHERE project = ? AND client = ? AND session_id = ?",
                (unit.project, CLIENT, session),
            )
            known = str(row["agent_id"]) if row else None
            agent = chosen or known or wire.derived_agent_id(session)
            status = unit.tx.one("SELECT status FROM agents WHERE project = ? AND agent_id = ?", (unit.project, agent))
            registered = status is not None and status["status"] != "deregistered"
            news = peek_news and registered and bool(_scan(unit, agent)[0])
            return known, agent, registered, news

        known, agent, registered, news = await self.ctx.store.read(read)
        if agent != known:

            def txn(unit: Unit) -> None:
                unit.tx.execute(
                    "INSERT INTO client_sessions (project, client, session_id, agent_id, cwd, started_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (project, client, session_id)"
                    " DO UPDATE SET agent_id = excluded.agent_id, cwd = excluded.cwd, ended_at = NULL",
                    (unit.project, CLIENT, session, agent, cwd or "", unit.now),
                )

            await self.ctx.store.write(txn)
        return agent, registered, news

    async def agent_in(self, directory: str) -> str | None:
        """The agent of the newest live client session started in `directory` or below it, if exactly one."""
        agents = await self.agents_in(directory)
        return agents[0] if len(agents) == 1 else None

    async def agents_in(self, directory: str) -> list[str]:
        """The agents of the live client sessions started in `directory` or below it, newest first."""
        root = directory.rstrip("/") or "/"

        def read(unit: Unit) -> list[str]:
            rows = unit.tx.all(
                "SELECT s.agent_id FROM client_sessions s JOIN agents a ON a.project = s.project"
                " AND a.agent_id = s.agent_id WHERE s.project = ? AND s.ended_at IS NULL AND a.status = 'online'"
                " AND (s.cwd = ? OR substr(s.cwd, 1, ?) = ?) ORDER BY s.started_at DESC",
                (unit.project, root, len(root) + 1, root.rstrip("/") + "/"),
            )
            return list(dict.fromkeys(str(r["agent_id"]) for r in rows))

        return await self.ctx.store.read(read)

    async def _register(self, agent: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        cwd = payload.get("cwd") if isinstance(payload.get("cwd"), str) else None
        branch = await _git_branch(cwd) if cwd else None
        return await self.c.agents.register(name=agent, agent_id=agent, branch=branch, worktree=cwd, client=CLIENT)

    # -- events ---------------------------------------------------------------------------------

    async def session_start(self, agent: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Registers the agent and answers with its briefing.

        A new agent's delivery cursor starts now (the briefing covers the past). An agent that already
        has one (resume, compact, clear, a restarted session with the same HUDDLE_AGENT) gets the news
        still pending for it in the same context, so nothing is skipped.
        """
        registered = await self._register(agent, payload)

        def txn(unit: Unit) -> None:
            unit.tx.execute(
                "INSERT INTO hook_cursors (project, agent_id, cursor) VALUES (?, ?, ?)"
                " ON CONFLICT (project, agent_id) DO NOTHING",
                (unit.project, agent, latest_cursor(unit)),
            )

        await self.ctx.store.write(txn)
        news = await self.deliver(agent)
        # The briefing's module-based sections are empty for an agent that named no modules, so
        # the session also learns the live leases and the work other agents announced.
        leases = [lock for lock in (await self.c.locks.list_locks())["locks"] if lock["agent_id"] != agent]
        work = [i for i in (await self.c.intents.list_intents())["intents"] if i["agent_id"] != agent]
        text = briefing_text(agent, registered["briefing"], leases[:BRIEFING_ITEMS], work[:BRIEFING_ITEMS])
        return wire.context_output("SessionStart", f"{text}\n\n{news}" if news else text)

    async def session_end(self, agent: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Deregisters the agent: leases released, intents withdrawn, tasks returned."""
        session = wire.session_id(payload)

        def txn(unit: Unit) -> None:
            unit.tx.execute(
                "UPDATE client_sessions SET ended_at = ? WHERE project = ? AND client = ? AND session_id = ?",
                (unit.now, unit.project, CLIENT, session),
            )

        await self.ctx.store.write(txn)
        with contextlib.suppress(NotFound):  # never registered, or already gone: nothing to release
            await self.c.agents.deregister(agent)
        return {}

    async def pre_tool_use(self, agent: str, payload: Mapping[str, Any], news_waiting: bool = True) -> dict[str, Any]:
        """deny on another agent's exclusive lease, ask on a colliding intent or in-flight edit, else allow.

        Marks the file in flight (with the lines the edit will touch, when they can be found) only
        when the edit is allowed: an edit the user may still decline (ask) or that is denied must not
        make others wait. PostToolUse / PostToolUseFailure end the mark. Paths in linked worktrees
        or through symlinks count as the repository's; files outside it are none of Huddle's business.
        """
        raw = wire.edited_path(payload)
        news = await self.deliver(agent) if news_waiting else None
        if raw is None:
            return wire.decision_output("allow", "", news)
        path = await self.repo_path(raw, payload)
        if path is None:
            return wire.decision_output("allow", "", news)
        lock = await self.c.locks.check_lock(path)
        holders = [
            h for h in lock["holders"] if h["mode"] == "exclusive" and h["agent_id"] != agent and h["expires_in_s"] > 0
        ]
        if holders:
            return wire.decision_output("deny", deny_reason(path, holders), news)
        # Every impact, not the strongest ten an agent's answer shows: what makes the hook ask must not
        # be cut off by a crowd of lesser ones; `collisions` bounds the text instead.
        conflicts = await self.c.intents.check_conflicts(agent, [path], limit=None)
        ask, warn = collisions(conflicts["impacts"])
        context = "\n".join(x for x in (news, warn) if x) or None
        if ask:
            return wire.decision_output("ask", f"Huddle: {path}: {ask}", context)
        on_disk = Path(raw) if os.path.isabs(raw) else self.ctx.settings.repo_path / path
        ranges = wire.planned_ranges(payload, _read_text(on_disk))
        await self.c.files.start_editing(agent, path, ranges=ranges)
        return wire.decision_output("allow", "", context)

    async def repo_path(self, raw: str, payload: Mapping[str, Any]) -> str | None:
        """The file's one name (through worktrees and symlinks, service/repo_aliases.py); None when it is
        outside the repository or names no file (a symlink loop): then there is nothing to coordinate."""
        cwd = payload.get("cwd") if isinstance(payload.get("cwd"), str) else None
        field = "tool_input.file_path"
        try:
            name = await self.paths.relative(raw, cwd, field)
        except InvalidInput:
            # Outside the repository and its checkouts — unless a symlink in the repository leads
            # there. Finding out may walk the repository (service/repo_aliases.py): off the event loop.
            outside = self.paths.absolute(raw, cwd)
            if outside is None:
                return None
            try:
                return await asyncio.to_thread(self.ctx.path, outside, field)
            except InvalidInput:
                return None
        try:
            return self.ctx.path(name, field)
        except InvalidInput:
            return None

    async def post_tool_use(self, agent: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Logs the edit with the lines it changed and ends the in-flight mark."""
        raw = wire.edited_path(payload)
        path = await self.repo_path(raw, payload) if raw is not None else None
        if path is None:
            return {}
        result = await self.c.files.log_edit(agent, path, wire.applied_ranges(payload))
        await self.c.files.stop_editing(agent, path)
        others = result.get("also_edited_by") or []
        if others:
            return wire.context_output(
                "PostToolUse",
                f"Huddle: {', '.join(others)} also worked on {path} recently or is editing it now; check with them"
                " (get_updates, send_message).",
            )
        return {}

    async def post_tool_use_failure(self, agent: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """A failed or interrupted edit changed nothing: its in-flight mark ends, no edit is logged."""
        raw = wire.edited_path(payload)
        path = await self.repo_path(raw, payload) if raw is not None else None
        if path is not None:
            await self.c.files.stop_editing(agent, path)
        return {}

    async def deliver(self, agent: str) -> str | None:
        """The agent's undelivered events as text, each delivered once; None when there is nothing new."""
        agent = validate.identifier(agent, "agent_id")

        def txn(unit: Unit) -> list[str]:
            lines, after, last = _scan(unit, agent)
            if last != after or not unit.tx.one(
                "SELECT 1 AS x FROM hook_cursors WHERE project = ? AND agent_id = ?", (unit.project, agent)
            ):
                unit.tx.execute(
                    "INSERT INTO hook_cursors (project, agent_id, cursor) VALUES (?, ?, ?)"
                    " ON CONFLICT (project, agent_id) DO UPDATE SET cursor = excluded.cursor",
                    (unit.project, agent, last),
                )
            return lines

        lines = await self.ctx.store.write(txn)
        if not lines:
            return None
        shown = lines[:DELIVERY_LINES]
        more = len(lines) - len(shown)
        tail = [f"… and {more} more: call get_updates (agent_id={agent!r})"] if more else []
        return "Huddle news for you:\n" + "\n".join(f"- {line}" for line in [*shown, *tail])


def _scan(unit: Unit, agent: str) -> tuple[list[str], int, int]:
    """(lines worth delivering, cursor delivered up to, last cursor scanned) for the agent's pending events."""
    row = unit.tx.one("SELECT cursor FROM hook_cursors WHERE project = ? AND agent_id = ?", (unit.project, agent))
    if row is not None:
        after = int(row["cursor"])
    else:
        # First delivery without a SessionStart: start at this session, not at the dawn of time.
        start = unit.tx.one(
            "SELECT session_start FROM agents WHERE project = ? AND agent_id = ?", (unit.project, agent)
        )
        first = unit.tx.one(
            "SELECT MIN(cursor) AS c FROM events WHERE project = ? AND ts >= ?",
            (unit.project, start["session_start"] if start else unit.now),
        )
        after = int(first["c"]) - 1 if first and first["c"] is not None else latest_cursor(unit)
    mine, params = addressed_to(unit, agent)
    rows = unit.tx.all(
        f"SELECT e.* FROM {AUDIENCE_EVENTS} WHERE {mine} AND a.cursor > ? ORDER BY a.cursor LIMIT ?",
        (*params, after, DELIVERY_SCAN),
    )
    lines = []
    for r in rows:
        event = event_from_row(r)
        if event.actor == agent:
            continue
        line = wire.describe_event(event.to_dict())
        if line:
            lines.append(line)
    return lines, after, int(rows[-1]["cursor"]) if rows else after


def deny_reason(path: str, holders: list[dict[str, Any]]) -> str:
    h = holders[0]
    where = "" if h["path"] == path else f" (through its lease on {h['path']})"
    return (
        f"Huddle: {path} is leased exclusively by {h['agent_id']}{where} until {h['expires_at']}. "
        f"Do not edit it now: wait for {h['agent_id']} to release it (acquire_lock with wait_s queues you), "
        f"or ask them with send_message(to_agent={h['agent_id']!r}). A human can override by releasing the lease "
        f"(`huddle locks release {h['path']} --agent {h['agent_id']}`)."
    )


def collisions(impacts: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """(reason to ask, warning) from check_conflicts impacts: another agent's active intent on the
    file or its edit in flight asks the user; other overlaps (recent edits, modules) only warn."""
    asks, warns = [], []
    for impact in impacts:
        for ev in impact["evidence"]:
            hot = ev["layer"] == "0a" or (ev["layer"] == "1" and ev.get("in_flight"))
            if hot and impact["score"] >= 90:
                what = ev["reason"]
                if ev.get("subject"):
                    what += f" ({ev.get('intent_id')}: {ev['subject']})"
                asks.append(f"{impact['agent_id']}: {what}")
            elif ev["layer"] != "L":
                warns.append(f"{impact['agent_id']}: {ev['reason']}")
    ask = None
    if asks:
        ask = (
            "collides with " + _listed(asks) + ". Coordinate first: announce_work opens a consultation thread, "
            "or send_message to them."
        )
    warn = ("Huddle: overlapping work — " + _listed(warns)) if warns else None
    return ask, warn


HOOK_LISTS_UP_TO = 10


def _listed(items: list[str]) -> str:
    """At most HOOK_LISTS_UP_TO items, then how many more: a crowd must not flood the agent's context."""
    shown = "; ".join(items[:HOOK_LISTS_UP_TO])
    more = len(items) - HOOK_LISTS_UP_TO
    return shown + (f"; and {more} more" if more > 0 else "")


def briefing_text(
    agent: str,
    briefing: Mapping[str, Any],
    leases: Sequence[Mapping[str, Any]] = (),
    work: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The SessionStart briefing as the agent reads it."""
    lines = [
        f"Huddle coordination: your agent_id is {agent!r}. Pass agent_id={agent!r} in every Huddle MCP tool call "
        "(do not call register_agent with another id).",
    ]
    peers = briefing.get("online_agents") or []
    if peers:
        lines.append("Online agents:")
        for a in peers:
            doing = f", editing {a['current_file']}" if a.get("current_file") else ""
            lines.append(f"- {a['agent_id']} ({a['activity']}{doing})")
    else:
        lines.append("No other agent is online.")
    for intent in briefing.get("intents_touching_your_modules") or []:
        files = ", ".join(intent["target_files"])
        lines.append(f"- {intent['agent_id']} works on {intent['subject']!r} ({files})")
    for thread in briefing.get("your_open_threads") or []:
        lines.append(f"- open consultation {thread['thread_id']}: {thread['subject']} ({thread['status']})")
    if work:
        lines.append("Work announced by other agents:")
        for i in work:
            lines.append(f"- {i['agent_id']}: {i['subject']} ({', '.join(i['target_files'])})")
    if leases:
        lines.append("Leases held by other agents:")
        for lock in leases:
            lines.append(f"- {lock['path']}: {lock['mode']} by {lock['agent_id']} until {lock['expires_at']}")
    lines.append(
        "Before editing, call announce_work with your target files. Edits into files another agent leases "
        "exclusively are denied by the hook; news for you arrives with your prompts."
    )
    return "\n".join(lines)


def _read_text(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_READ_BYTES:
            return None
        return path.read_text(errors="replace")
    except OSError:
        return None


async def _git_branch(cwd: str) -> str | None:
    """The branch checked out in the session's directory (for git-operation checks); None if unknown."""
    branch = (await git_output(cwd, "rev-parse", "--abbrev-ref", "HEAD") or "").strip()
    return branch if branch and branch != "HEAD" else None


def parse_body(body: bytes) -> dict[str, Any]:
    """A hook payload: a JSON object, or InvalidInput saying so (the route bounds nesting first)."""
    try:
        payload = json.loads(body) if body.strip() else None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        raise InvalidInput("the hook payload must be a JSON object (Claude Code's hook input)", field="body")
    return payload
