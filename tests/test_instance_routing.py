"""Each instance names itself, so a load balancer can route an MCP session back to where it lives.

Session ids and the dashboard cookie start with `<instance_name>.`; every response carries the name
in X-Huddle-Instance; an id naming another instance is a misroute, answered 404 with what to fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from helpers import ServerProcess, call
from huddle.errors import InvalidInput
from huddle.settings import load_settings
from huddle.transports.instance import instance_name, owner_of, routed_id
from huddle.transports.mcp_sessions import bounded_sessions

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def transport_fields(transport: Any) -> dict[str, Any]:
    """What a session transport was built with, minus its id; its security middleware by value."""
    fields = {k: v for k, v in vars(transport).items() if k not in ("mcp_session_id", "_security")}
    return {**fields, "_security": vars(transport._security)}


def test_a_session_id_names_its_instance_and_the_session_is_built_exactly_as_the_sdk_builds_one(
    tmp_path: Path,
) -> None:
    settings = load_settings({"data_dir": str(tmp_path), "mcp_session_idle_s": 42}, environ={})
    mcp = MCPServer("t")
    mcp.streamable_http_app(json_response=True)
    ours = bounded_sessions(mcp, settings, "east-1")
    sdk = StreamableHTTPSessionManager(
        app=ours.app,
        event_store=ours.event_store,
        json_response=ours.json_response,
        security_settings=ours.security_settings,
        retry_interval=ours.retry_interval,
        session_idle_timeout=ours.session_idle_timeout,
        max_request_body_size=ours.max_request_body_size,
    )
    mine, reference = ours._admit_session(None), sdk._admit_session(None)
    assert mine is not None and reference is not None and mine.mcp_session_id is not None
    name, _, token = mine.mcp_session_id.partition(".")
    assert name == "east-1" and len(token) == 32 and int(token, 16) >= 0
    assert owner_of(mine.mcp_session_id) == "east-1"
    assert ours._server_instances == {mine.mcp_session_id: mine} and ours.open_sessions() == 1
    # Built field for field like the SDK's own session (an SDK upgrade that adds one fails here).
    assert transport_fields(mine) == transport_fields(reference)


def test_the_default_instance_name_is_the_port_and_a_routed_id_splits_at_its_first_dot(tmp_path: Path) -> None:
    settings = load_settings({"data_dir": str(tmp_path)}, environ={})
    assert instance_name(settings, 41234) == "41234"
    assert instance_name(settings) == str(settings.port)
    named = load_settings({"data_dir": str(tmp_path), "instance_name": "west_2"}, environ={})
    assert instance_name(named, 41234) == "west_2"
    assert owner_of(routed_id("west_2", "a.b")) == "west_2"
    assert owner_of("0123abcd") is None and owner_of(".x") is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"instance_name": "east.1"}, "instance_name must be 1-64 letters, digits, - or _"),
        ({"instance_name": "a" * 65}, "instance_name must be 1-64"),
        ({"instance_name": "ost ü"}, "instance_name must be 1-64"),
        ({"mcp_stateless": "yes"}, "mcp_stateless must be on or off"),
    ],
)
def test_a_bad_instance_name_or_stateless_switch_is_a_clear_error(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as refused:
        load_settings({"data_dir": str(tmp_path), **overrides}, environ={})
    assert refused.value.field == next(iter(overrides))


async def test_a_server_names_itself_by_its_port_in_server_json_every_response_and_every_session(
    huddle_server: ServerProcess,
) -> None:
    runtime = json.loads((huddle_server.data_dir / "server.json").read_text())
    assert runtime["instance_name"] == str(huddle_server.port)
    async with httpx.AsyncClient(base_url=huddle_server.url) as http:
        for response in (
            await http.get("/health"),
            await http.post("/api/v1/tools/list_agents", json={}),
            await http.post("/api/v1/tools/no_such_tool", json={}),
            await http.get("/dashboard"),
        ):
            assert response.headers["x-huddle-instance"] == str(huddle_server.port), response.url
        opened = await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        assert opened.status_code == 200
        assert owner_of(opened.headers["mcp-session-id"]) == str(huddle_server.port)
    async with Client(huddle_server.mcp_url, mode="legacy") as client:  # the SDK client takes such ids as they are
        assert (await call(client, "register_agent", agent_id="alice", name="alice"))["agent_id"] == "alice"


async def test_a_session_id_naming_another_instance_is_answered_404_naming_both_and_the_fix(
    server_factory: Any,
) -> None:
    server: ServerProcess = server_factory("--instance-name", "east")
    headers = {**MCP_HEADERS, "mcp-protocol-version": "2025-06-18"}
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        misrouted = await http.post("/mcp", json=ping, headers={**headers, "mcp-session-id": "west.0123abcd"})
        assert misrouted.status_code == 404 and misrouted.headers["x-huddle-instance"] == "east"
        error = misrouted.json()["error"]["message"]
        assert "'west'" in error and "'east'" in error and "deploy/nginx/huddle.conf" in error
        assert "Initialize again" in error
        # Its own name on an unknown id (expired, evicted) and an unnamed id: the SDK's plain 404.
        for stale in ("east.0123abcd", "0123abcd"):
            gone = await http.post("/mcp", json=ping, headers={**headers, "mcp-session-id": stale})
            assert gone.status_code == 404 and gone.json()["error"]["message"] == "Session not found"
        # The dashboard's cookie names the instance too, and still grants the page its actions.
        page = await http.get("/dashboard")
        assert owner_of(page.cookies["huddle_dashboard"]) == "east"
        human = await http.post("/api/v1/tools/register_agent", json={"agent_id": "human:ann", "name": "Ann"})
        assert human.status_code == 200, human.text
