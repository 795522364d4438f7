"""Claude Code hook payloads in, hook outputs out: the documented wire format, nothing else.

Input (on stdin for command hooks, as the POST body for http hooks): every event carries
`session_id`, `transcript_path`, `cwd` and `hook_event_name`; PreToolUse/PostToolUse add
`tool_name`, `tool_input` (and PostToolUse `tool_response`; PostToolUseFailure, sent when the tool
failed or was interrupted, has `error` instead), UserPromptSubmit adds `prompt`,
SessionStart `source`, SessionEnd `reason`. Output is JSON with `hookSpecificOutput`
(`hookEventName`, `permissionDecision` allow|deny|ask + `permissionDecisionReason` for
PreToolUse, `additionalContext`) and the common `systemMessage`.

Pure functions: no I/O; the service reads files and calls these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from huddle.errors import InvalidInput

EVENTS = ("SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "PostToolUseFailure", "SessionEnd")
TOOL_EVENTS = ("PreToolUse", "PostToolUse", "PostToolUseFailure")
EDIT_TOOLS = ("Edit", "Write", "MultiEdit", "NotebookEdit")
EDIT_MATCHER = "|".join(EDIT_TOOLS)
MAX_RANGES = 50

Ranges = list[list[int]]


def event_name(raw: str) -> str:
    """The event as Claude Code spells it; case-insensitive for the URL path."""
    for name in EVENTS:
        if raw.lower() == name.lower():
            return name
    raise InvalidInput(f"unknown hook event {raw!r}; use one of {', '.join(EVENTS)}", field="event")


def session_id(payload: Mapping[str, Any]) -> str:
    value = payload.get("session_id")
    if value is not None and not isinstance(value, str):
        raise InvalidInput("session_id must be a string, as Claude Code sends it", field="session_id")
    if value is None or not value.strip():
        raise InvalidInput(
            "session_id is missing from the hook payload; send Claude Code's hook input unchanged", field="session_id"
        )
    return value.strip()


def derived_agent_id(session: str) -> str:
    """The agent id of a session that declares none: `claude-` + the session id's first 8 characters."""
    return "claude-" + (re.sub(r"[^A-Za-z0-9]", "", session)[:8].lower() or "session")


def tool_input(payload: Mapping[str, Any]) -> dict[str, Any]:
    value = payload.get("tool_input")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("tool_input must be a JSON object, as Claude Code sends it", field="tool_input")
    return value


_TEXT_FIELDS = ("file_path", "notebook_path", "content", "old_string", "new_string")


def check_payload(payload: Mapping[str, Any]) -> None:
    """Refuses a payload whose fields have shapes Claude Code never sends (InvalidInput naming the field)."""
    for key in ("cwd", "tool_name", "source", "prompt"):
        if payload.get(key) is not None and not isinstance(payload[key], str):
            raise InvalidInput(f"{key} must be a string, as Claude Code sends it", field=key)
    args = tool_input(payload)
    for key in _TEXT_FIELDS:
        if args.get(key) is not None and not isinstance(args[key], str):
            raise InvalidInput(f"tool_input.{key} must be a string", field=f"tool_input.{key}")
    edits = args.get("edits")
    if edits is not None:
        if not isinstance(edits, list):
            raise InvalidInput("tool_input.edits must be a list of {old_string, new_string}", field="tool_input.edits")
        for i, item in enumerate(edits):
            if not isinstance(item, dict):
                raise InvalidInput(f"tool_input.edits[{i}] must be an object", field=f"tool_input.edits[{i}]")
            for key in ("old_string", "new_string"):
                if item.get(key) is not None and not isinstance(item[key], str):
                    raise InvalidInput(f"tool_input.edits[{i}].{key} must be a string", field=f"tool_input.edits[{i}]")
    response = payload.get("tool_response")
    if response is not None and payload.get("tool_name") in EDIT_TOOLS and not isinstance(response, dict | str):
        raise InvalidInput("tool_response must be an object, as Claude Code sends it", field="tool_response")


def edited_path(payload: Mapping[str, Any]) -> str | None:
    """The file an edit tool writes (`file_path`, or `notebook_path` for NotebookEdit); None for other tools."""
    if payload.get("tool_name") not in EDIT_TOOLS:
        return None
    args = tool_input(payload)
    path = args.get("file_path") or args.get("notebook_path")
    return path if isinstance(path, str) and path else None


def _span(first: int, count: int) -> list[int]:
    return [first, first + max(count, 1) - 1]


def _lines_of(text: str) -> int:
    return max(1, text.count("\n") + (0 if text.endswith("\n") else 1))


def _locate(current: str, old: str) -> list[int] | None:
    """Lines of the first occurrence of `old` in `current` (1-based, inclusive)."""
    if not old:
        return None
    at = current.find(old)
    if at < 0:
        return None
    first = current.count("\n", 0, at) + 1
    return _span(first, _lines_of(old))


def planned_ranges(payload: Mapping[str, Any], current: str | None) -> Ranges:
    """Lines an edit is about to touch, from the tool input and the file's current text (if readable)."""
    name = payload.get("tool_name")
    args = tool_input(payload)
    if name == "Write":
        content = args.get("content")
        return [_span(1, _lines_of(content))] if isinstance(content, str) and content else []
    if current is None:
        return []
    edits: list[Any] = [args] if name == "Edit" else (args.get("edits") or []) if name == "MultiEdit" else []
    out: Ranges = []
    for edit in edits[:MAX_RANGES]:
        old = edit.get("old_string") if isinstance(edit, dict) else None
        found = _locate(current, old) if isinstance(old, str) else None
        if found:
            out.append(found)
    return out


def applied_ranges(payload: Mapping[str, Any]) -> Ranges:
    """Lines an edit changed, from PostToolUse's `tool_response.structuredPatch` hunks (new side)."""
    response = payload.get("tool_response")
    if not isinstance(response, dict):
        return []
    out: Ranges = []
    hunks = response.get("structuredPatch")
    if isinstance(hunks, list):
        for hunk in hunks[:MAX_RANGES]:
            if not isinstance(hunk, dict):
                continue
            start, lines = hunk.get("newStart"), hunk.get("newLines")
            if isinstance(start, int) and isinstance(lines, int) and start >= 1:
                out.append(_span(start, lines))
    if not out and payload.get("tool_name") == "Write":
        content = response.get("content", tool_input(payload).get("content"))
        if isinstance(content, str) and content:
            out.append(_span(1, _lines_of(content)))
    return out


# -- outputs ---------------------------------------------------------------------------------------


def context_output(event: str, text: str | None) -> dict[str, Any]:
    """`additionalContext` for SessionStart, UserPromptSubmit, PreToolUse and PostToolUse; `{}` if none."""
    if not text:
        return {}
    return {"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}}


def decision_output(decision: str, reason: str, context: str | None = None) -> dict[str, Any]:
    """PreToolUse output. `allow` carries no `permissionDecision`: Huddle has no objection, but the
    user's own permission rules still apply (a hook's "allow" would skip the permission prompt)."""
    specific: dict[str, Any] = {"hookEventName": "PreToolUse"}
    if decision in ("deny", "ask"):
        specific["permissionDecision"] = decision
        specific["permissionDecisionReason"] = reason
    if context:
        specific["additionalContext"] = context
    return {"hookSpecificOutput": specific} if len(specific) > 1 else {}


def describe_event(event: Mapping[str, Any]) -> str | None:
    """One line for an event worth interrupting an agent with; None for the rest."""
    kind = event.get("event")
    who = event.get("agent_id") or "huddle"
    thread = event.get("thread_id")
    if kind == "thread.opened":
        return f"{who} opened consultation {thread} ({event.get('subject', '')}): read it with get_thread and reply"
    if kind == "thread.message":
        kind_word = event.get("type", "message")
        return f"{who} posted a {kind_word} in {thread}: {event.get('content', '')}"
    if kind == "thread.proposal":
        return (
            f"{who} proposed a resolution in {thread}: {event.get('summary', '')} — approve_resolution or "
            "contest_resolution"
        )
    if kind == "thread.status":
        return f"consultation {thread} is now {event.get('status')}"
    if kind == "thread.claimed":
        return f"{who} claimed the work of {thread}"
    if kind == "lock.expired":
        return f"your lease on {event.get('path')} expired and was lost; acquire_lock again before editing it"
    if kind == "lock.acquired" and event.get("queued"):
        return f"your queued lock on {event.get('path')} was granted ({event.get('mode')})"
    if kind == "message.sent":
        return f"message from {who} [{event.get('priority', 'normal')}]: {event.get('content', '')}"
    if kind == "impact.awareness":
        return f"{who}'s work ({event.get('subject', '')}) overlaps yours (score {event.get('score')})"
    return None
