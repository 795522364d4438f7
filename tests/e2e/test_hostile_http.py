"""Hostile bodies over REST and MCP: a 4xx naming the field (and a number's bounds), the same words on
both transports, nothing written, never a 500 (issue 7, defects 1, 2, 5 and 8)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from helpers import ServerProcess, call, call_error

DEEP = 100_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root: Path = tmp_path_factory.mktemp("hostile")
    (root / "repo").mkdir()
    process = ServerProcess(root / "data", root / "repo").start()
    try:
        yield process
    finally:
        process.stop()


def post_raw(server: ServerProcess, tool: str, body: bytes, **headers: str) -> httpx.Response:
    headers = {"content-type": "application/json", **headers}
    return httpx.post(f"{server.url}/api/v1/tools/{tool}", content=body, headers=headers, timeout=30)


def agents(server: ServerProcess) -> list[Any]:
    return list(httpx.post(f"{server.url}/api/v1/tools/list_agents", json={}).json()["result"]["agents"])


HOSTILE_BODIES = {
    "deeply-nested-list": (b'{"name": "m", "modules": ' + b"[" * DEEP + b"]" * DEEP + b"}", "modules"),
    "deeply-nested-object": (b'{"name": ' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}", "name"),
    "5000-digit-int": (b'{"count": ' + b"9" * 5000 + b"}", "count"),
    "400-digit-negative-int": (b'{"count": -' + b"9" * 400 + b"}", "count"),
    "float-overflowing-to-infinity": (b'{"count": 1, "timeout_s": 1e400}', "timeout_s"),
    "nan-constant": (b'{"count": 1, "timeout_s": NaN}', None),
}


@pytest.mark.parametrize("case", HOSTILE_BODIES, ids=list(HOSTILE_BODIES))
def test_a_hostile_rest_body_is_a_422_naming_the_field_and_writes_nothing(server: ServerProcess, case: str) -> None:
    body, field = HOSTILE_BODIES[case]
    response = post_raw(server, "register_agent" if b"name" in body else "wait_for_peers", body)
    assert response.status_code == 422, response.text[:300]
    error = response.json()
    assert error["code"] == "invalid_input"
    if field is not None:
        assert error["field"] == field and field in error["error"]
    assert agents(server) == []


@pytest.mark.parametrize("number", ["9" * 400, "-" + "9" * 400, "9" * 25, "1e400"])
@pytest.mark.parametrize(("tool", "field"), [("get_updates", "cursor"), ("get_updates", "limit")])
def test_huge_numbers_in_numeric_arguments_are_refused_naming_the_argument(
    server: ServerProcess, number: str, tool: str, field: str
) -> None:
    body = f'{{"agent_id": "alice", "{field}": {number}}}'.encode()
    response = post_raw(server, tool, body)
    assert response.status_code == 422, response.text[:300]
    assert response.json()["field"] == field


async def test_huge_and_deep_arguments_over_mcp_are_tool_errors_naming_the_argument(server: ServerProcess) -> None:
    nested: Any = []
    for _ in range(200):
        nested = [nested]
    async with Client(server.mcp_url) as client:
        for args, field in [
            ({"agent_id": "alice", "cursor": 10**400}, "cursor"),
            ({"agent_id": "alice", "limit": -(10**30)}, "limit"),
            # Not inf: the client sends it as null, which means "the default" (the server never sees inf).
            ({"agent_id": "alice", "limit": 1e300}, "limit"),
            ({"name": "m", "modules": nested}, "modules"),
        ]:
            text = await call_error(client, "get_updates" if "agent_id" in args else "register_agent", **args)
            assert field in text and "[invalid_input]" in text, text
        assert (await call(client, "list_agents"))["agents"] == []


async def test_mcp_and_rest_give_the_same_message_for_the_same_mistake(server: ServerProcess) -> None:
    cases: list[dict[str, Any]] = [
        {"name": "alice", "modules": "not-a-list-of-modules", "nickname": "al"},
        {"agent_id": "alice"},  # name missing
        {"name": 12},
    ]
    async with Client(server.mcp_url) as client:
        for args in cases:
            rest = httpx.post(f"{server.url}/api/v1/tools/register_agent", json=args).json()
            mcp_text = await call_error(client, "register_agent", **args)
            assert rest["code"] == "invalid_input"
            # The MCP text is the SDK's tool-error prefix, then exactly the REST message and its code.
            assert mcp_text.endswith(f"{rest['error']} [invalid_input]"), (mcp_text, rest)
            assert "pydantic" not in mcp_text and "errors.pydantic.dev" not in mcp_text
        assert (await call(client, "list_agents"))["agents"] == []


async def test_unknown_arguments_are_refused_on_both_transports_with_the_known_ones_listed(
    server: ServerProcess,
) -> None:
    rest = httpx.post(f"{server.url}/api/v1/tools/register_agent", json={"name": "alice", "nmae": "x"})
    assert rest.status_code == 422
    assert rest.json()["field"] == "nmae" and "unknown argument" in rest.json()["error"]
    assert "agent_id" in rest.json()["error"]
    async with Client(server.mcp_url) as client:
        text = await call_error(client, "register_agent", name="alice", nmae="x")
        assert "nmae: unknown argument" in text and "agent_id" in text
        assert (await call(client, "list_agents"))["agents"] == []


def test_an_unknown_rest_tool_is_a_404_not_found(server: ServerProcess) -> None:
    response = httpx.post(f"{server.url}/api/v1/tools/no_such_tool", json={})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found" and "GET /api/v1/tools" in response.json()["error"]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]
)
def test_a_rest_body_that_is_not_declared_json_is_refused_and_writes_nothing(
    server: ServerProcess, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = httpx.post(
        f"{server.url}/api/v1/tools/register_agent", content=json.dumps({"name": "mallory"}), headers=headers
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert "application/json" in response.json()["error"]
    assert agents(server) == []


def test_a_json_body_with_a_charset_and_an_empty_body_without_a_type_are_accepted(server: ServerProcess) -> None:
    typed = post_raw(
        server, "register_agent", b'{"name": "carol"}', **{"content-type": "application/json; charset=utf-8"}
    )
    assert typed.status_code == 200
    untyped = httpx.post(f"{server.url}/api/v1/tools/list_agents", content=b"")
    assert untyped.status_code == 200
    assert [a["agent_id"] for a in untyped.json()["result"]["agents"]] == ["carol"]
    httpx.post(f"{server.url}/api/v1/tools/deregister_agent", json={"agent_id": "carol"})


@pytest.mark.parametrize("route", ["/hooks/claude/PreToolUse", "/hooks/git/pre-commit", "/hooks/git/pre-push"])
@pytest.mark.parametrize("case", ["deeply-nested-object", "5000-digit-int"])
def test_hook_routes_refuse_hostile_bodies_with_a_422_too(server: ServerProcess, route: str, case: str) -> None:
    body, field = HOSTILE_BODIES[case]
    response = httpx.post(server.url + route, content=body, headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 422, response.text[:300]
    assert response.json()["field"] == field


def test_a_huge_integer_is_refused_with_the_fields_own_bounds_not_a_64_bit_range(server: ServerProcess) -> None:
    body = b'{"agent_id": "a", "path": "x.py", "ttl_s": ' + b"9" * 40 + b"}"
    response = httpx.post(
        server.url + "/api/v1/tools/acquire_lock", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["field"] == "ttl_s"
    error = response.json()["error"]
    assert "9223372036854775807" not in error
    assert error == "ttl_s must be between 1 and 86400; got an integer of 40 digits"


# -- every numeric argument of every tool, with a 400-digit integer ---------------------------------

Where = tuple[str | int, ...]


def numeric_fields(schema: dict[str, Any]) -> list[tuple[Where, dict[str, Any]]]:
    """Every number a tool takes, at any depth (list items, object fields, union alternatives)."""
    found: list[tuple[Where, dict[str, Any]]] = []
    pending: list[tuple[Where, dict[str, Any]]] = [((name,), node) for name, node in schema["properties"].items()]
    while pending:
        where, node = pending.pop()
        for option in [node, *node.get("anyOf", [])]:
            kind = option.get("type")
            if kind in ("integer", "number"):
                found.append((where, option))
            elif kind == "array" and isinstance(option.get("items"), dict):
                pending.append(((*where, 0), option["items"]))
            elif kind == "object":
                pending.extend(((*where, key), sub) for key, sub in option.get("properties", {}).items())
    return found


def placed(where: Where, value: Any) -> Any:
    """`value` at `where` inside the argument: ("ranges", 0, 0) → [[value]]; ("tasks", 0, "priority") → [{…}]."""
    for step in reversed(where[1:]):
        value = [value] if isinstance(step, int) else {step: value}
    return value


def spelled(where: Where) -> str:
    return where[0] + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in where[1:])  # type: ignore[operator]


def exact(bound: float) -> str:
    """A bound as the error must state it: 86400.0 is 86400, 2**62 is spelled out."""
    return str(int(bound)) if float(bound).is_integer() else str(bound)


HUGE_INTS = {"400-digit": 10**400 - 1, "400-digit-negative": -(10**400 - 1)}


def every_numeric_argument(server: ServerProcess) -> list[tuple[str, Where, str]]:
    """(tool, where, "must be between LOW and HIGH") for every numeric argument, from the published schemas."""
    tools = httpx.get(f"{server.url}/api/v1/tools").json()["tools"]
    out = []
    for tool in tools:
        for where, node in numeric_fields(tool["input_schema"]):
            assert "minimum" in node and "maximum" in node, f"{tool['name']}.{spelled(where)} declares no bounds"
            out.append((tool["name"], where, f"must be between {exact(node['minimum'])} and {exact(node['maximum'])}"))
    return out


@pytest.mark.parametrize("number", HUGE_INTS.values(), ids=list(HUGE_INTS))
def test_every_numeric_argument_of_every_tool_refuses_a_huge_integer_over_rest_with_its_bounds(
    server: ServerProcess, number: int
) -> None:
    cases = every_numeric_argument(server)
    assert len(cases) >= 35  # every tool's numbers are found, nested ones included
    before = httpx.post(f"{server.url}/api/v1/tools/coordinator_status", json={}).json()["result"]["latest_cursor"]
    for tool, where, bounds in cases:
        body = json.dumps({where[0]: placed(where, number)}).encode()
        response = post_raw(server, tool, body)
        assert response.status_code == 422, (tool, where, response.text[:300])
        error = response.json()
        field = spelled(where)
        assert error["code"] == "invalid_input" and error["field"] == field, (tool, error)
        # The call sends only this argument: the answer goes on to name the required ones missing.
        assert error["error"].split(". Also: ")[0] == f"{field} {bounds}; got an integer of 400 digits", (tool, error)
    after = httpx.post(f"{server.url}/api/v1/tools/coordinator_status", json={}).json()["result"]["latest_cursor"]
    assert after == before and agents(server) == []


async def test_every_numeric_argument_of_every_tool_refuses_a_huge_integer_over_mcp_with_its_bounds(
    server: ServerProcess,
) -> None:
    rest_only = {"force_release_lock"}  # the dashboard's; MCP refuses it before reading arguments
    cases = [case for case in every_numeric_argument(server) if case[0] not in rest_only]
    async with Client(server.mcp_url) as client:
        for number in HUGE_INTS.values():
            for tool, where, bounds in cases:
                text = await call_error(client, tool, **{str(where[0]): placed(where, number)})
                field = spelled(where)
                first = text.removeprefix(f"Error executing tool {tool}: ").split(". Also: ")[0]
                assert first.removesuffix(" [invalid_input]") == f"{field} {bounds}; got an integer of 400 digits"
                assert text.endswith(" [invalid_input]"), (tool, text)
        assert (await call(client, "list_agents"))["agents"] == []


# -- symlink loops in the repository ------------------------------------------------------------

LOOPING_PATHS = [
    ("acquire_lock", {"agent_id": "nobody", "path": "loop/x.py"}, "path"),
    ("check_lock", {"path": "loop/"}, "path"),
    ("list_locks", {"path": "loop/*.py"}, "path"),
    ("check_file_conflict", {"agent_id": "nobody", "path": "loop"}, "path"),
    ("get_blast_radius", {"path": "loop/x.py"}, "path"),
    ("check_conflicts", {"agent_id": "nobody", "target_files": ["ok.py", "loop/x.py"]}, "target_files[1]"),
]


async def test_a_path_through_a_symlink_loop_is_a_clear_error_on_rest_and_mcp_and_never_hangs(
    server: ServerProcess,
) -> None:
    link = server.repo / "loop"
    if not link.is_symlink():
        link.symlink_to("loop")
    async with Client(server.mcp_url) as client:
        for tool, args, field in LOOPING_PATHS:
            response = httpx.post(f"{server.url}/api/v1/tools/{tool}", json=args, timeout=10)
            assert response.status_code == 422, (tool, response.text[:300])
            error = response.json()
            assert error["field"] == field and "symlink loop at 'loop'" in error["error"], (tool, error)
            assert "fix or remove the link 'loop'" in error["error"]
            text = await call_error(client, tool, **args)
            assert text.endswith(f"{error['error']} [invalid_input]"), (tool, text)
    assert agents(server) == []
