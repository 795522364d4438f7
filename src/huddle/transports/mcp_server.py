"""The MCP server: the operation catalogue as MCP tools on the official SDK's MCPServer."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import pydantic
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp.shared.inbound import X_MCP_HEADER_KEY
from mcp_types import CallToolResult, TextContent, ToolAnnotations

from huddle import __version__, compact_json
from huddle.errors import HuddleError
from huddle.transports.acting import running_as
from huddle.transports.arguments import BoundOperation, json_text_fields
from huddle.transports.tools import Operation

INSTRUCTIONS = (
    "Huddle coordinates AI coding agents working on one repository. Call register_agent first. "
    "Before editing, call announce_work with the files you will change; if the verdict is consult, "
    "do not edit those files until the thread resolves (get_thread, post_to_thread, propose/approve). "
    "Between turns call get_updates with your last cursor. Call complete_work when done."
)


class _CheckedByHuddle(FuncMetadata):
    """Leaves argument checking to `BoundOperation`, so MCP and REST refuse bad input alike.

    The SDK's own check would answer with raw pydantic text and silently drop unknown arguments.
    Its JSON-in-a-string repair (some clients send `"[\"a\"]"` for a list, `"null"` for nothing)
    is kept where the parsed value is one the argument takes (`json_text_fields`). The SDK would
    parse the string of any argument not typed plain `str`: `"null"` for an optional string became
    null (`to_agent: "null"` a broadcast), `"30"` a number, a plan written as JSON an object.
    """

    json_text: dict[str, tuple[type, ...]] = pydantic.Field(default_factory=dict)

    def validate_arguments(self, arguments_to_validate: dict[str, Any]) -> dict[str, Any]:
        parsed = self.pre_parse_json(arguments_to_validate)
        return {
            key: value if isinstance(value, self.json_text.get(key, ())) else arguments_to_validate[key]
            for key, value in parsed.items()
        }


def as_tool(op: Operation, rest_only: bool = False) -> Tool:
    """The operation as an MCP tool: Huddle errors reach the agent as tool errors with their message."""
    bound = BoundOperation(op)

    @functools.wraps(op.fn)
    async def call(**kwargs: Any) -> CallToolResult:
        if rest_only:
            raise ToolError(f"{op.name} is only available from the dashboard, not over MCP [forbidden]")
        try:
            result = await bound(kwargs)
        except HuddleError as exc:
            raise ToolError(f"{exc.message} [{exc.code}]") from exc
        # Compact JSON text (the SDK's default is indented): fewer tokens for the agent to read,
        # and the result is serialised once instead of validated, copied and pretty-printed.
        text = compact_json.readable(result)
        return CallToolResult(content=[TextContent(text=text)], structured_content=result)

    tool = Tool.from_function(
        call, name=op.name, description=op.description, annotations=ToolAnnotations(read_only_hint=op.read_only)
    )
    meta = tool.fn_metadata
    tool.fn_metadata = _CheckedByHuddle(
        arg_model=meta.arg_model,
        # The output schema (an object) is still published; without a model the SDK does not
        # validate each result against it again: every operation returns a dict built here.
        output_schema=meta.output_schema,
        output_model=None,
        wrap_output=meta.wrap_output,
        json_text=json_text_fields(bound.schema),
    )
    return tool


async def principal_middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Runs an MCP message as the principal the HTTP edge resolved for the request it came with.

    The SDK handles a session's messages in the session's own task, not the request's, so the
    edge's context variable does not reach the tool call by itself; the request does.
    """
    request = ctx.request
    scope = getattr(request, "scope", None)
    principal = scope.get("huddle.principal") if scope is not None else None
    if principal is None:
        return await call_next(ctx)
    with running_as(principal):
        return await call_next(ctx)


def declares_headers(schema: Any) -> bool:
    """True when an `x-mcp-header` annotation appears anywhere in a tool's input schema."""
    if isinstance(schema, dict):
        return X_MCP_HEADER_KEY in schema or any(declares_headers(v) for v in schema.values())
    if isinstance(schema, list):
        return any(declares_headers(v) for v in schema)
    return False


class HuddleMCPServer(MCPServer):
    """The SDK's MCPServer, minus a per-call walk of the tool's input schema.

    On every 2026-era `tools/call` the SDK walks the called tool's input schema for `x-mcp-header`
    annotations to check `Mcp-Param-*` headers against the arguments (12–28 µs a call for our
    schemas). A schema without one has nothing to check: the check returns None for it, whatever
    the headers. No Huddle tool declares one, so that answer is given without the walk; a tool
    whose schema does declare one is checked by the SDK as before.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        self._header_free: dict[str, tuple[dict[str, Any], bool]] = {}
        super().__init__(*args, **kwargs)

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        schema = super()._tool_input_schema(name)
        if schema is None:
            return None
        known = self._header_free.get(name)
        if known is None or known[0] is not schema:  # a tool replaced under the same name
            known = self._header_free[name] = (schema, not declares_headers(schema))
        return None if known[1] else schema


def build_mcp_server(operations: Iterable[Operation], rest_only: frozenset[str] = frozenset()) -> MCPServer:
    server: MCPServer = HuddleMCPServer(
        "huddle",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
        tools=[as_tool(op, op.name in rest_only) for op in operations],
    )
    # The SDK wraps every message in an OpenTelemetry span by default; with no exporter installed
    # that is pure overhead on every call (the SDK documents dropping it as the opt-out).
    server.middleware[:] = [m for m in server.middleware if type(m).__name__ != "OpenTelemetryMiddleware"]
    server.middleware.append(principal_middleware)
    return server
