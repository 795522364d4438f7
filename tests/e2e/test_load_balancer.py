"""Several Huddle instances behind one nginx, configured by the shipped deploy/nginx/huddle.conf.

Three real `huddle server start` processes share one fresh PostgreSQL database; a real nginx (Debian's)
runs the shipped config with the test's ports; official MCP SDK clients, REST and SSE go through it.
Each response names the instance that produced it (`X-Huddle-Instance`), which is how the tests see
where a request landed. The instances keep their default names: the ports they listen on.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from balancer_helpers import Nginx, free_port, render
from helpers import ServerProcess, call
from postgres_helpers import fresh_database
from push_helpers import sse, tool

INSTANCE = "x-huddle-instance"
SESSION = "mcp-session-id"
MAX_CLIENTS = 12  # enough clients that least_conn puts a session on every instance


@dataclass
class Team:
    instances: list[ServerProcess]
    nginx: Nginx

    @property
    def names(self) -> list[str]:
        return [json.loads((s.data_dir / "server.json").read_text())["instance_name"] for s in self.instances]

    def by_name(self, name: str) -> ServerProcess:
        return self.instances[self.names.index(name)]


@contextlib.contextmanager
def team_of(tmp: Path, count: int, *extra: str) -> Iterator[Team]:
    """`count` instances on one fresh PostgreSQL database behind nginx running the shipped config."""
    repo = tmp / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    nginx: Nginx | None = None
    with fresh_database() as url:
        args = ["--db-url", url, "--mqtt-broker", "off", "--analysis", "off", *extra]
        started = [ServerProcess(tmp / f"data{i}", repo, args, mqtt_port=None) for i in range(count)]
        try:
            # One after another: a start is mostly imports (CPU), so side by side on a busy machine
            # each would only take longer, and every start has its own timeout.
            for server in started:
                server.start()
            port = free_port()
            nginx = Nginx(tmp / "nginx", render([s.port for s in started], port), port).start()
            yield Team(started, nginx)
        finally:
            if nginx is not None:
                nginx.stop()
            for server in started:
                server.stop()


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """Three instances behind nginx, shared by the tests that leave every instance running."""
    with team_of(tmp_path_factory.mktemp("team"), 3) as started:
        yield started


@dataclass
class Hit:
    method: str
    session: str | None  # the Mcp-Session-Id the request carried
    issued: str | None  # the Mcp-Session-Id the response assigned
    instance: str | None
    status: int


@dataclass
class Agent:
    """An MCP client through the balancer, recording where each of its requests landed."""

    client: Client
    hits: list[Hit] = field(default_factory=list)

    @property
    def session_id(self) -> str:
        issued = [h.issued for h in self.hits if h.issued]
        assert issued, "no MCP session was assigned"
        return str(issued[0])

    @property
    def home(self) -> str:
        """The instance the session id names."""
        return self.session_id.split(".", 1)[0]

    def landed(self) -> set[str | None]:
        return {h.instance for h in self.hits if h.session is not None}


@contextlib.asynccontextmanager
async def agent(url: str, *, mode: str = "legacy", message_handler: Any = None) -> AsyncIterator[Agent]:
    http = create_mcp_http_client()
    hits: list[Hit] = []

    async def record(response: httpx2.Response) -> None:
        hits.append(
            Hit(
                response.request.method,
                response.request.headers.get(SESSION),
                response.headers.get(SESSION),
                response.headers.get(INSTANCE),
                response.status_code,
            )
        )

    http.event_hooks["response"].append(record)
    transport = streamable_http_client(url, http_client=http)
    async with http, Client(transport, mode=mode, message_handler=message_handler) as client:  # type: ignore[arg-type]
        yield Agent(client, hits)


async def spread(stack: contextlib.AsyncExitStack, team: Team, *, prefix: str, **kwargs: Any) -> list[Agent]:
    """Opens MCP clients through the balancer until every instance holds at least one session."""
    agents: list[Agent] = []
    while {a.home for a in agents} != set(team.names):
        assert len(agents) < MAX_CLIENTS, f"the balancer put sessions only on {sorted({a.home for a in agents})}"
        opened = await stack.enter_async_context(agent(team.nginx.url + "/mcp", **kwargs))
        await call(opened.client, "register_agent", agent_id=f"{prefix}{len(agents)}", name=f"{prefix}{len(agents)}")
        agents.append(opened)
    return agents


class Notifications:
    """A message_handler recording resources/updated notifications."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._changed = anyio.Event()

    async def __call__(self, message: object) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.uris.append(str(message.params.uri))
            self._changed.set()

    async def wait_for(self, uri: str, timeout: float = 15) -> None:
        with anyio.fail_after(timeout):
            while uri not in self.uris:
                self._changed = anyio.Event()
                await self._changed.wait()


async def subscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated as of 2026-07-28, and exactly what handshake-era clients send
        await client.subscribe_resource(uri)


async def test_every_request_of_an_mcp_session_reaches_the_instance_that_created_it(team: Team) -> None:
    async with contextlib.AsyncExitStack() as stack:
        agents = await spread(stack, team, prefix="sticky")
        for i, a in enumerate(agents):
            await call(a.client, "announce_work", agent_id=f"sticky{i}", subject="work", target_files=[f"s/{i}.py"])
            await call(a.client, "get_updates", agent_id=f"sticky{i}")
            await call(a.client, "list_agents")
        for a in agents:
            assert a.home in team.names
            assert a.landed() == {a.home}, f"session {a.session_id} was served by {a.landed()}"
            assert all(h.status < 400 for h in a.hits), a.hits
            assert len([h for h in a.hits if h.session is not None]) >= 4
        # Every instance sees what the others wrote: one database behind all of them.
        listed = await call(agents[0].client, "list_agents")
        ids = {row["agent_id"] for row in listed["agents"]}
        assert {f"sticky{i}" for i in range(len(agents))} <= ids


async def test_a_2026_client_needs_no_session_and_is_served_by_any_instance(team: Team) -> None:
    async with agent(team.nginx.url + "/mcp", mode="auto") as modern:
        await call(modern.client, "register_agent", agent_id="modern", name="modern")
        for n in range(3):
            await call(modern.client, "announce_work", agent_id="modern", subject="m", target_files=[f"m/{n}.py"])
        assert all(h.session is None and h.issued is None for h in modern.hits)
        assert {h.instance for h in modern.hits} <= set(team.names)
        assert all(h.status < 400 for h in modern.hits), modern.hits


async def test_a_consultation_opened_through_one_instance_notifies_a_subscriber_on_another(team: Team) -> None:
    notes = Notifications()
    async with contextlib.AsyncExitStack() as stack:
        watchers = await spread(stack, team, prefix="watcher", message_handler=notes)
        alice = watchers[0]
        bob = next(a for a in watchers if a.home != alice.home)
        inbox = "huddle://agents/watcher0/inbox"
        await subscribe(alice.client, inbox)
        await call(alice.client, "announce_work", agent_id="watcher0", subject="refactor", target_files=["n/app.py"])
        index = watchers.index(bob)
        result = await call(
            bob.client, "announce_work", agent_id=f"watcher{index}", subject="fix", target_files=["n/app.py"]
        )
        assert result["verdict"] == "consult", result
        await notes.wait_for(inbox)
        read = await alice.client.read_resource(inbox)
        content = read.contents[0]
        assert isinstance(content, types.TextResourceContents)
        events = json.loads(content.text)["events"]
        assert any(e["event"] == "thread.opened" and e["thread_id"] == result["thread_id"] for e in events)
        assert alice.landed() == {alice.home} and bob.landed() == {bob.home}


async def test_rest_and_sse_through_the_balancer_see_writes_made_on_every_instance(team: Team) -> None:
    async with httpx.AsyncClient(base_url=team.nginx.url, timeout=15) as http:
        health = await http.get("/health")
        assert health.status_code == 200 and health.headers[INSTANCE] in team.names
        async with sse(http, agent="rest-b") as stream:
            served_by = stream.response.headers[INSTANCE]
            others = [s for s in team.instances if team.names[team.instances.index(s)] != served_by]
            # The write happens on an instance other than the one holding the SSE stream.
            async with httpx.AsyncClient(base_url=others[0].url, timeout=15) as direct:
                await tool(direct, "register_agent", agent_id="rest-a", name="rest-a")
                await tool(direct, "register_agent", agent_id="rest-b", name="rest-b")
                await tool(direct, "announce_work", agent_id="rest-a", subject="a", target_files=["r/app.py"])
                opened = await tool(direct, "announce_work", agent_id="rest-b", subject="b", target_files=["r/app.py"])
            assert opened["verdict"] == "consult"
            frame = await stream.until(lambda e: e.data.get("event") == "thread.opened")
            assert frame.data["thread_id"] == opened["thread_id"]
        # REST through the balancer reads the same state, whichever instance answers.
        seen: set[str] = set()
        for _ in range(6):
            response = await http.post("/api/v1/tools/get_thread", json={"thread_id": opened["thread_id"]})
            assert response.status_code == 200 and response.json()["result"]["thread_id"] == opened["thread_id"]
            seen.add(response.headers[INSTANCE])
        assert seen <= set(team.names)


async def test_dashboard_tool_calls_return_to_the_instance_whose_cookie_they_carry(team: Team) -> None:
    async with httpx.AsyncClient(base_url=team.nginx.url, timeout=15) as page:
        loaded = await page.get("/dashboard")
        assert loaded.status_code == 200
        issuer = loaded.headers[INSTANCE]
        assert page.cookies["huddle_dashboard"].startswith(issuer + ".")
        for n in range(6):  # a person's actions work on every call, not on one in three
            response = await page.post(
                "/api/v1/tools/register_agent", json={"agent_id": f"human:lead{n}", "name": f"lead {n}"}
            )
            assert response.status_code == 200, response.text
            assert response.headers[INSTANCE] == issuer


async def test_killing_an_instance_fails_its_sessions_clearly_while_the_others_go_on(tmp_path: Path) -> None:
    with team_of(tmp_path, 2) as team:
        async with contextlib.AsyncExitStack() as stack:
            # First a stdio client (huddle stdio --url <balancer>): the only session yet, so the access log
            # tells where it lives, and that instance is the one to die.
            stdio = StdioServerParameters(
                command=sys.executable, args=["-m", "huddle.cli.main", "stdio", "--url", team.nginx.url]
            )
            proxied = await stack.enter_async_context(Client(stdio))
            await call(proxied, "register_agent", agent_id="proxied", name="proxied")
            [(proxied_session, served)] = team.nginx.session_routes().items()
            victim = proxied_session.split(".", 1)[0]
            assert served == {victim}
            agents = await spread(stack, team, prefix="k")
            team.by_name(victim).kill()
            for i, a in enumerate(agents):
                if a.home == victim:
                    with pytest.raises(MCPError) as failed:
                        await a.client.call_tool("get_updates", {"agent_id": f"k{i}"})
                    message = str(failed.value)
                    assert "session gone" in message and victim in message and "Initialize a new session" in message
                else:
                    await call(a.client, "get_updates", agent_id=f"k{i}")
                    assert a.landed() == {a.home}
            # A client initialises again: a new session, on a live instance, that works.
            again = await stack.enter_async_context(agent(team.nginx.url + "/mcp"))
            assert again.home != victim and again.home in team.names
            await call(again.client, "register_agent", agent_id="k0", name="k0")
            updates = await call(again.client, "get_updates", agent_id="k0")
            assert "events" in updates
            # huddle stdio does that by itself on the 404: its client just carries on.
            assert "events" in await call(proxied, "get_updates", agent_id="proxied")
            routes = team.nginx.session_routes()
            renewed = set(routes) - {proxied_session, again.session_id, *(a.session_id for a in agents)}
            assert renewed, "huddle stdio sent nothing on a new session"
            for session in renewed:
                home = session.split(".", 1)[0]
                assert home != victim and routes[session] == {home}


async def test_stateless_instances_serve_a_whole_consultation_with_no_sticky_routing(tmp_path: Path) -> None:
    with team_of(tmp_path, 2, "--mcp-stateless", "on") as team:
        async with agent(team.nginx.url + "/mcp") as alice, agent(team.nginx.url + "/mcp") as bob:
            a, b = alice.client, bob.client
            assert a.session.server_capabilities.resources is not None
            assert a.session.server_capabilities.resources.subscribe is False
            await call(a, "register_agent", agent_id="alice", name="Alice")
            await call(b, "register_agent", agent_id="bob", name="Bob")
            await call(a, "announce_work", agent_id="alice", subject="refactor", target_files=["t/app.py"])
            opened = await call(b, "announce_work", agent_id="bob", subject="fix", target_files=["t/app.py"])
            assert opened["verdict"] == "consult"
            thread = opened["thread_id"]
            await call(a, "post_to_thread", thread_id=thread, agent_id="alice", type="context", content="mine first")
            await call(b, "propose_resolution", thread_id=thread, agent_id="bob", summary="alice goes first")
            await call(a, "approve_resolution", thread_id=thread, agent_id="alice")
            assert (await call(b, "get_thread", thread_id=thread))["status"] == "resolved"
            kinds = [e["event"] for e in (await call(a, "get_updates", agent_id="alice"))["events"]]
            assert "thread.opened" in kinds and "thread.proposal" in kinds
            with pytest.raises(MCPError, match=r"mcp_stateless=on.*get_updates"):
                await subscribe(a, "huddle://agents/alice/inbox")
            hits = alice.hits + bob.hits
            assert all(h.issued is None and h.session is None for h in hits)
            # No stickiness: one client's calls were answered by both instances.
            assert {h.instance for h in hits if h.method == "POST"} == set(team.names)
