"""Strict JSON types on both transports (transports/arguments.py): a value of a JSON type its field
does not take is refused — never converted — with the same sentence over MCP and REST, naming the
field, what it takes, what was sent and what to send; nothing is written. Values the published
schema allows still pass: an integer for a number, 30.0 for an integer, enum strings, lists, null
for an optional field.

The app is the real one (build_app, lifespan running): REST through httpx's ASGI transport, MCP
through the official client connected to the app's MCP server in memory.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from helpers import call, call_error
from huddle.app import build_app
from huddle.settings import load_settings


@asynccontextmanager
async def served(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Client]]:
    settings = {"data_dir": str(tmp_path / "data"), "repo": str(tmp_path), "mqtt_broker": "off", "analysis": "off"}
    app = build_app(load_settings(settings, environ={}))
    transport = httpx.ASGITransport(app=app.served)
    async with (
        app.http.router.lifespan_context(app.http),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http,
        Client(app.mcp) as mcp,
    ):
        await call(mcp, "register_agent", name="alice", agent_id="alice")
        yield http, mcp


async def rest(http: httpx.AsyncClient, tool: str, args: dict[str, Any]) -> httpx.Response:
    return await http.post(f"/api/v1/tools/{tool}", json=args)


async def written(mcp: Client) -> tuple[int, list[Any]]:
    """The newest event's cursor and the live locks: what a refused call must leave unchanged."""
    status = await call(mcp, "coordinator_status")
    return status["latest_cursor"], (await call(mcp, "list_locks"))["locks"]


LOCK = {"agent_id": "alice", "path": "a.py"}
SCHEMA_HINT = "see the tool's input schema (MCP tools/list, or GET /api/v1/tools)"

REFUSED = {
    "numeric-string-for-a-number": (
        "acquire_lock",
        {**LOCK, "ttl_s": "30"},
        "ttl_s",
        'ttl_s must be a number between 1 and 86400; got the string "30"; send 30 without quotes',
    ),
    "boolean-for-a-number": (
        "acquire_lock",
        {**LOCK, "ttl_s": True},
        "ttl_s",
        f"ttl_s must be a number between 1 and 86400; got true; {SCHEMA_HINT}",
    ),
    "numeric-string-out-of-bounds": (
        "acquire_lock",
        {**LOCK, "ttl_s": "999999"},
        "ttl_s",
        f'ttl_s must be a number between 1 and 86400; got the string "999999"; {SCHEMA_HINT}',
    ),
    "number-for-an-enum": (
        "acquire_lock",
        {**LOCK, "mode": 1},
        "mode",
        f'mode must be one of "exclusive", "shared", "intent"; got the number 1; {SCHEMA_HINT}',
    ),
    "number-for-a-string": (
        "acquire_lock",
        {"agent_id": "alice", "path": 7},
        "path",
        'path must be a string; got the number 7; send it in quotes: "7"',
    ),
    "numeric-string-for-an-integer": (
        "get_updates",
        {"agent_id": "alice", "limit": "5"},
        "limit",
        'limit must be an integer between 1 and 500; got the string "5"; send 5 without quotes',
    ),
    "fraction-for-an-integer": (
        "get_updates",
        {"agent_id": "alice", "limit": 30.5},
        "limit",
        "limit must be an integer between 1 and 500; got the number 30.5; send a whole number",
    ),
    "null-for-a-required-field": (
        "get_updates",
        {"agent_id": None},
        "agent_id",
        f"agent_id must be a string; got null; {SCHEMA_HINT}",
    ),
    "string-for-a-boolean": (
        "list_agents",
        {"online_only": "true"},
        "online_only",
        'online_only must be true or false; got the string "true"; send true without quotes',
    ),
    "number-for-a-boolean": (
        "list_agents",
        {"online_only": 1},
        "online_only",
        f"online_only must be true or false; got the number 1; {SCHEMA_HINT}",
    ),
    "string-for-an-array": (
        "announce_work",
        {"agent_id": "alice", "subject": "s", "target_files": "a.py"},
        "target_files",
        'target_files must be an array; got the string "a.py"; send an array: ["a.py"]',
    ),
    "string-deep-in-a-list": (
        "log_file_edit",
        {"agent_id": "alice", "path": "a.py", "ranges": [[1, 2], [3, "4"]]},
        "ranges[1][1]",
        'ranges[1][1] must be an integer between 1 and 2147483647; got the string "4"; send 4 without quotes',
    ),
    "boolean-in-a-union": (
        "mark_read",
        {"agent_id": "alice", "message_ids": ["M-1", True]},
        "message_ids[1]",
        f"message_ids[1] must be a string or an integer between 1 and 4611686018427387904; got true; {SCHEMA_HINT}",
    ),
    "numeric-string-in-a-task-item": (
        "add_tasks",
        {"tasks": [{"task_id": "t", "description": "d", "priority": "5"}]},
        "tasks[0].priority",
        'tasks[0].priority must be an integer between -1000 and 1000; got the string "5"; send 5 without quotes',
    ),
    "array-for-an-object": (
        "add_task",
        {"task_id": "t", "description": "d", "payload": [1]},
        "payload",
        f"payload must be an object; got an array; {SCHEMA_HINT}",
    ),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
async def test_a_value_of_the_wrong_json_type_is_refused_alike_on_mcp_and_rest_and_writes_nothing(
    tmp_path: Path, case: str
) -> None:
    tool, args, field, message = REFUSED[case]
    async with served(tmp_path) as (http, mcp):
        before = await written(mcp)
        response = await rest(http, tool, args)
        assert response.status_code == 422, response.text
        assert response.json() == {"ok": False, "error": message, "code": "invalid_input", "field": field}
        text = await call_error(mcp, tool, **args)
        # The MCP text is the SDK's tool-error prefix, then exactly the REST message and its code.
        assert text.endswith(f"{message} [invalid_input]"), text
        assert await written(mcp) == before


async def test_every_wrong_field_is_told_in_one_answer_the_first_sent_named_as_the_field(tmp_path: Path) -> None:
    async with served(tmp_path) as (http, mcp):
        args = {"path": "a.py", "ttl_s": "30", "wait_s": "5", "mode": 1}
        refused = (await rest(http, "acquire_lock", args)).json()
        assert refused["field"] == "ttl_s"
        assert refused["error"] == (
            'ttl_s must be a number between 1 and 86400; got the string "30"; send 30 without quotes. Also: '
            'wait_s must be a number between 0 and 300; got the string "5"; send 5 without quotes. Also: '
            f'mode must be one of "exclusive", "shared", "intent"; got the number 1; {SCHEMA_HINT}. Also: '
            "agent_id: required; add it"
        )
        assert (await call_error(mcp, "acquire_lock", **args)).endswith(f"{refused['error']} [invalid_input]")


async def test_a_call_with_thousands_of_wrong_values_is_answered_with_the_first_ten(tmp_path: Path) -> None:
    async with served(tmp_path) as (http, _):
        refused = (await rest(http, "mark_read", {"agent_id": "alice", "message_ids": [True] * 5000})).json()
        assert refused["field"] == "message_ids[0]"
        assert refused["error"].count("Also:") == 9 and "message_ids[9]" in refused["error"]


async def test_an_object_key_is_cut_short_where_an_error_names_it(tmp_path: Path) -> None:
    async with served(tmp_path) as (http, _):
        refused = (await rest(http, "register_agent", {"name": "bob", "modules": {"k" * 50_000: 5}})).json()
        assert refused["code"] == "invalid_input" and len(refused["error"]) < 400, refused["error"][:400]


ACCEPTED = {
    "integer-for-a-number": ("acquire_lock", {**LOCK, "ttl_s": 30}),
    "fraction-for-a-number": ("acquire_lock", {**LOCK, "ttl_s": 30.5}),
    "enum-string": ("acquire_lock", {**LOCK, "mode": "shared"}),
    "null-for-an-optional-number": ("acquire_lock", {**LOCK, "ttl_s": None, "wait_s": None}),
    "whole-float-for-an-integer": ("get_updates", {"agent_id": "alice", "limit": 5.0}),
    "boolean": ("list_agents", {"online_only": True}),
    "null-for-an-optional-string": ("list_intents", {"agent_id": None, "active_only": False}),
    # Clients with strict tool schemas send null for every optional argument they leave out.
    "null-for-a-field-with-a-default": ("get_updates", {"agent_id": "alice", "limit": None}),
    "null-for-optional-task-item-fields": (
        "add_tasks",
        {"tasks": [{"task_id": "t", "description": "d", "priority": None, "depends_on": None, "payload": None}]},
    ),
    "whole-float-for-a-task-item-priority": (
        "add_tasks",
        {"tasks": [{"task_id": "u", "description": "d", "priority": 2.0}]},
    ),
    "list-of-strings": ("announce_work", {"agent_id": "alice", "subject": "s", "target_files": ["b.py"]}),
    "nested-integer-lists": ("log_file_edit", {"agent_id": "alice", "path": "a.py", "ranges": [[1, 2], [3, 4]]}),
    "free-form-object": ("add_task", {"task_id": "t", "description": "d", "payload": {"n": "1", "ok": True}}),
}


@pytest.mark.parametrize("case", ACCEPTED, ids=list(ACCEPTED))
async def test_values_the_published_schema_allows_are_accepted_on_mcp_and_rest(tmp_path: Path, case: str) -> None:
    tool, args = ACCEPTED[case]
    async with served(tmp_path) as (http, mcp):
        await call(mcp, tool, **args)
        response = await rest(http, tool, args)
        assert response.status_code == 200, response.text


async def test_a_union_of_string_and_integer_takes_either(tmp_path: Path) -> None:
    async with served(tmp_path) as (http, mcp):
        await call(mcp, "register_agent", name="bob", agent_id="bob")
        for text in ("one", "two"):
            await call(mcp, "send_message", from_agent="bob", to_agent="alice", content=text)
        ids = [m["message_id"] for m in (await call(mcp, "list_messages", agent_id="alice"))["messages"]]
        await call(mcp, "mark_read", agent_id="alice", message_ids=[ids[0], int(ids[1].split("-")[1])])
        response = await rest(http, "mark_read", {"agent_id": "alice", "message_ids": [int(ids[0].split("-")[1])]})
        assert response.status_code == 200, response.text
        assert (await call(mcp, "list_messages", agent_id="alice", unread_only=True))["messages"] == []


async def test_a_whole_float_for_an_integer_reaches_the_service_as_an_integer(tmp_path: Path) -> None:
    async with served(tmp_path) as (http, mcp):
        await call(mcp, "add_task", task_id="t", description="d", priority=3.0)
        task = (await call(mcp, "list_tasks"))["tasks"][0]
        assert task["priority"] == 3 and isinstance(task["priority"], int)
        lease = (await rest(http, "acquire_lock", {**LOCK, "ttl_s": 30})).json()["result"]
        assert lease["granted"] is True


async def test_mcp_still_parses_a_list_sent_as_json_text_but_no_other_string(tmp_path: Path) -> None:
    """Some MCP clients send a list argument as JSON inside a string; that repair stays for arrays and
    objects. A string for any other field stays the string sent: "null" is not null."""
    async with served(tmp_path) as (http, mcp):
        registered = await call(mcp, "register_agent", name="bob", agent_id="bob", modules='["core", "db"]')
        assert registered["agent_id"] == "bob"
        assert (await call(mcp, "get_agent", agent_id="bob"))["modules"] == ["core", "db"]
        text = await call_error(mcp, "list_agents", online_only="true")
        assert 'got the string "true"' in text
        # "null" for an optional string is an agent named "null" (none here), as over REST — not a broadcast.
        refused = await call_error(mcp, "send_message", from_agent="alice", content="hi", to_agent="null")
        over_rest = (
            await rest(http, "send_message", {"from_agent": "alice", "content": "hi", "to_agent": "null"})
        ).json()
        assert refused.endswith(f"{over_rest['error']} [{over_rest['code']}]"), (refused, over_rest)
        assert (await call(mcp, "list_messages", agent_id="bob"))["messages"] == []


async def test_null_for_an_argument_with_a_default_means_the_default(tmp_path: Path) -> None:
    async with served(tmp_path) as (http, mcp):
        await call(mcp, "register_agent", name="bob", agent_id="bob")
        for i in range(3):
            await call(mcp, "send_message", from_agent="bob", to_agent="alice", content=f"m{i}")
        defaulted = await call(mcp, "get_updates", agent_id="alice", limit=None, cursor=None)
        assert defaulted == await call(mcp, "get_updates", agent_id="alice")
        over_rest = (await rest(http, "get_updates", {"agent_id": "alice", "limit": None})).json()["result"]
        assert over_rest == defaulted


async def test_mcp_reads_null_sent_as_text_for_an_optional_list_or_number_as_not_given(tmp_path: Path) -> None:
    async with served(tmp_path) as (_, mcp):
        intent = await call(
            mcp, "announce_work", agent_id="alice", subject="s", target_files=["a.py"], depends_on_files="null"
        )
        assert intent["intent_id"]
        lease = await call(mcp, "acquire_lock", **LOCK, ttl_s="null")
        assert lease["granted"] is True


async def test_json_text_where_a_list_belongs_is_refused_over_rest_with_the_advice_to_send_the_list(
    tmp_path: Path,
) -> None:
    async with served(tmp_path) as (http, mcp):
        args = {"agent_id": "alice", "subject": "s", "target_files": '["a.py"]'}
        response = (await rest(http, "announce_work", args)).json()
        assert response["error"] == (
            'target_files must be an array; got the string "[\\"a.py\\"]";'
            " send the value itself, not JSON text in a string"
        )
        # Over MCP the same text is repaired into the list (some clients send lists that way) ...
        assert (await call(mcp, "announce_work", **args))["intent_id"]
        # ... but only into a value the argument takes: an object is not a list.
        text = await call_error(mcp, "announce_work", **{**args, "target_files": '{"a": 1}'})
        assert 'got the string "{\\"a\\": 1}"' in text


async def test_a_lone_surrogate_in_a_wrong_value_is_echoed_escaped_not_a_server_error(tmp_path: Path) -> None:
    async with served(tmp_path) as (http, mcp):
        before = await written(mcp)
        for args in ({"online_only": "\ud800"}, {"modules": {"\udc00": 5}}, {"online_only": True, "\udc00x": 1}):
            response = await http.post(
                "/api/v1/tools/list_agents" if "modules" not in args else "/api/v1/tools/register_agent",
                content=json.dumps(args).encode(),  # json.dumps escapes the surrogate: valid JSON on the wire
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 422, response.text
        body = json.dumps({"online_only": "\ud800"}).encode()
        headers = {"content-type": "application/json"}
        echoed = (await http.post("/api/v1/tools/list_agents", content=body, headers=headers)).json()["error"]
        assert echoed == 'online_only must be true or false; got the string "\\ud800"; ' + SCHEMA_HINT
        text = await call_error(mcp, "log_file_edit", agent_id="alice", path="a.py", ranges='["\ud800"]')
        assert "[invalid_input]" in text
        assert await written(mcp) == before


async def test_an_integer_too_long_to_read_is_named_by_its_length_alike_on_mcp_and_rest(tmp_path: Path) -> None:
    async with served(tmp_path) as (http, mcp):
        body = b'{"agent_id": "alice", "limit": "' + b"9" * 30 + b'"}'
        refused = (
            await http.post("/api/v1/tools/get_updates", content=body, headers={"content-type": "application/json"})
        ).json()
        assert refused["field"] == "limit"
        thread = (await rest(http, "get_thread", {"thread_id": "T-" + "9" * 5000})).json()
        assert thread["code"] == "invalid_input" and "5000 digits" in thread["error"]
        text = await call_error(mcp, "get_thread", thread_id="T-" + "9" * 5000)
        assert text.endswith(f"{thread['error']} [invalid_input]")


async def test_a_task_payload_holding_a_lone_surrogate_is_refused_and_the_board_stays_readable(tmp_path: Path) -> None:
    async with served(tmp_path) as (http, mcp):
        body = json.dumps({"task_id": "t", "description": "d", "payload": {"k": "\ud800"}}).encode()
        refused = await http.post("/api/v1/tools/add_task", content=body, headers={"content-type": "application/json"})
        assert refused.status_code == 422 and refused.json()["field"] == "payload.k", refused.text
        text = await call_error(mcp, "add_task", task_id="t", description="d", payload='{"\\ud800": 1}')
        assert "unpaired surrogate" in text
        assert (await call(mcp, "list_tasks"))["tasks"] == []


async def test_an_unknown_argument_is_told_beside_the_wrong_values(tmp_path: Path) -> None:
    async with served(tmp_path) as (http, _):
        refused = (await rest(http, "acquire_lock", {"agent_id": "alice", "pathh": "a.py", "ttl_s": "30"})).json()
        assert refused["field"] == "ttl_s"
        assert refused["error"].endswith(
            "Also: path: required; add it. Also: pathh: unknown argument; this tool takes agent_id, path, mode,"
            " ttl_s, wait_s"
        )
