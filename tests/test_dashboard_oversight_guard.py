"""Only the person at the dashboard may act as `human:<name>`: agents cannot impersonate one.

The page gets a per-server secret as an HttpOnly cookie from GET /dashboard; registering a
`human:` id and force_release_lock need it, and force_release_lock is not on /mcp at all.
"""

from __future__ import annotations

from typing import Any

import httpx
from mcp import Client

from helpers import call, call_error


def rest(http: httpx.Client, tool: str, **args: Any) -> httpx.Response:
    return http.post(f"/api/v1/tools/{tool}", json=args)


def open_dashboard(client: httpx.Client) -> httpx.Client:
    """The client now holds the cookie the page gets, as a browser tab on /dashboard would."""
    page = client.get("/dashboard")
    assert page.status_code == 200
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/api/v1/tools" in cookie
    return client


def test_an_agent_cannot_register_a_human_id_or_force_a_release_over_rest(huddle_server: Any) -> None:
    with httpx.Client(base_url=huddle_server.url) as agent:
        assert rest(agent, "register_agent", agent_id="alice", name="alice").status_code == 200
        assert rest(agent, "register_agent", agent_id="mallory", name="mallory").status_code == 200
        assert rest(agent, "acquire_lock", agent_id="alice", path="src/core.py", mode="exclusive").json()["ok"]
        posing = rest(agent, "register_agent", agent_id="human:mallory", name="mallory")
        assert posing.status_code == 403
        body = posing.json()
        assert body["field"] == "agent_id" and "reserved" in body["error"]
        # The refusal explains; it does not teach the bypass.
        assert "register_agent" not in body["error"] and "e.g." not in body["error"]
        forced = rest(agent, "force_release_lock", overseer_id="human:mallory", holder="alice", path="src/core.py")
        assert forced.status_code == 403 and forced.json()["field"] == "overseer_id"
        # A forged cookie proves nothing.
        agent.cookies.set("huddle_dashboard", "guessed", path="/api/v1/tools")
        assert rest(agent, "register_agent", agent_id="human:mallory", name="mallory").status_code == 403
        locks = rest(agent, "list_locks").json()["result"]["locks"]
        assert [(lock["agent_id"], lock["path"]) for lock in locks] == [("alice", "src/core.py")]
        agents = {a["agent_id"] for a in rest(agent, "list_agents").json()["result"]["agents"]}
        assert "human:mallory" not in agents


async def test_force_release_is_not_on_mcp_and_a_human_id_cannot_register_there(huddle_server: Any) -> None:
    async with Client(huddle_server.mcp_url) as mcp:
        listed = {tool.name for tool in (await mcp.list_tools()).tools}
        assert "force_release_lock" not in listed
        index = {tool["name"] for tool in (await call(mcp, "introspection"))["tools"]}
        assert "force_release_lock" not in index
        await call(mcp, "register_agent", agent_id="dave", name="dave")
        await call(mcp, "acquire_lock", agent_id="dave", path="src/d.py", mode="exclusive")
        refused = await call_error(mcp, "register_agent", agent_id="human:eve", name="eve")
        assert "reserved" in refused and "[forbidden]" in refused
        off = await call_error(mcp, "force_release_lock", overseer_id="human:eve", holder="dave", path="src/d.py")
        assert "only available from the dashboard" in off
        assert (await call(mcp, "check_lock", path="src/d.py"))["exclusive_holder"] == "dave"


def test_the_page_cookie_lets_a_person_register_and_release_but_only_the_lease_they_saw(huddle_server: Any) -> None:
    with httpx.Client(base_url=huddle_server.url) as agent, httpx.Client(base_url=huddle_server.url) as page:
        open_dashboard(page)
        rest(agent, "register_agent", agent_id="alice", name="alice")
        first = rest(agent, "acquire_lock", agent_id="alice", path="src/db.py", mode="exclusive", ttl_s=60)
        seen_token = first.json()["result"]["fencing_token"]
        assert rest(page, "register_agent", agent_id="human:lead", name="lead", client="dashboard").status_code == 200
        # Meanwhile alice's lease ends and she takes a fresh one on the same path.
        assert rest(agent, "release_lock", agent_id="alice", path="src/db.py").json()["ok"]
        fresh = rest(agent, "acquire_lock", agent_id="alice", path="src/db.py", mode="exclusive", ttl_s=60)
        fresh_token = fresh.json()["result"]["fencing_token"]
        assert fresh_token != seen_token
        stale = rest(page, "force_release_lock", overseer_id="human:lead", holder="alice", path="src/db.py",
                     fencing_token=seen_token)  # fmt: skip
        assert stale.status_code == 409
        assert (
            stale.json()["field"] == "fencing_token" and "the lease changed since you looked" in stale.json()["error"]
        )
        assert rest(agent, "check_lock", path="src/db.py").json()["result"]["exclusive_holder"] == "alice"
        done = rest(page, "force_release_lock", overseer_id="human:lead", holder="alice", path="src/db.py",
                    fencing_token=fresh_token)  # fmt: skip
        assert done.status_code == 200 and done.json()["result"]["fencing_token"] == fresh_token
        assert rest(agent, "check_lock", path="src/db.py").json()["result"]["locked"] is False
