"""Web pages from other sites are refused on every route and every bind (DNS rebinding, CSRF)."""

from __future__ import annotations

import httpx
import pytest

from huddle.testing import MCP_HEADERS, initialize_request


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # a sandboxed iframe on any site
        {"Host": "evil.example:3100"},  # DNS rebinding: their name, our address
    ],
    ids=["cross-site-origin", "null-origin", "rebound-host"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/tools/register_agent"), ("GET", "/api/v1/tools"), ("GET", "/api/events"), ("POST", "/mcp")],
)
def test_foreign_pages_are_refused_and_nothing_is_written(huddle_server, headers, method, path) -> None:
    body = {"name": "mallory"} if path.endswith("register_agent") else None
    if path == "/mcp":  # a well-formed initialize, so only the headers can be the reason for refusal
        body = initialize_request()
        headers = {**headers, **MCP_HEADERS}
    response = httpx.request(method, huddle_server.url + path, json=body, headers=headers, timeout=5)
    assert response.status_code in (403, 421), (path, response.status_code, response.text[:200])
    agents = httpx.post(huddle_server.url + "/api/v1/tools/list_agents", json={}).json()["result"]["agents"]
    assert agents == []


def test_local_tools_and_local_pages_are_served(huddle_server) -> None:
    ok = httpx.post(
        huddle_server.url + "/api/v1/tools/register_agent",
        json={"name": "alice"},
        headers={"Origin": f"http://127.0.0.1:{huddle_server.port}"},
    )
    assert ok.status_code == 200 and ok.json()["result"]["agent_id"] == "alice"
    assert httpx.post(huddle_server.url + "/api/v1/tools/list_agents", json={}).status_code == 200


def test_a_non_loopback_bind_still_refuses_cross_site_posts_and_mcp_initialize(server_factory) -> None:
    server = server_factory("--host", "0.0.0.0", "--allowed-origins", "https://board.example")
    foreign = {"Origin": "https://evil.example"}
    form = httpx.post(
        server.url + "/api/v1/tools/register_agent",
        content=b'{"name": "mallory"}',
        headers={**foreign, "content-type": "text/plain"},
    )
    assert form.status_code == 403
    plain = httpx.post(server.url + "/api/v1/tools/register_agent", content=b'{"name": "mallory"}')
    assert plain.status_code == 415  # no Origin, but a body not declared JSON: refused too
    initialize = httpx.post(server.url + "/mcp", json=initialize_request(), headers={**foreign, **MCP_HEADERS})
    assert initialize.status_code == 403
    assert "mcp-session-id" not in initialize.headers
    assert httpx.post(server.url + "/api/v1/tools/list_agents", json={}).json()["result"]["agents"] == []


def test_a_non_loopback_bind_serves_no_origin_its_own_origin_and_the_allow_list(server_factory) -> None:
    server = server_factory("--host", "0.0.0.0", "--allowed-origins", "https://board.example")
    for origin in (None, f"http://127.0.0.1:{server.port}", "https://board.example"):
        headers = {} if origin is None else {"Origin": origin}
        ok = httpx.post(server.url + "/api/v1/tools/list_agents", json={}, headers=headers)
        assert ok.status_code == 200, (origin, ok.text)
        session = httpx.post(server.url + "/mcp", json=initialize_request(), headers={**headers, **MCP_HEADERS})
        assert session.status_code == 200, (origin, session.text)


def test_dns_rebinding_on_a_non_loopback_bind_is_refused_on_rest_and_mcp_alike(server_factory) -> None:
    """After rebinding the attacker's page names its own host in both Host and Origin."""
    server = server_factory("--host", "0.0.0.0", "--allowed-hosts", "huddle.internal")
    rebound = {"Host": f"evil.example:{server.port}", "Origin": f"http://evil.example:{server.port}"}
    for origin_headers in (rebound, {"Origin": f"https://127.0.0.1:{server.port}"}):
        rest = httpx.post(server.url + "/api/v1/tools/register_agent", json={"name": "pwned"}, headers=origin_headers)
        assert rest.status_code == 403 and "allowed_hosts" in rest.json()["error"], rest.text
        mcp = httpx.post(server.url + "/mcp", json=initialize_request(), headers={**origin_headers, **MCP_HEADERS})
        assert mcp.status_code == 403 and "mcp-session-id" not in mcp.headers
    named = {"Host": f"huddle.internal:{server.port}", "Origin": f"http://huddle.internal:{server.port}"}
    assert httpx.post(server.url + "/api/v1/tools/list_agents", json={}, headers=named).status_code == 200
    assert (
        httpx.post(server.url + "/mcp", json=initialize_request(), headers={**named, **MCP_HEADERS}).status_code == 200
    )
    assert httpx.post(server.url + "/api/v1/tools/list_agents", json={}).json()["result"]["agents"] == []
