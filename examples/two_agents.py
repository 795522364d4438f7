"""Two agents collide on one file and agree before editing: scenario S1 against a running Huddle.

    huddle server start                      # in one terminal
    python examples/two_agents.py            # in another (or pass the MCP URL as an argument)

Each agent is its own MCP session, exactly as two Claude Code or Cursor windows would be.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client


def mcp_url() -> str:
    if len(sys.argv) > 1:
        return sys.argv[1]
    runtime = Path.home() / ".huddle" / "server.json"
    return json.loads(runtime.read_text())["mcp_url"] if runtime.exists() else "http://127.0.0.1:3100/mcp"


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    if result.is_error:
        raise SystemExit(f"{tool}: {result.content[0].text}")  # type: ignore[union-attr]
    assert result.structured_content is not None
    return result.structured_content


async def main(url: str) -> None:
    async with Client(url) as alice, Client(url) as bob:
        await call(alice, "register_agent", name="alice-demo", modules=["src/models"])
        await call(bob, "register_agent", name="bob-demo", modules=["migrations"])
        first = await call(
            alice,
            "announce_work",
            agent_id="alice-demo",
            subject="add updated_at to User",
            target_files=["src/models/user.py"],
        )
        print(f"alice announces src/models/user.py → {first['verdict']}")
        second = await call(
            bob,
            "announce_work",
            agent_id="bob-demo",
            subject="migrate the User schema",
            target_files=["src/models/user.py", "migrations/004.sql"],
        )
        impact = second["impacts"][0]
        print(
            f"bob announces the same file → {second['verdict']}, score {impact['score']} "
            f"(layer {impact['evidence'][0]['layer']}), thread {second['thread_id']}"
        )
        thread = second["thread_id"]
        await call(
            alice,
            "post_to_thread",
            thread_id=thread,
            agent_id="alice-demo",
            type="context",
            content="I am adding updated_at; land my field first?",
        )
        await call(
            bob,
            "propose_resolution",
            thread_id=thread,
            agent_id="bob-demo",
            summary="alice lands updated_at first; bob migrates after",
        )
        done = await call(alice, "approve_resolution", thread_id=thread, agent_id="alice-demo")
        print(f"alice approves bob's proposal → thread {done['status']}: {done['resolution']}")
        updates = await call(bob, "get_updates", agent_id="bob-demo")
        print(
            "bob's get_updates replays:", ", ".join(e["event"] for e in updates["events"] if e["thread_id"] == thread)
        )
        for client, agent, intent in ((alice, "alice-demo", first), (bob, "bob-demo", second)):
            await call(client, "complete_work", agent_id=agent, intent_id=intent["intent_id"])
            await call(client, "deregister_agent", agent_id=agent)


if __name__ == "__main__":
    url = mcp_url()
    try:
        httpx.get(url.removesuffix("/mcp") + "/health", timeout=2).raise_for_status()
    except httpx.HTTPError:
        raise SystemExit(f"no Huddle server answers at {url}; start one with `huddle server start`") from None
    anyio.run(main, url)
