"""The real server starts, answers /health and speaks MCP over Streamable HTTP."""

from __future__ import annotations

import httpx
from mcp import Client

from helpers import call


async def test_server_answers_health_and_registers_an_agent_over_mcp(huddle_server):
    assert httpx.get(huddle_server.url + "/health").json()["ok"] is True
    async with Client(huddle_server.mcp_url) as client:
        result = await call(client, "register_agent", name="Alice")
    assert result["agent_id"] == "alice"


def test_readyz_reports_database_sweeper_and_broker(huddle_server):
    body = httpx.get(huddle_server.url + "/readyz").json()
    assert body["ok"] is True
    assert body["checks"]["database"]["ok"] and body["checks"]["sweeper"]["ok"] and body["checks"]["mqtt"]["ok"]
