"""`huddle channel`: push an agent's Huddle events into its Claude Code session (SPEC F-67).

A Claude Code channel is a stdio MCP server that declares the `claude/channel` experimental
capability and sends `notifications/claude/channel` (`params: {content, meta}`); Claude Code shows
each as a `<channel source="huddle" …>` message in the session. This one follows the agent's events
over the server's SSE stream (`/api/events?agent=ID&exclude_self=1`, resuming from the last cursor
after a drop) and offers a `reply` tool that posts to a thread or messages an agent.

The agent: `--agent`, else `HUDDLE_AGENT`, else the agent whose Claude Code session runs in this
directory (registered by the SessionStart hook; waited for when the channel starts first).
Run it with `claude --channels server:huddle-channel` (or, during the research preview,
`--dangerously-load-development-channels`), after adding it as an MCP server.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

from huddle.cli.remote import UNREACHABLE
from huddle.cli.stdio import ensure_server
from huddle.domain.claude_hooks import describe_event
from huddle.hook import auth_headers, data_dir_of

log = logging.getLogger("huddle.channel")
METHOD = "notifications/claude/channel"
RECONNECT_S = 1.0
FIND_AGENT_EVERY_S = 1.0

INSTRUCTIONS = (
    "Events from Huddle (the coordinator of the agents working in this repository) arrive as "
    '<channel source="huddle" event="..." thread_id="..." from_agent="...">: consultation posts, proposals '
    "awaiting your approval, lost leases and messages for you. Act on them with the Huddle MCP tools, or answer "
    "with this server's reply tool: reply(text, thread_id) posts to the thread, reply(text, to_agent) messages "
    "the agent."
)

REPLY_TOOL = types.Tool(
    name="reply",
    description="Answer a Huddle event: post to a consultation thread (thread_id) or message an agent (to_agent).",
    input_schema={
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "what to say"},
            "thread_id": {"type": "string", "description": "thread to post to, e.g. T-3 (from the event)"},
            "to_agent": {"type": "string", "description": "agent to message when not replying in a thread"},
        },
        "required": ["text"],
    },
)


def notification(event: dict[str, Any]) -> SessionMessage | None:
    """The channel notification for one Huddle event, or None when it is not worth a message."""
    text = describe_event(event)
    if text is None:
        return None
    meta = {"event": str(event.get("event")), "cursor": str(event.get("cursor"))}
    if event.get("thread_id"):
        meta["thread_id"] = str(event["thread_id"])
    if event.get("agent_id"):
        meta["from_agent"] = str(event["agent_id"])
    return SessionMessage(
        types.JSONRPCNotification(jsonrpc="2.0", method=METHOD, params={"content": text, "meta": meta})
    )


class Channel:
    def __init__(self, url: str, agent: str | None):
        self.url = url
        self.agent = agent
        self.http = httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10.0, read=None), headers=auth_headers())
        self.ready = anyio.Event()
        self.agent_known = anyio.Event()
        if agent:
            self.agent_known.set()

    async def find_agent(self) -> None:
        """The agent of the Claude Code session in this directory, once its SessionStart hook ran."""
        cwd = os.getcwd()
        while self.agent is None:
            try:
                answer = (await self.http.get("/hooks/claude/agent", params={"cwd": cwd})).json()
                self.agent = answer.get("agent_id")
            except (*UNREACHABLE, ValueError):
                pass
            if self.agent is None:
                await anyio.sleep(FIND_AGENT_EVERY_S)
        self.agent_known.set()

    async def follow(self, out: Any) -> None:
        """Forwards the agent's events as channel notifications, resuming from the last cursor after a drop."""
        await self.ready.wait()
        await self.agent_known.wait()
        since: str | None = None
        while True:
            params = {"agent": str(self.agent), "exclude_self": "1", **({"since": since} if since else {})}
            try:
                async with self.http.stream("GET", "/api/events", params=params) as response:
                    since = since or response.headers.get("x-huddle-cursor")
                    async for line in response.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        event = json.loads(line[5:])
                        since = str(event.get("cursor", since))
                        message = notification(event)
                        if message is not None:
                            await out.send(message)
            except (*UNREACHABLE, ValueError) as exc:
                log.warning("event stream dropped (%s); reconnecting", exc)
            await anyio.sleep(RECONNECT_S)

    async def reply(self, arguments: dict[str, Any]) -> types.CallToolResult:
        text = arguments.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error("text is required: what to say")
        if self.agent is None:
            return _error("no Huddle agent is known for this session yet; set HUDDLE_AGENT or start the session hooks")
        if arguments.get("thread_id"):
            body = {"thread_id": arguments["thread_id"], "agent_id": self.agent, "type": "context", "content": text}
            tool = "post_to_thread"
        elif arguments.get("to_agent"):
            body = {"from_agent": self.agent, "to_agent": arguments["to_agent"], "content": text}
            tool = "send_message"
        else:
            return _error("pass thread_id (to post in a consultation) or to_agent (to message an agent)")
        try:
            envelope = (await self.http.post(f"/api/v1/tools/{tool}", json=body)).json()
        except (*UNREACHABLE, ValueError) as exc:
            return _error(f"Huddle did not answer ({type(exc).__name__}); try again")
        if not envelope.get("ok"):
            return _error(str(envelope.get("error")))
        return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(envelope["result"]))])


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


async def serve(url: str, agent: str | None) -> None:
    channel = Channel(url, agent)

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[REPLY_TOOL])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name != "reply":
            return _error(f"no tool named {params.name!r}; this channel offers reply")
        return await channel.reply(dict(params.arguments or {}))

    server: Server[Any] = Server(
        "huddle-channel", instructions=INSTRUCTIONS, on_list_tools=list_tools, on_call_tool=call_tool
    )
    options = server.create_initialization_options(experimental_capabilities={"claude/channel": {}})
    inbox_writer, inbox = anyio.create_memory_object_stream[SessionMessage | Exception](64)

    async with stdio_server() as (client_in, client_out), anyio.create_task_group() as tg:

        async def watch_initialized() -> None:
            # Notifications may only flow once the client has initialized (its first message after `initialize`).
            async with inbox_writer:
                async for message in client_in:
                    await inbox_writer.send(message)
                    method = getattr(message.message, "method", None) if isinstance(message, SessionMessage) else None
                    if method is not None and method != "initialize":
                        channel.ready.set()

        tg.start_soon(watch_initialized)
        if agent is None:
            tg.start_soon(channel.find_agent)
        tg.start_soon(channel.follow, client_out)
        await server.run(inbox, client_out, options)
        tg.cancel_scope.cancel()
    await channel.http.aclose()


def run_channel(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="huddle channel: %(message)s")
    url = ensure_server(args.url, Path(data_dir_of(args.data_dir)))
    anyio.run(serve, url, args.agent or os.environ.get("HUDDLE_AGENT") or None)
    return 0
