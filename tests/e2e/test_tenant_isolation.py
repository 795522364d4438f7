"""Two organisations, two projects, one server: nothing crosses (issue 10, SPEC F-92).

A real server in token mode serves its own project `alpha` of org `acme` and, through the
`projects` setting, `beta` of org `globex`. Each project is seeded with state carrying a marker
only its own agents ever send (`ALPHA-SECRET`, `BETA-SECRET`): intents, a consultation thread,
a lease, a task, shared context, messages. Then an agent of each project calls every tool the
server has, with arguments built from the tool's input schema and filled with the *other*
project's ids (its thread, intent, task, lease path, context key, agent ids), over REST, and a few
over MCP. No answer may carry the other project's marker, and the other project's event log must
not move. SSE streams — an agent's own and an admin's firehose — are read until a later event of
their own project arrives, and must have delivered nothing of the other project.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from helpers import ServerProcess
from huddle.service.token_codec import TokenCodec

SECRET = "tenant-secret-" + "z" * 32
REGISTRATION = "tenant-registration-" + "r" * 32
SERVER_ENV = {
    "HUDDLE_AUTH": "token",
    "HUDDLE_AUTH_SECRET": SECRET,
    "HUDDLE_PROJECT": "alpha",
    "HUDDLE_ORG": "acme",
    "HUDDLE_PROJECTS": "globex/beta",
    "HUDDLE_REGISTRATION_SECRET": REGISTRATION,
}
PROJECTS = {"alpha": "acme", "beta": "globex"}


@dataclass
class Project:
    name: str
    agent: str
    peer: str
    token: str
    peer_token: str
    admin: str
    ids: dict[str, Any]

    @property
    def marker(self) -> str:
        return f"{self.name.upper()}-SECRET"


def _token(project: str, agent: str, scopes: set[str] | None = None) -> str:
    codec = TokenCodec(SECRET, clock=time.time)
    token, _ = codec.issue(agent, project=project, org=PROJECTS[project], scopes=scopes or {"agent"}, ttl_s=3600)
    return token


def rest(server: ServerProcess, token: str, tool: str, **args: Any) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/tools/{tool}", json=args, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def ok(server: ServerProcess, token: str, tool: str, **args: Any) -> dict[str, Any]:
    response = rest(server, token, tool, **args)
    assert response.status_code == 200, (tool, response.text)
    result: dict[str, Any] = response.json()["result"]
    return result


def latest(server: ServerProcess, p: Project) -> int:
    events = ok(server, p.admin, "list_events", limit=1)["events"]
    return int(events[0]["cursor"]) if events else 0


def seed(server: ServerProcess, name: str) -> Project:
    agent, peer = f"{name}-dev", f"{name}-peer"
    p = Project(name, agent, peer, _token(name, agent), _token(name, peer), _token(name, "ops", {"admin"}), {})
    secret_file = f"src/{name}_secret.py"
    for who, token in ((agent, p.token), (peer, p.peer_token)):
        ok(server, token, "register_agent", name=f"{p.marker} {who}", modules=[f"{name}_mod"])
    first = ok(server, p.token, "announce_work", subject=f"{p.marker} refactor", target_files=[secret_file])
    clash = ok(server, p.peer_token, "announce_work", subject=f"{p.marker} rewrite", target_files=[secret_file])
    assert clash["verdict"] == "consult", clash
    ok(server, p.token, "acquire_lock", path=f"src/{name}_locked.py")
    ok(server, p.token, "add_task", task_id=f"{name}-task", description=f"{p.marker} task")
    ok(server, p.token, "share_context", type="decision", content=f"{p.marker} context", tags=[f"{name}-tag"])
    ok(server, p.token, "send_message", content=f"{p.marker} hello", to_agent=peer)
    ok(server, p.token, "send_message", content=f"{p.marker} to all")
    ok(server, p.token, "log_action_summary", summary=f"{p.marker} did things")
    ok(server, p.token, "log_file_edit", path=secret_file)
    ok(server, p.admin, "set_dependency_map", modules={f"{name}_mod": {"depends_on": [], "paths": ["src/"]}})
    p.ids = {
        "thread_id": clash["thread_id"],
        "intent_id": first["intent_id"],
        "task_id": f"{name}-task",
        "id": f"{name}-task",
        "tag": f"{name}-tag",
        "path": f"src/{name}_locked.py",
        "module": f"{name}_mod",
        "to_agent": agent,
        "holder": agent,
        "target_files": [secret_file],
        "depends_on_files": [secret_file],
    }
    return p


@pytest.fixture
def server(server_factory: Any) -> ServerProcess:
    started: ServerProcess = server_factory(env=SERVER_ENV)
    return started


def _value(name: str, schema: dict[str, Any], other: Project) -> Any:
    """A value for one argument: the other project's id where the name asks for one, else the
    smallest valid value of its type (bounds respected, waits as short as allowed)."""
    if name in other.ids:
        return other.ids[name]
    options = schema.get("anyOf", [schema])
    kind = next((o for o in options if o.get("type") != "null"), options[0])
    if "enum" in kind:
        return kind["enum"][0]
    if kind.get("type") == "integer":
        return int(kind.get("minimum", 1))
    if kind.get("type") == "number":
        return float(kind.get("minimum", 0.1))
    if kind.get("type") == "boolean":
        return False
    if kind.get("type") == "array":
        return []
    if kind.get("type") == "object":
        return {}
    return "x"


def sweep_every_tool(server: ServerProcess, me: Project, other: Project) -> int:
    tools = httpx.get(f"{server.url}/api/v1/tools", headers={"Authorization": f"Bearer {me.token}"}).json()["tools"]
    assert len(tools) > 50
    before = latest(server, other)
    calls = own = 0
    for tool in tools:
        schema = tool["input_schema"] or {}
        properties: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        args = {
            name: _value(name, spec, other)
            for name, spec in properties.items()
            if (name in required or name in other.ids) and name not in ("agent_id", "from_agent")
        }
        response = rest(server, me.token, tool["name"], **args)
        assert response.status_code != 500, (tool["name"], response.text)  # 503: MQTT is off for beta
        assert other.marker not in response.text, (tool["name"], args, response.text[:500])
        calls += 1
        own += me.marker in response.text
    assert latest(server, other) == before, f"{me.name}'s calls changed {other.name}'s event log"
    # The sweep can see a crossing: the same tools do show the caller's own project's secrets.
    assert own >= 5, own
    return calls


def read_until_own(server: ServerProcess, token: str, me: Project, other: Project, agent: str | None) -> list[Any]:
    """Opens an SSE stream, makes `me` act (other project acting first), reads until that arrives."""
    params = {"agent": agent} if agent else {}
    received: list[Any] = []
    with httpx.stream(
        "GET", f"{server.url}/api/events", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as stream:
        assert stream.status_code == 200
        ok(server, other.token, "send_message", content=f"{other.marker} broadcast while you listen")
        ok(server, other.token, "log_action_summary", summary=f"{other.marker} busy")
        ok(server, me.peer_token, "send_message", content=f"{me.marker} done", to_agent=me.agent)
        for line in stream.iter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                received.append(event)
                if event.get("content") == f"{me.marker} done":
                    break
    return received


def test_nothing_of_one_org_reaches_an_agent_of_another_over_any_tool_or_stream(server: ServerProcess) -> None:
    alpha, beta = seed(server, "alpha"), seed(server, "beta")
    calls = sweep_every_tool(server, beta, alpha) + sweep_every_tool(server, alpha, beta)
    for p in (alpha, beta):  # the sweep called deregister_agent too
        for token in (p.token, p.peer_token):
            ok(server, token, "register_agent", name=p.marker)
    crossings = 0
    for me, other in ((alpha, beta), (beta, alpha)):
        for token, agent in ((me.token, me.agent), (me.admin, None)):
            received = read_until_own(server, token, me, other, agent)
            assert received, "the stream delivered nothing"
            crossings += sum(other.marker in json.dumps(e) for e in received)
    assert crossings == 0
    assert calls > 100


def test_a_token_of_one_project_is_refused_by_name_for_another(server: ServerProcess) -> None:
    stranger = TokenCodec(SECRET, clock=time.time).issue(
        "mallory", project="gamma", org="acme", scopes={"admin"}, ttl_s=60
    )[0]
    refused = rest(server, stranger, "coordinator_status")
    assert refused.status_code == 401 and "another project or org" in refused.json()["error"]
    wrong_org = TokenCodec(SECRET, clock=time.time).issue(
        "mallory", project="beta", org="acme", scopes={"admin"}, ttl_s=60
    )[0]
    assert rest(server, wrong_org, "coordinator_status").status_code == 401


async def test_each_project_sees_only_its_own_board_over_mcp(server: ServerProcess) -> None:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    alpha, beta = seed(server, "alpha"), seed(server, "beta")
    for me, other in ((alpha, beta), (beta, alpha)):
        async with (
            httpx.AsyncClient(headers={"Authorization": f"Bearer {me.token}"}) as http,
            streamable_http_client(server.mcp_url, http_client=http) as (read, write, *_),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            for tool, args in (
                ("coordinator_status", {}),
                ("list_agents", {}),
                ("get_thread", {"thread_id": other.ids["thread_id"]}),
                ("query_context", {"tag": other.ids["tag"]}),
            ):
                result = await session.call_tool(tool, args)
                text = json.dumps([c.model_dump() for c in result.content])
                assert other.marker not in text, (tool, text[:300])
                assert me.marker in text or result.is_error or tool != "coordinator_status"


async def test_over_one_mqtt_broker_each_projects_wildcard_hears_only_its_own_project(server: ServerProcess) -> None:
    """The server's embedded broker serves both projects, each under its own root, each with its own tokens."""
    import aiomqtt

    from push_helpers import runtime

    alpha, beta = seed(server, "alpha"), seed(server, "beta")
    port = int(runtime(server)["mqtt_port"])
    for me, other in ((alpha, beta), (beta, alpha)):
        heard: list[str] = []
        async with aiomqtt.Client("127.0.0.1", port, username=me.peer, password=me.peer_token, timeout=10) as mqtt:
            await mqtt.subscribe("#", qos=1)
            ok(server, other.token, "send_message", content=f"{other.marker} over mqtt?")
            ok(server, other.token, "log_action_summary", summary=f"{other.marker} busy")
            ok(server, me.token, "send_message", content=f"{me.marker} done", to_agent=me.peer)
            async with asyncio.timeout(20):
                async for message in mqtt.messages:
                    heard.append(bytes(message.payload).decode())  # type: ignore[arg-type]
                    if f"{me.marker} done" in heard[-1]:
                        break
        assert heard and not any(other.marker in text for text in heard), heard
        # A token is held to its own project's root: naming the other root in a filter is refused outright.
        async with aiomqtt.Client("127.0.0.1", port, username=me.peer, password=me.peer_token, timeout=10) as mqtt:
            granted = await mqtt.subscribe(f"huddle/{other.name}/#", qos=1)
            assert [getattr(code, "value", code) for code in granted] == [0x80], granted


def test_an_agent_of_another_project_registers_and_refreshes_into_its_own_project(server: ServerProcess) -> None:
    """/register and /refresh carry no bearer token for the router to read: the body says the project."""
    from huddle.app import project_registration_secret
    from huddle.settings import Tenant

    crossing = httpx.post(
        f"{server.url}/api/v1/auth/register",
        json={"agent_id": "b9", "registration_secret": REGISTRATION, "project": "beta"},
    )
    assert crossing.status_code == 403  # the server's own project's secret does not admit into another org's
    betas = project_registration_secret(REGISTRATION, Tenant("globex", "beta"))
    registered = httpx.post(
        f"{server.url}/api/v1/auth/register",
        json={"agent_id": "b9", "registration_secret": betas, "project": "beta"},
    )
    assert registered.status_code == 200, registered.text
    refreshed = httpx.post(
        f"{server.url}/api/v1/auth/refresh", json={"refresh_token": registered.json()["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    me = httpx.get(
        f"{server.url}/api/v1/auth/whoami", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    ).json()
    assert (me["agent_id"], me["org"], me["project"]) == ("b9", "globex", "beta")
    unknown = httpx.post(
        f"{server.url}/api/v1/auth/register",
        json={"agent_id": "b10", "registration_secret": REGISTRATION, "project": "gamma"},
    )
    assert unknown.status_code == 422 and "no project 'gamma'" in unknown.json()["error"]


async def test_an_agent_of_another_project_with_the_same_id_cannot_take_over_an_mqtt_session(
    server: ServerProcess,
) -> None:
    """The same agent id in another project is another agent: it cannot resume its persistent session."""
    import aiomqtt

    from push_helpers import runtime

    port = int(runtime(server)["mqtt_port"])
    alpha = seed(server, "alpha")
    seed(server, "beta")
    twin = _token("beta", alpha.peer)  # beta's agent with alpha's peer's id
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        username=alpha.peer,
        password=alpha.peer_token,
        identifier="peer-session",
        clean_session=False,
        timeout=10,
    ) as mqtt:
        await mqtt.subscribe(f"huddle/alpha/agents/{alpha.peer}/inbox", qos=1)
    ok(server, alpha.token, "send_message", content=f"{alpha.marker} queued for the peer", to_agent=alpha.peer)
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(
            "127.0.0.1",
            port,
            username=alpha.peer,
            password=twin,
            identifier="peer-session",
            clean_session=False,
            timeout=10,
        ):
            pass


def test_the_operators_cli_issues_and_names_secrets_for_each_project_it_serves(server: ServerProcess) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, **SERVER_ENV}

    def huddle(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "huddle.cli.main", "token", *args, "--data-dir", str(server.data_dir)],
            env=env,
            capture_output=True,
            text=True,
            cwd=server.repo,
        )

    issued = huddle("issue", "--agent", "b-cli", "--project", "beta")
    assert issued.returncode == 0, issued.stderr
    me = httpx.get(f"{server.url}/api/v1/auth/whoami", headers={"Authorization": f"Bearer {issued.stdout.strip()}"})
    assert (me.json()["org"], me.json()["project"]) == ("globex", "beta")
    unknown = huddle("issue", "--agent", "x", "--project", "gamma")
    assert unknown.returncode == 1 and "serves alpha, beta" in unknown.stderr
    own, betas = huddle("registration-secret"), huddle("registration-secret", "--project", "beta")
    assert own.stdout.strip() == REGISTRATION and betas.stdout.strip() not in ("", REGISTRATION)
