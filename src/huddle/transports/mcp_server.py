"""The MCP server: the operation catalogue as MCP tools on the official SDK's MCPServer."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp_types import CallToolResult, TextContent, ToolAnnotations

from huddle import __version__
from huddle.domain.principal import DASHBOARD, acting_as
from huddle.errors import HuddleError
from huddle.service.overseers import acting_as_dashboard
from huddle.transports.arguments import BoundOperation
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
    Its JSON-in-a-string repair for list arguments (some clients send `"[\"a\"]"`) is kept.
    """

    def validate_arguments(self, arguments_to_validate: dict[str, Any]) -> dict[str, Any]:
        return self.pre_parse_json(arguments_to_validate)


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
        text = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
        return CallToolResult(content=[TextContent(text=text)], structured_content=result)

    tool = Tool.from_function(
        call, name=op.name, description=op.description, annotations=ToolAnnotations(read_only_hint=op.read_only)
    )
    meta = tool.fn_metadata
    tool.fn_metadata = _CheckedByHuddle(
        arg_model=meta.arg_model,
        output_schema=meta.output_schema,
        output_model=meta.output_model,
        wrap_output=meta.wrap_output,
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
    with acting_as(principal):
        if DASHBOARD in principal.scopes:
            with acting_as_dashboard():
                return await call_next(ctx)
        return await call_next(ctx)


def build_mcp_server(operations: Iterable[Operation], rest_only: frozenset[str] = frozenset()) -> MCPServer:
    server: MCPServer = MCPServer(
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
