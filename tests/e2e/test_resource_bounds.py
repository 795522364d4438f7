"""Abandoned MCP sessions and slow clients cannot exhaust the server (issue 7, defects 3 and 4).

Small caps and short deadlines stand in for 10,000 sessions and 120 s; the figures at full size
come from benchmarks/hostile.py.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from mcp import Client

from helpers import ServerProcess, call
from huddle.testing import MCP_HEADERS, PROTOCOL_VERSION, initialize_request


def abandon_session(server: ServerProcess) -> str:
    """`initialize`, then walk away: no `initialized`, no DELETE."""
    response = httpx.post(server.mcp_url, json=initialize_request(), headers=MCP_HEADERS, timeout=10)
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"]


def ping(server: ServerProcess, session_id: str) -> int:
    body = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    headers = {**MCP_HEADERS, "mcp-session-id": session_id, "mcp-protocol-version": PROTOCOL_VERSION}
    return httpx.post(server.mcp_url, json=body, headers=headers, timeout=10).status_code


async def test_abandoned_sessions_make_room_for_new_agents_instead_of_locking_them_out(server_factory) -> None:
    server = server_factory("--mcp-sessions-per-client", "3", "--mcp-max-sessions", "4")
    abandoned = [abandon_session(server) for _ in range(12)]
    # The cap held: only the three most recent abandoned sessions are still known …
    assert [ping(server, sid) for sid in abandoned[:-3]] == [404] * 9
    assert all(ping(server, sid) == 200 for sid in abandoned[-3:])
    # … and a legitimate agent is served, again and again, never refused with 503.
    for round_ in range(3):
        async with Client(server.mcp_url) as client:
            agent = await call(client, "register_agent", name=f"agent-{round_}")
            assert agent["agent_id"] == f"agent-{round_}"


async def test_a_busy_session_is_never_evicted_to_make_room(server_factory) -> None:
    server = server_factory("--mcp-sessions-per-client", "2", "--mcp-max-sessions", "2")
    async with Client(server.mcp_url) as steady:
        await call(steady, "register_agent", name="steady")
        for _ in range(6):
            abandon_session(server)
        # The official client keeps its GET stream open, so its session is busy, not idle.
        assert (await call(steady, "list_agents"))["agents"][0]["agent_id"] == "steady"


def read_until_closed(sock: socket.socket, limit_s: float = 15.0) -> bytes:
    """Everything the server sends until it closes the connection (or `limit_s` passes)."""
    sock.settimeout(limit_s)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_half_sent_headers_and_short_bodies_are_answered_408_and_closed(server_factory) -> None:
    server = server_factory("--header-timeout-s", "0.5", "--body-timeout-s", "0.5")
    with httpx.stream("GET", server.url + "/api/events", timeout=20) as stream:
        headers_only = socket.create_connection(("127.0.0.1", server.port))
        headers_only.sendall(b"POST /api/v1/tools/list_agents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        short_body = socket.create_connection(("127.0.0.1", server.port))
        short_body.sendall(
            b"POST /api/v1/tools/register_agent HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name": '
        )
        silent = socket.create_connection(("127.0.0.1", server.port))
        for sock in (headers_only, short_body, silent):
            with sock:
                answer = read_until_closed(sock)
                assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
                assert b"request_timeout" in answer
        # A stream opened before the deadlines expired is a response, not a slow request: still served.
        assert stream.status_code == 200
        assert httpx.post(server.url + "/api/v1/tools/register_agent", json={"name": "after"}).status_code == 200
        for line in stream.iter_lines():
            if "after" in line:
                break
    agents = httpx.post(server.url + "/api/v1/tools/list_agents", json={}).json()["result"]["agents"]
    assert [a["agent_id"] for a in agents] == ["after"]
    assert "Traceback" not in server.log(), "a client cut off mid-body is not a server error"


async def test_a_slow_but_steady_client_within_the_deadline_is_served(server_factory) -> None:
    server = server_factory("--header-timeout-s", "5", "--body-timeout-s", "5")
    body = b'{"name": "patient"}'
    request = (
        b"POST /api/v1/tools/register_agent HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        for start in range(0, len(request), 16):
            sock.sendall(request[start : start + 16])
            await anyio.lowlevel.checkpoint()
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


@contextlib.asynccontextmanager
async def streaming(url: str, session_ids: list[str]) -> AsyncIterator[None]:
    """Holds the standalone GET stream of each session open (as MCP clients do), so all are busy."""
    opened = anyio.Event()
    started: list[str] = []

    async def hold(http: httpx.AsyncClient, sid: str) -> None:
        headers = {**MCP_HEADERS, "accept": "text/event-stream", "mcp-session-id": sid}
        async with http.stream("GET", url, headers={**headers, "mcp-protocol-version": "2025-11-25"}) as response:
            assert response.status_code == 200
            started.append(sid)
            if len(started) == len(session_ids):
                opened.set()
            async for _ in response.aiter_bytes():
                pass

    async with httpx.AsyncClient(timeout=None) as http, anyio.create_task_group() as streams:
        for sid in session_ids:
            streams.start_soon(hold, http, sid)
        with anyio.fail_after(10):
            await opened.wait()
        yield
        streams.cancel_scope.cancel()


async def test_a_client_holding_every_session_with_streams_cannot_lock_out_a_new_agent(server_factory) -> None:
    """Sessions each holding a standalone GET stream are busy; on loopback (where every agent shares
    one address) the hog's oldest one is closed for the newcomer instead of refusing it (503)."""
    server = server_factory("--mcp-sessions-per-client", "3", "--mcp-max-sessions", "3")
    hog = [abandon_session(server) for _ in range(3)]
    async with streaming(server.mcp_url, hog):
        # A newcomer's handshake (a session-opening initialize) is served, not refused 503 …
        newcomer = abandon_session(server)
        assert ping(server, newcomer) == 200
        # … because the hog's least recently used session made room; its others live on.
        assert sorted(ping(server, sid) for sid in hog) == [200, 200, 404]


def outward_address() -> str | None:
    """This machine's non-loopback IPv4 address, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


async def test_a_client_over_its_own_cap_is_refused_by_name_and_others_are_still_served(server_factory) -> None:
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to act as a second client")
    server = server_factory("--host", "0.0.0.0", "--mcp-sessions-per-client", "2", "--mcp-max-sessions", "3")
    remote = f"http://{address}:{server.port}/mcp"

    def initialize(url: str) -> httpx.Response:
        return httpx.post(url, json=initialize_request(), headers=MCP_HEADERS, timeout=10)

    hog = [initialize(remote).headers["mcp-session-id"] for _ in range(2)]
    async with streaming(remote, hog):
        refused = initialize(remote)
        assert refused.status_code == 429 and "mcp-session-id" not in refused.headers
        message = refused.json()["error"]["message"]
        assert "mcp_sessions_per_client cap is 2" in message and "DELETE /mcp" in message
        assert all(ping(server, sid) == 200 for sid in hog)  # the hog keeps what it has
        # A different client (here the loopback address) is served.
        assert initialize(server.mcp_url).status_code == 200
