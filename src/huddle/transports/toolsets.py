"""The tool surface an MCP client pays for: which tools `tools/list` shows, and how compactly.

Every operation stays registered and callable; `tools/list` shows the selected toolsets only
(setting `tools`, default `default`), so an agent does not read ~8k tokens of schema before its
first call. The `default` set covers every capability with its everyday tools; the rest are one
`introspection` call away (it describes every tool, listed or not) or a toolset away.

Schemas are compacted for listing (no pydantic titles, no `null` alternative for optional fields,
one-line descriptions) and each field that needs it gets a description from FIELD_HELP — one
glossary, because a field means the same thing in every tool. The same compact schemas feed
`introspection` and the OpenAPI document, so the three never disagree.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp_types import ListToolsResult, Tool

from huddle.errors import InvalidInput, NotFound
from huddle.transports.operation import Operation, Result

ADMIN = "admin"
DEFAULT_TOOLS = (
    # core: who is here, announce before editing, follow what happens
    "register_agent",
    "deregister_agent",
    "list_agents",
    "get_agent",
    "announce_work",
    "check_conflicts",
    "update_intent",
    "complete_work",
    "list_intents",
    "get_updates",
    "coordinator_status",
    # threads: consult when work collides
    "get_thread",
    "post_to_thread",
    "propose_resolution",
    "approve_resolution",
    "contest_resolution",
    "close_thread",
    "list_threads",
    # files, locks, messages, context, tasks: one or more everyday tools each
    "log_file_edit",
    "check_file_conflict",
    "acquire_lock",
    "release_lock",
    "renew_lock",
    "check_lock",
    "list_locks",
    "send_message",
    "get_queued_messages",
    "wait_for_message",
    "share_context",
    "query_context",
    "add_task",
    "list_tasks",
    "claim_task",
    "update_task",
    "introspection",
)

# Field descriptions, by field name; "tool.field" overrides one tool's field.
FIELD_HELP: dict[str, str] = {
    "cursor": "next_cursor of your last call; 0 = from the start.",
    "since_cursor": "next_cursor of your last call; 0 = from the start.",
    "target_files": "Files, dirs (src/auth/) or globs you will change.",
    "depends_on_files": "Files you rely on but do not change.",
    "target_modules": "Module names from the dependency map.",
    "target_symbols": "Functions/classes you will change.",
    "ttl_s": "Lifetime in seconds (default: server setting).",
    "wait_s": "Seconds to queue, first come first served; omitted = answer at once.",
    "timeout_s": "Seconds to block at most.",
    "intent_id": "I-12, from announce_work.",
    "thread_id": "T-12.",
    "path": "Repo-relative file, directory (ends with /) or glob.",
    "in_reply_to": "Number of the thread message you answer.",
    "depends_on": "task_ids that must be done first.",
    "payload": "JSON object handed to the claimer.",
    "modules": "Module names you usually work in.",
    "add_task.priority": "Higher is claimed first.",
    "send_message.to_agent": "Recipient; omitted = every agent.",
    "list_intents.active_only": "false also returns ended intents.",
    "acquire_lock.ttl_s": "Lease in seconds (default 600); renew_lock before it ends.",
    "introspection.name": "A tool name; omitted = the index of every tool.",
    "list_events.before": "next_before of the previous page; omitted = the newest events.",
    "list_events.after": "A cursor to catch up from (oldest first); not with before.",
    "list_events.kinds": "Comma list of kinds or groups, e.g. thread.*,lock.released.",
    "conflict_signals.hours": "Window in hours, one bucket per hour.",
    "overseer_id": "human:<name>, registered with register_agent.",
    "force_release_lock.holder": "agent_id of the lease holder.",
}


def _help_for(tool: str, field: str) -> str | None:
    return FIELD_HELP.get(f"{tool}.{field}") or FIELD_HELP.get(field)


# Keywords whose value maps names to schemas: a key there is a field name (a field may be called
# "title"), not a schema keyword. Keywords whose value is data, not a schema, are left untouched.
_NAMED_SCHEMAS = ("properties", "patternProperties", "$defs", "definitions")
_DATA = ("default", "const", "enum", "examples")


def _compact(node: Any) -> Any:
    """Drops pydantic titles and the `null` alternative of optional fields, recursively."""
    if isinstance(node, list):
        return [_compact(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue  # the schema's own title (pydantic's), noise for a model reading it
        if key in _NAMED_SCHEMAS and isinstance(value, dict):
            out[key] = {name: _compact(schema) for name, schema in value.items()}
        else:
            out[key] = value if key in _DATA else _compact(value)
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        out.pop("anyOf")
        if len(rest) == 1 and isinstance(rest[0], dict):
            out = {**rest[0], **out}
        else:
            out["anyOf"] = rest
        if out.get("default", 0) is None:
            out.pop("default")
    return out


def compact_schema(tool: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The listing form of a tool's input schema, with field descriptions from FIELD_HELP."""
    out: dict[str, Any] = _compact(copy.deepcopy(schema))
    for name, prop in out.get("properties", {}).items():
        text = _help_for(tool, name)
        if text and "description" not in prop:
            prop["description"] = text
    return out


def one_line(text: str) -> str:
    return " ".join(text.split())


def select_tools(spec: str, operations: Sequence[Operation]) -> set[str]:
    """Names listed by a `tools` setting such as `default`, `all`, `core,locks` or `default,get_workers`."""
    toolsets: dict[str, set[str]] = {}
    for op in operations:
        toolsets.setdefault(op.toolset, set()).add(op.name)
    names = {op.name for op in operations}
    chosen: set[str] = {"introspection"} & names
    for word in (w.strip() for w in spec.split(",")):
        if not word:
            continue
        if word == "all":
            chosen |= names
        elif word == "default":
            chosen |= set(DEFAULT_TOOLS) & names
        elif word in toolsets:
            chosen |= toolsets[word]
        elif word in names:
            chosen.add(word)
        else:
            raise InvalidInput(
                f"setting tools: {word!r} is neither a toolset nor a tool; toolsets: all, default, "
                f"{', '.join(sorted(toolsets))} (or tool names, comma-separated)",
                field="tools",
            )
    return chosen


class ToolCatalogue:
    """Every operation with its compact schema; knows which ones `tools/list` shows."""

    def __init__(self, operations: Iterable[Operation], spec: str, rest_only: frozenset[str] = frozenset()):
        self.operations: list[Operation] = list(operations)
        self.operations.append(Operation("introspection", ADMIN, self._introspection_fn(), read_only=True))
        # REST-only operations (the dashboard's) are never offered to an MCP client.
        self.rest_only = rest_only
        self.listed = select_tools(spec, self.operations) - rest_only
        self._mcp: MCPServer | None = None
        self._schemas: dict[str, dict[str, Any]] | None = None

    def attach(self, mcp: MCPServer) -> None:
        """Shows only the listed tools, compactly, in `tools/list` (an SDK middleware)."""
        self._mcp = mcp
        mcp.middleware.append(self._listing_middleware)

    async def schemas(self) -> dict[str, dict[str, Any]]:
        """Compact input schema of every operation, by name (computed once, from the MCP server)."""
        if self._schemas is None:
            assert self._mcp is not None, "attach() the MCP server first"
            self._schemas = {t.name: compact_schema(t.name, t.input_schema) for t in await self._mcp.list_tools()}
        return self._schemas

    async def tools(self, names: Iterable[str] | None = None) -> list[Tool]:
        """The lean MCP tool entries of `names` (default: the listed ones), in catalogue order."""
        wanted = self.listed if names is None else set(names)
        schemas = await self.schemas()
        return [
            Tool(
                name=op.name,
                description=one_line(op.description),
                input_schema=schemas[op.name],
                annotations={"readOnlyHint": True} if op.read_only else None,  # type: ignore[arg-type]
            )
            for op in self.operations
            if op.name in wanted
        ]

    async def _listing_middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/list":
            return await call_next(ctx)
        return ListToolsResult(tools=await self.tools())

    def _introspection_fn(self) -> Any:
        catalogue = self

        async def introspection(name: str | None = None) -> Result:
            """Without `name`: every tool, listed or not (all are callable); with it: that tool's input schema."""
            if name is None:
                return {
                    "listed": sorted(catalogue.listed),
                    "tools": [
                        {
                            "name": op.name,
                            "toolset": op.toolset,
                            "listed": op.name in catalogue.listed,
                            "summary": one_line(op.description).split(". ")[0].rstrip(".") + ".",
                        }
                        for op in catalogue.operations
                        if op.name not in catalogue.rest_only
                    ],
                }
            op = next((o for o in catalogue.operations if o.name == name and name not in catalogue.rest_only), None)
            if op is None:
                raise NotFound(
                    f"no tool named {name!r}; call introspection without arguments for the index", field="name"
                )
            return {
                "name": op.name,
                "toolset": op.toolset,
                "listed": op.name in catalogue.listed,
                "read_only": op.read_only,
                "description": one_line(op.description),
                "input_schema": (await catalogue.schemas())[op.name],
            }

        return introspection
