"""Bad input to every tool: an error naming the field, nothing written, and the server keeps serving.

The test walks `tools/list`, so a new tool is covered the day it is added: each required field gets
a valid value from VALID (by name), then every field in turn is broken (missing, mistyped — also
as a numeric string or a boolean for a number —, huge, NUL byte) while the others stay valid.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from mcp import Client

from helpers import call

HUGE = "x" * 100_000

# A valid value for each argument name the tools use. Ids refer to records the fixture creates.
VALID: dict[str, Any] = {
    "agent_id": "alice",
    "from_agent": "alice",
    "to_agent": "bob",
    "name": "alice",
    "subject": "work",
    "target_files": ["a.py"],
    "path": "a.py",
    "thread_id": "T-1",
    "intent_id": "I-1",
    "type": "context",
    "content": "hello",
    "summary": "plan",
    "reason": "because",
    "resolution": "done",
    "count": 1,
    "module": "core",
    "modules": {"core": {"depends_on": [], "paths": ["src/"]}},
    "topic": "huddle/repo/broadcast",
    "payload": {},
    "task_id": "task-1",
    "description": "do it",
    "status": "done",
    "mode": "exclusive",
    "message_ids": [1],
    "channel": "general",
    "priority": "normal",
    "cursor": 0,
    "since_cursor": 0,
    "fencing_token": 1,
    "lock_id": "L-1",
    "tags": ["t"],
    "keyword": "k",
    "id": 1,
    "context_id": 1,
    "slot_id": 1,
    "tasks": [{"task_id": "task-1", "description": "do it"}],
    "overseer_id": "human:lead",
    "holder": "alice",
}
# Where one argument name means different things to different tools.
VALID_FOR: dict[tuple[str, str], Any] = {("share_context", "type"): "note"}


def wrong_type(schema: dict[str, Any]) -> Any:
    """A value of a JSON type the field does not accept."""
    types = {s.get("type") for s in schema.get("anyOf", [schema])}
    if "string" in types:
        return {"not": "a string"}
    if "array" in types or "object" in types:
        return 12345
    return "not-a-number"


def converted_before(types: set[Any]) -> list[Any]:
    """Values of another JSON type that lax validation used to convert into the field's type
    (`"1"` and `true` into a number, `"true"` and `1` into a boolean): refused now."""
    values: list[Any] = []
    if types & {"integer", "number"} and "string" not in types:
        values += ["1", True]
    if "boolean" in types and "string" not in types:
        values += ["true", 1]
    return values


async def latest_cursor(client: Client) -> int:
    return int((await call(client, "coordinator_status"))["latest_cursor"])


@pytest.fixture
async def seeded(server_factory):
    """alice and bob registered, a thread T-1 between them, intent I-1 owned by alice; every tool listed."""
    huddle_server = server_factory("--tools", "all")
    async with Client(huddle_server.mcp_url) as client:
        await call(client, "register_agent", name="alice")
        await call(client, "register_agent", name="bob")
        await call(client, "announce_work", agent_id="alice", subject="x", target_files=["a.py"])
        await call(client, "announce_work", agent_id="bob", subject="y", target_files=["a.py"])
        yield client, huddle_server


async def test_every_tool_refuses_missing_required_fields_by_name_and_writes_nothing(seeded) -> None:
    client, server = seeded
    tools = (await client.list_tools()).tools
    before = await latest_cursor(client)
    for tool in tools:
        required = tool.input_schema.get("required", [])
        if not required:
            continue
        result = await client.call_tool(tool.name, {})
        assert result.is_error, tool.name
        text = result.content[0].text  # type: ignore[union-attr]
        for field in required:
            assert field in text, (tool.name, field, text)
    assert await latest_cursor(client) == before
    assert httpx.get(server.url + "/health").status_code == 200


async def test_every_tool_refuses_each_broken_field_by_name_and_writes_nothing(seeded) -> None:
    client, server = seeded
    tools = (await client.list_tools()).tools
    unknown = sorted({(t.name, f) for t in tools for f in t.input_schema.get("required", []) if f not in VALID})
    assert not unknown, f"add valid values for these required arguments to VALID: {unknown}"
    before = await latest_cursor(client)
    checked = 0
    for tool in tools:
        props: dict[str, Any] = tool.input_schema.get("properties", {})
        base = {f: VALID_FOR.get((tool.name, f), VALID[f]) for f in tool.input_schema.get("required", [])}
        for field, schema in props.items():
            types = {s.get("type") for s in schema.get("anyOf", [schema])}
            if types == {None}:  # accepts any JSON (e.g. mqtt_publish's payload): no wrong type exists
                continue
            broken = [wrong_type(schema), *converted_before(types)]
            if "string" in types and "enum" not in schema:
                broken += [HUGE, "bad\x00value"]
            if ("array" in types and schema.get("items", {}).get("type") == "string") or "array" in {
                s.get("type") for s in schema.get("anyOf", [])
            }:
                broken.append([f"p{i}.py" for i in range(5000)])
            for value in broken:
                result = await client.call_tool(tool.name, {**base, field: value})
                text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
                assert result.is_error, (tool.name, field, str(value)[:40], text[:200])
                assert field in text, (tool.name, field, str(value)[:40], text[:300])
                assert "Traceback" not in text
                checked += 1
    assert checked > 100
    assert await latest_cursor(client) == before
    assert httpx.get(server.url + "/health").status_code == 200


async def test_rest_errors_use_one_envelope_and_never_500(seeded) -> None:
    _, server = seeded
    with httpx.Client(base_url=server.url) as http:
        cases = [
            http.post(
                "/api/v1/tools/announce_work", content=b"{not json", headers={"content-type": "application/json"}
            ),
            http.post("/api/v1/tools/announce_work", json=[1, 2]),
            http.post("/api/v1/tools/announce_work", json={"agent_id": "alice"}),
            http.post(
                "/api/v1/tools/announce_work",
                json={"agent_id": "alice", "subject": "x", "target_files": ["/etc/passwd"]},
            ),
            http.post("/api/v1/tools/get_thread", json={"thread_id": "T-404"}),
            http.post("/api/v1/tools/no_such_tool", json={}),
            http.post(
                "/api/v1/tools/log_action_summary",
                content=b"{" + b" " * 2_000_000 + b"}",
                headers={"content-type": "application/json"},
            ),
            http.get("/api/v1/nowhere"),
        ]
        for response in cases:
            body = response.json()
            assert 400 <= response.status_code < 500, (response.status_code, body)
            assert body["ok"] is False and body["error"] and body["code"], body
        assert cases[3].json()["field"] == "target_files[0]"
        assert cases[0].status_code == 422 and "not valid JSON" in cases[0].json()["error"]
        assert cases[4].status_code == 404
        assert cases[5].status_code == 404 and cases[5].json()["code"] == "not_found"
        assert cases[6].status_code == 413
        ok = http.post("/api/v1/tools/list_agents", json={}).json()
        assert ok["ok"] is True and {a["agent_id"] for a in ok["result"]["agents"]} == {"alice", "bob"}


async def test_unpaired_surrogates_over_rest_are_refused_by_field_never_a_500(seeded) -> None:
    """JSON may carry a lone surrogate (\\ud800) that no database can store; every text field refuses it."""
    client, server = seeded
    tools = (await client.list_tools()).tools
    before = await latest_cursor(client)
    checked = 0
    with httpx.Client(base_url=server.url) as http:
        for tool in tools:
            base = {f: VALID_FOR.get((tool.name, f), VALID[f]) for f in tool.input_schema.get("required", [])}
            for field, schema in tool.input_schema.get("properties", {}).items():
                types = {s.get("type") for s in schema.get("anyOf", [schema])}
                if "string" not in types or "enum" in schema:
                    continue
                body = json.dumps({**base, field: "PLACEHOLDER"}).replace("PLACEHOLDER", "bad\\ud800value")
                response = http.post(
                    f"/api/v1/tools/{tool.name}", content=body, headers={"content-type": "application/json"}
                )
                assert response.status_code < 500, (tool.name, field, response.text[:200])
                if response.status_code >= 400:
                    assert field in response.json()["error"], (tool.name, field, response.text[:200])
                checked += 1
    assert checked > 40
    assert await latest_cursor(client) == before
