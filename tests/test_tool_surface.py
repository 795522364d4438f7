"""The tool surface: lean default tools/list, toolsets, introspection, get_agent, list_intents, update_intent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from helpers import ServerProcess, call, call_error
from huddle.app import build_app
from huddle.errors import InvalidInput, NotFound
from huddle.service.coordinator import Coordinator
from huddle.settings import load_settings

# Every numeric field states its bounds (minimum/maximum, ~550 bytes of the default listing), so an
# agent sends a valid number the first time instead of learning the range from an error.
DEFAULT_BUDGET_BYTES = 16_000


def listing_bytes(tools: list[Any]) -> int:
    """Size of a tools/list result as compact JSON, as it crosses the wire."""
    data = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    return len(json.dumps({"tools": data}, separators=(",", ":"), ensure_ascii=False))


async def test_the_default_tools_list_fits_its_budget_and_every_tool_stays_callable(huddle_server: ServerProcess):
    async with Client(huddle_server.mcp_url) as client:
        listed = (await client.list_tools()).tools
        assert listing_bytes(listed) < DEFAULT_BUDGET_BYTES
        names = {t.name for t in listed}
        assert {"register_agent", "announce_work", "acquire_lock", "send_message", "introspection"} <= names
        index = await call(client, "introspection")
        every = {t["name"] for t in index["tools"]}
        assert names < every and set(index["listed"]) == names
        toolsets = {t["toolset"] for t in index["tools"]}
        assert toolsets == {
            "core",
            "threads",
            "files",
            "locks",
            "messages",
            "context",
            "tasks",
            "push",
            "oversight",
            "admin",
        }
        # Every capability agents use has a listed tool; push and the dashboard's oversight tools are
        # one introspection (or --tools) away.
        for toolset in toolsets - {"push", "oversight"}:
            assert any(t["listed"] for t in index["tools"] if t["toolset"] == toolset)
        hidden = "get_workers"
        assert hidden not in names
        assert "slots" in await call(client, hidden)  # unlisted, still callable
        schema = await call(client, "introspection", name="claim_worker_slot")
        assert schema["listed"] is False and schema["input_schema"]["required"] == ["agent_id"]


async def test_listed_schemas_are_compact_and_describe_the_fields_that_need_it(huddle_server: ServerProcess):
    async with Client(huddle_server.mcp_url) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    announce = tools["announce_work"].input_schema
    text = json.dumps(announce)
    assert '"title"' not in text and '"null"' not in text
    assert announce["properties"]["target_files"]["description"].startswith("Files, dirs")
    assert "\n" not in (tools["acquire_lock"].description or "")
    assert tools["acquire_lock"].input_schema["properties"]["wait_s"]["description"]


async def test_all_lists_every_tool_and_a_toolset_lists_only_its_own(server_factory: Any):
    every = server_factory("--tools", "all")
    locks = server_factory("--tools", "locks")
    async with Client(every.mcp_url) as client:
        all_names = {t.name for t in (await client.list_tools()).tools}
        assert len(all_names) == len((await call(client, "introspection"))["tools"])
    async with Client(locks.mcp_url) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == {"acquire_lock", "release_lock", "renew_lock", "list_locks", "check_lock", "introspection"}


def test_an_unknown_toolset_is_refused_with_the_known_ones(tmp_path: Path, repo: Path):
    settings = load_settings({"data_dir": str(tmp_path / "d"), "repo": str(repo), "tools": "core,lockz"}, environ={})
    with pytest.raises(
        InvalidInput, match="'lockz' is neither a toolset nor a tool; toolsets: all, default, admin, context, core"
    ):
        build_app(settings)


async def test_introspection_of_an_unknown_tool_names_the_way_to_the_index(huddle_server: ServerProcess):
    async with Client(huddle_server.mcp_url) as client:
        text = await call_error(client, "introspection", name="nope")
    assert "no tool named 'nope'" in text and "without arguments" in text


async def test_get_agent_shows_activity_intents_and_locks(coordinator: Coordinator):
    await coordinator.agents.register("alice")
    announced = await coordinator.intents.announce("alice", "login", ["src/auth/login.py"])
    await coordinator.locks.acquire("alice", "src/auth/", "exclusive", None, None)
    agent = await coordinator.agents.get("alice")
    assert agent["agent_id"] == "alice" and agent["online"] is True
    assert [i["intent_id"] for i in agent["intents"]] == [announced["intent_id"]]
    assert [(lk["path"], lk["mode"]) for lk in agent["locks"]] == [("src/auth/", "exclusive")]
    with pytest.raises(NotFound, match="list_agents"):
        await coordinator.agents.get("nobody")


async def test_update_intent_rescores_and_opens_a_thread_when_it_now_collides(coordinator: Coordinator):
    await coordinator.agents.register("alice")
    await coordinator.agents.register("bob")
    await coordinator.intents.announce("alice", "login", ["src/auth/login.py"])
    mine = await coordinator.intents.announce("bob", "docs", ["docs/readme.md"])
    assert mine["verdict"] == "proceed" and mine["thread_id"] is None

    updated = await coordinator.intents.update("bob", mine["intent_id"], target_files=["src/auth/login.py"])
    assert updated["intent_id"] == mine["intent_id"]
    assert updated["verdict"] == "consult" and updated["thread_id"] is not None
    [listed] = (await coordinator.intents.list_intents("bob"))["intents"]
    assert listed["target_files"] == ["src/auth/login.py"] and listed["thread_id"] == updated["thread_id"]
    assert listed["subject"] == "docs"  # omitted fields keep their value
    alice_events = (await coordinator.updates.get_updates("alice"))["events"]
    assert any(e["event"] == "intent.updated" and e["intent_id"] == mine["intent_id"] for e in alice_events)

    back = await coordinator.intents.update("bob", mine["intent_id"], target_files=["docs/readme.md"])
    assert back["verdict"] == "proceed"
    # The old collision no longer scores: alice's new announce on docs sees bob, not the auth file.
    check = await coordinator.intents.check_conflicts("alice", ["src/auth/login.py"])
    assert check["verdict"] == "proceed"


async def test_narrowing_an_intent_away_from_its_collision_resolves_the_thread_and_tells_the_other_side(
    coordinator: Coordinator,
):
    await coordinator.agents.register("alice")
    await coordinator.agents.register("bob")
    await coordinator.intents.announce("alice", "login", ["src/auth/login.py"])
    mine = await coordinator.intents.announce("bob", "auth and docs", ["src/auth/login.py", "docs/readme.md"])
    assert mine["verdict"] == "consult"
    thread = mine["thread_id"]
    cursor = (await coordinator.updates.get_updates("alice"))["next_cursor"]

    narrowed = await coordinator.intents.update("bob", mine["intent_id"], target_files=["docs/readme.md"])
    assert narrowed["verdict"] == "proceed" and narrowed["thread_id"] is None
    assert (
        narrowed["resolved_thread_id"] == thread and f"removed every collision that opened {thread}" in narrowed["next"]
    )
    got = await coordinator.threads.get(thread)
    assert got["status"] == "resolved" and got["resolution"] == "initiator narrowed the intent; no collision remains"
    [listed] = (await coordinator.intents.list_intents("bob"))["intents"]
    assert listed["status"] == "active" and listed["thread_id"] is None  # the work goes on
    events = (await coordinator.updates.get_updates("alice", cursor))["events"]
    kinds = {(e["event"], e.get("intent_id") or e.get("thread_id")) for e in events}
    assert ("intent.updated", mine["intent_id"]) in kinds and ("thread.status", thread) in kinds


async def test_an_update_that_still_collides_keeps_the_thread_open(coordinator: Coordinator):
    await coordinator.agents.register("alice")
    await coordinator.agents.register("bob")
    await coordinator.intents.announce("alice", "login", ["src/auth/login.py"])
    mine = await coordinator.intents.announce("bob", "auth", ["src/auth/login.py"])
    updated = await coordinator.intents.update("bob", mine["intent_id"], subject="auth, renamed")
    assert updated["thread_id"] == mine["thread_id"] and "resolved_thread_id" not in updated
    assert (await coordinator.threads.get(mine["thread_id"]))["status"] == "open"


async def test_update_intent_refuses_someone_elses_or_an_ended_intent(coordinator: Coordinator):
    await coordinator.agents.register("alice")
    await coordinator.agents.register("bob")
    mine = await coordinator.intents.announce("alice", "login", ["src/auth/login.py"])
    with pytest.raises(Exception, match="belongs to alice"):
        await coordinator.intents.update("bob", mine["intent_id"], subject="x")
    await coordinator.intents.complete("alice", mine["intent_id"])
    with pytest.raises(InvalidInput, match="no longer active; announce_work again"):
        await coordinator.intents.update("alice", mine["intent_id"], subject="x")


def test_compacting_drops_schema_titles_but_keeps_an_input_field_named_title():
    from huddle.transports.toolsets import compact_schema

    schema = {
        "title": "add_taskArguments",
        "type": "object",
        "properties": {
            "title": {"title": "Title", "type": "string"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Note"},
        },
        "required": ["title"],
    }
    assert compact_schema("add_task", schema) == {
        "type": "object",
        "properties": {"title": {"type": "string"}, "note": {"type": "string"}},
        "required": ["title"],
    }


def test_the_sdk_header_check_is_skipped_only_where_it_could_not_refuse(tmp_path: Path, repo: Path):
    from mcp.shared.inbound import validate_mcp_param_headers

    mcp = build_app(load_settings({"data_dir": str(tmp_path / "d"), "repo": str(repo)}, environ={})).mcp
    stray = {"mcp-param-agent_id": "mallory", "mcp-param-path": "x"}
    tools = mcp._tool_manager.list_tools()
    assert len(tools) > 40
    for tool in tools:
        # The SDK, given the whole schema, refuses nothing: answering without it is the same answer.
        assert validate_mcp_param_headers(tool.parameters, {"agent_id": "alice"}, stray) is None
        assert mcp._tool_input_schema(tool.name) is None
    # A tool whose schema declares a header is checked by the SDK as before.
    tool = mcp._tool_manager.get_tool("acquire_lock")
    assert tool is not None
    declared = {**tool.parameters, "properties": {**tool.parameters["properties"]}}
    declared["properties"]["path"] = {"type": "string", "x-mcp-header": "Path"}
    tool.parameters = declared
    assert mcp._tool_input_schema("acquire_lock") is declared
    refused = validate_mcp_param_headers(declared, {"agent_id": "alice", "path": "a.py"}, {"mcp-param-path": "b.py"})
    assert refused is not None and "does not match" in refused.message
