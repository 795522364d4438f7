"""Token mode's auth matrix over every HTTP surface of a real server (issue 10).

Surfaces: MCP (Streamable HTTP), REST, SSE, the Claude Code hooks and the dashboard; MQTT over TCP
and WebSocket has its own matrix (tests/test_mqtt_auth.py). Each bad credential — none, expired,
signed with the wrong key, `alg=none`, for another project (audience), revoked, or a good token
acting as another agent — must be refused with a clear 401/403 and write nothing: the event log's
newest cursor does not move. The test signs its bad tokens with the server's own secret (given
by environment, as an operator would) so "expired" and "wrong audience" are exactly that and
nothing else.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import ServerProcess
from huddle.service.token_codec import TokenCodec

SECRET = "matrix-secret-" + "x" * 32
OTHER_SECRET = "another-secret-" + "y" * 32
PROJECT = "repo"  # the server's project: its repository directory's name
BAD_CREDENTIALS = ["none", "expired", "wrong_key", "alg_none", "wrong_audience", "revoked", "other_agent"]


@dataclass
class Tokens:
    alice: str  # the victim whose identity the attacker wants
    bob: str  # the attacker's own, valid token
    admin: str
    bad: dict[str, str | None]


def _codec(secret: str, clock: Callable[[], float] = time.time) -> TokenCodec:
    return TokenCodec(secret, clock=clock)


def _alg_none(agent: str) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "iss": "huddle",
        "aud": f"huddle:default/{PROJECT}",
        "sub": agent,
        "jti": "forged",
        "typ": "access",
        "scope": "admin agent",
        "iat": now,
        "exp": now + 3600,
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _issue(codec: TokenCodec, agent: str, *, scopes: set[str] | None = None, project: str = PROJECT) -> str:
    token, _ = codec.issue(agent, project=project, org="default", scopes=scopes or {"agent"}, ttl_s=3600)
    return token


@pytest.fixture
def server(server_factory: Any) -> ServerProcess:
    started: ServerProcess = server_factory(env={"HUDDLE_AUTH": "token", "HUDDLE_AUTH_SECRET": SECRET})
    return started


@pytest.fixture
def tokens(server: ServerProcess) -> Tokens:
    good = _codec(SECRET)
    admin = _issue(good, "ops", scopes={"admin"})
    revoked = _issue(good, "alice")
    answer = httpx.post(
        f"{server.url}/api/v1/auth/revoke", json={"token": revoked}, headers={"Authorization": f"Bearer {admin}"}
    )
    assert answer.status_code == 200, answer.text
    bad: dict[str, str | None] = {
        "none": None,
        "expired": _issue(_codec(SECRET, clock=lambda: time.time() - 7200), "alice"),
        "wrong_key": _issue(_codec(OTHER_SECRET), "alice"),
        "alg_none": _alg_none("alice"),
        "wrong_audience": _issue(good, "alice", project="another-project"),
        "revoked": revoked,
        "other_agent": _issue(good, "bob"),  # valid, but the request acts as alice
    }
    return Tokens(alice=_issue(good, "alice"), bob=_issue(good, "bob"), admin=admin, bad=bad)


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def latest_cursor(server: ServerProcess) -> int:
    admin = _issue(_codec(SECRET), "ops", scopes={"admin"})
    listed = httpx.post(f"{server.url}/api/v1/tools/list_events", json={"limit": 1}, headers=_bearer(admin))
    events = listed.json()["result"]["events"]
    return int(events[0]["cursor"]) if events else 0


MCP_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "matrix", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _mcp(server: ServerProcess, token: str | None, acting_as_alice: bool) -> httpx.Response:
    with httpx.Client(headers={**MCP_HEADERS, **_bearer(token)}) as http:
        opened = http.post(server.mcp_url, json=MCP_INIT)
        if opened.status_code != 200 or not acting_as_alice:
            return opened
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        http.post(server.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "register_agent", "arguments": {"name": "alice", "agent_id": "alice"}},
        }
        return http.post(server.mcp_url, json=call, headers=session)


def _rest(server: ServerProcess, token: str | None, acting_as_alice: bool) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/tools/register_agent",
        json={"name": "alice", "agent_id": "alice"},
        headers=_bearer(token),
    )


def _sse(server: ServerProcess, token: str | None, acting_as_alice: bool) -> httpx.Response:
    with httpx.stream("GET", f"{server.url}/api/events", params={"agent": "alice"}, headers=_bearer(token)) as r:
        r.read()
        return r


def _hook(server: ServerProcess, token: str | None, acting_as_alice: bool) -> httpx.Response:
    payload = {"session_id": "s-1", "cwd": str(server.repo), "hook_event_name": "SessionStart", "source": "startup"}
    return httpx.post(
        f"{server.url}/hooks/claude/SessionStart", json=payload, headers={**_bearer(token), "X-Huddle-Agent": "alice"}
    )


def _dashboard(server: ServerProcess, token: str | None, acting_as_alice: bool) -> httpx.Response:
    """Signing in with the credential, then (if that passed) a tool call from the page as alice."""
    with httpx.Client(base_url=server.url) as http:
        signed_in = http.post("/dashboard/login", data={"token": token or ""})
        if signed_in.status_code != 303:
            return signed_in
        csrf = http.cookies.get("huddle_csrf") or ""
        return http.post(
            "/api/v1/tools/register_agent", json={"name": "alice", "agent_id": "alice"}, headers={"X-Huddle-CSRF": csrf}
        )


SURFACES: dict[str, Callable[[ServerProcess, str | None, bool], httpx.Response]] = {
    "mcp": _mcp,
    "rest": _rest,
    "sse": _sse,
    "hooks": _hook,
    "dashboard": _dashboard,
}


def _refusal_is_clear(response: httpx.Response, surface: str) -> None:
    body = response.json()
    text = json.dumps(body)
    if surface == "mcp/other_agent":
        # Authenticated, so MCP answers the call itself: a tool error saying why (the MCP way to refuse).
        assert response.status_code == 200 and body["result"]["isError"] is True, body
        assert "[forbidden]" in text, text
    else:
        assert response.status_code in (401, 403), (surface, response.status_code, response.text[:300])
        assert body.get("ok") is False, body
    if response.status_code == 401:
        assert response.headers.get("www-authenticate", "").startswith("Bearer"), response.headers
    # The answer says what to do next, and never echoes a token back.
    assert any(word in text for word in ("token", "sign", "signed in", "act only")), text
    assert "eyJ" not in text


def test_every_bad_credential_is_refused_on_every_surface_and_writes_nothing(
    server: ServerProcess, tokens: Tokens
) -> None:
    before = latest_cursor(server)
    cases = 0
    for surface, attempt in SURFACES.items():
        for name in BAD_CREDENTIALS:
            response = attempt(server, tokens.bad[name], name == "other_agent")
            _refusal_is_clear(response, f"{surface}/{name}")
            cases += 1
    assert cases == len(SURFACES) * len(BAD_CREDENTIALS) == 35
    assert latest_cursor(server) == before, "a refused request wrote to the event log"
    assert "eyJ" not in server.log(), "a token reached the server log"


def test_a_good_token_works_on_every_surface(server: ServerProcess, tokens: Tokens) -> None:
    assert _rest(server, tokens.alice, True).json()["result"]["agent_id"] == "alice"
    mcp = _mcp(server, tokens.alice, True)
    assert mcp.status_code == 200 and '"isError":false' in mcp.text.replace(" ", ""), mcp.text
    hook = _hook(server, tokens.alice, True)
    assert hook.status_code == 200, hook.text
    with httpx.stream("GET", f"{server.url}/api/events", params={"agent": "alice"}, headers=_bearer(tokens.alice)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    person = _issue(_codec(SECRET), "human:ada", scopes={"dashboard"})
    page = _dashboard(server, person, True)
    # Signed in as human:ada, the page may not act as alice either: a person acts as themself.
    assert page.status_code == 403 and "human:ada" in page.json()["error"]
    with httpx.Client(base_url=server.url) as http:
        assert http.post("/dashboard/login", data={"token": person}).status_code == 303
        assert "Huddle dashboard" in http.get("/dashboard").text
        csrf = http.cookies["huddle_csrf"]
        status = http.post("/api/v1/tools/coordinator_status", json={}, headers={"X-Huddle-CSRF": csrf})
        assert status.json()["ok"] is True
        forged = http.post("/api/v1/tools/coordinator_status", json={})
        assert forged.status_code == 403 and "x-huddle-csrf" in forged.json()["error"]


def test_an_agent_follows_only_its_own_events_and_an_admin_acts_for_anyone(
    server: ServerProcess, tokens: Tokens
) -> None:
    with httpx.stream("GET", f"{server.url}/api/events", headers=_bearer(tokens.bob)) as own:
        assert own.status_code == 200  # no agent given: bob's own slice
    refused = httpx.post(
        f"{server.url}/api/v1/tools/get_updates", json={"agent_id": "alice"}, headers=_bearer(tokens.bob)
    )
    assert refused.status_code == 403 and "act only as yourself" in refused.json()["error"]
    filled = httpx.post(f"{server.url}/api/v1/tools/register_agent", json={"name": "bob"}, headers=_bearer(tokens.bob))
    assert filled.json()["result"]["agent_id"] == "bob"  # the acting id is the token's when left out
    for_alice = httpx.post(
        f"{server.url}/api/v1/tools/register_agent",
        json={"name": "alice", "agent_id": "alice"},
        headers=_bearer(tokens.admin),
    )
    assert for_alice.json()["result"]["agent_id"] == "alice"


def test_the_protected_resource_metadata_points_mcp_clients_at_the_token(server: ServerProcess) -> None:
    refused = httpx.post(server.mcp_url, json=MCP_INIT, headers=MCP_HEADERS)
    challenge = refused.headers["www-authenticate"]
    metadata_url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
    metadata = httpx.get(metadata_url).json()
    assert metadata["resource"] == server.mcp_url
    assert metadata["bearer_methods_supported"] == ["header"]
    assert "agent" in metadata["scopes_supported"]


def test_other_agents_inboxes_stay_closed_through_list_events_hooks_and_mcp_resources(
    server: ServerProcess, tokens: Tokens
) -> None:
    """Regressions from the hostile review: every other way into someone else's inbox."""
    for who in (tokens.alice, tokens.bob):
        httpx.post(f"{server.url}/api/v1/tools/register_agent", json={"name": "x"}, headers=_bearer(who))
    httpx.post(
        f"{server.url}/api/v1/tools/send_message",
        json={"content": "PRIVATE-for-bob", "to_agent": "bob"},
        headers=_bearer(tokens.alice),
    )
    mallory = _issue(_codec(SECRET), "mallory")
    events = httpx.post(f"{server.url}/api/v1/tools/list_events", json={}, headers=_bearer(mallory))
    assert events.status_code == 403 and "get_updates" in events.json()["error"]
    with httpx.Client(headers={**MCP_HEADERS, **_bearer(mallory)}) as http:
        opened = http.post(server.mcp_url, json=MCP_INIT)
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        http.post(server.mcp_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        for method in ("resources/read", "resources/subscribe"):
            answer = http.post(
                server.mcp_url,
                json={"jsonrpc": "2.0", "id": 3, "method": method, "params": {"uri": "huddle://agents/bob/inbox"}},
                headers=session,
            )
            assert "PRIVATE-for-bob" not in answer.text and "only your own inbox" in answer.text, answer.text
    reader = _issue(_codec(SECRET), "reporter", scopes={"read"})
    payload = {"session_id": "s-9", "cwd": str(server.repo), "hook_event_name": "SessionStart", "source": "startup"}
    hook = httpx.post(f"{server.url}/hooks/claude/SessionStart", json=payload, headers=_bearer(reader))
    assert hook.status_code == 403 and "may only read" in hook.json()["error"]


def test_an_open_event_stream_ends_when_its_token_is_revoked_and_delivers_nothing_after(
    server: ServerProcess, tokens: Tokens
) -> None:
    for who in (tokens.alice, tokens.bob):
        httpx.post(f"{server.url}/api/v1/tools/register_agent", json={"name": "x"}, headers=_bearer(who))
    received: list[str] = []
    with httpx.stream("GET", f"{server.url}/api/events", headers=_bearer(tokens.bob), timeout=30) as stream:
        revoked = httpx.post(
            f"{server.url}/api/v1/auth/revoke", json={"token": tokens.bob}, headers=_bearer(tokens.admin)
        )
        assert revoked.status_code == 200
        httpx.post(
            f"{server.url}/api/v1/tools/send_message",
            json={"content": "after-revocation", "to_agent": "bob"},
            headers=_bearer(tokens.alice),
        )
        received.extend(stream.iter_lines())  # ends: the server closes the revoked stream
    assert not any("after-revocation" in line for line in received), received


def test_an_overseer_acts_under_its_own_name_and_logout_ends_the_dashboard_session(server: ServerProcess) -> None:
    person = _issue(_codec(SECRET), "human:ada", scopes={"dashboard"})
    with httpx.Client(base_url=server.url) as http:
        assert http.post("/dashboard/login", data={"token": person}).status_code == 303
        csrf = {"X-Huddle-CSRF": http.cookies["huddle_csrf"]}
        forged = http.post(
            "/api/v1/tools/force_release_lock",
            json={"overseer_id": "human:boss", "holder": "bob", "path": "a.py"},
            headers=csrf,
        )
        assert forged.status_code == 403 and "human:ada" in forged.json()["error"]
        assert http.post("/dashboard/logout", headers=csrf).status_code == 303
    # The session's token itself was revoked, not just dropped by the browser.
    whoami = httpx.get(f"{server.url}/api/v1/auth/whoami", headers=_bearer(person))
    assert whoami.status_code == 401


async def test_an_mcp_listen_stream_ends_when_its_token_is_revoked(server: ServerProcess, tokens: Tokens) -> None:
    """Protocol 2026-07-28 `subscriptions/listen`: no resource update reaches a revoked token's stream."""
    import anyio
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    for who in (tokens.alice, tokens.bob):
        httpx.post(f"{server.url}/api/v1/tools/register_agent", json={"name": "x"}, headers=_bearer(who))

    def message(content: str) -> None:
        httpx.post(
            f"{server.url}/api/v1/tools/send_message",
            json={"content": content, "to_agent": "bob"},
            headers=_bearer(tokens.alice),
        )

    http = httpx2.AsyncClient(headers=_bearer(tokens.bob), timeout=httpx2.Timeout(30.0, read=300.0))
    async with (
        Client(streamable_http_client(server.mcp_url, http_client=http)) as client,
        client.listen(resource_subscriptions=["huddle://agents/bob/inbox"]) as updates,
    ):
        message("before")
        with anyio.fail_after(10):
            assert await updates.__anext__() is not None
        revoked = httpx.post(
            f"{server.url}/api/v1/auth/revoke", json={"token": tokens.bob}, headers=_bearer(tokens.admin)
        )
        assert revoked.status_code == 200
        message("after-revocation")
        with anyio.fail_after(10), pytest.raises(StopAsyncIteration):
            await updates.__anext__()  # the server ended the stream; nothing came first


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "HUDDLE_AUTH": "token", "HUDDLE_AUTH_SECRET": SECRET, **env}
    return subprocess.run([sys.executable, "-m", "huddle.cli.main", *args], env=full, capture_output=True, text=True)


def test_the_token_cli_refuses_a_data_dir_without_the_servers_database(server: ServerProcess, tmp_path: Path) -> None:
    elsewhere = tmp_path / "not-the-servers"
    elsewhere.mkdir()
    issued = _cli("token", "issue", "--agent", "x", "--data-dir", str(elsewhere), env={})
    assert issued.returncode == 1 and "no database at" in issued.stderr
    assert list(elsewhere.iterdir()) == []  # nothing created, nothing claimed


def test_doctor_checks_mcp_and_mqtt_with_the_token_and_says_so_without_one(
    server: ServerProcess, tokens: Tokens
) -> None:
    def checks(env: dict[str, str]) -> dict[str, dict[str, object]]:
        done = _cli("doctor", "--url", server.url, "--data-dir", str(server.data_dir), "--json", env=env)
        return {c["name"]: c for c in json.loads(done.stdout)["checks"]}

    signed_in = checks({"HUDDLE_TOKEN": tokens.alice})
    assert signed_in["mcp"]["ok"] and "initialize ok" in str(signed_in["mcp"]["detail"])
    assert signed_in["mqtt"]["ok"] and "connected" in str(signed_in["mqtt"]["detail"])
    anonymous = checks({"HUDDLE_TOKEN": ""})
    assert anonymous["mcp"]["ok"] and "HUDDLE_TOKEN" in str(anonymous["mcp"]["detail"])
