"""Bounded MCP sessions (transports/mcp_sessions.py): what a closed session leaves behind.

The app is the real one (build_app, lifespan running), driven in-process through httpx's ASGI
transport from a routable address, so the per-client cap evicts idle sessions.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp.server.connection import Connection
from mcp.server.runner import ServerRunner
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from starlette.routing import Route

from huddle.app import build_app
from huddle.settings import load_settings
from huddle.testing import MCP_HEADERS, initialize_request
from huddle.transports.mcp_sessions import BoundedSessionManager


@asynccontextmanager
async def served(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, BoundedSessionManager]]:
    base = {"data_dir": str(tmp_path / "data"), "repo": str(tmp_path), "mqtt_broker": "off", "analysis": "off"}
    app = build_app(load_settings({**base, **settings}, environ={}))
    route = next(r for r in app.http.routes if isinstance(r, Route) and isinstance(r.endpoint, StreamableHTTPASGIApp))
    manager = route.endpoint.session_manager
    assert isinstance(manager, BoundedSessionManager)
    transport = httpx.ASGITransport(app=app.served, client=("203.0.113.9", 40000))
    async with (
        app.http.router.lifespan_context(app.http),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http,
    ):
        yield http, manager


@contextmanager
def cyclic_gc_off() -> Iterator[None]:
    """Only reference counting frees memory meanwhile, as between the rare collections of a server
    (cli/server.py freezes the heap and raises the collector's thresholds)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def lingering(kind: type) -> int:
    """Instances of `kind` still in memory, reachable or only waiting for the cyclic collector."""
    return sum(1 for o in gc.get_objects() if isinstance(o, kind))


async def open_session(http: httpx.AsyncClient) -> str:
    response = await http.post("/mcp", json=initialize_request("abandoned"), headers=MCP_HEADERS)
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"]


async def gone(manager: BoundedSessionManager) -> None:
    """Lets the closed sessions' server tasks wind down (no time passes: they only need turns)."""
    with anyio.fail_after(10):
        while manager._server_instances or manager.usage:
            await anyio.sleep(0)
        await anyio.wait_all_tasks_blocked()


async def test_abandoned_sessions_closed_by_their_idle_timeout_or_by_eviction_leave_nothing_behind(
    tmp_path: Path,
) -> None:
    async with served(tmp_path, mcp_sessions_per_client=4) as (http, manager):
        with cyclic_gc_off():
            runners, connections = lingering(ServerRunner), lingering(Connection)
            # 40 abandoned `initialize`s: all but the client's last 4 are evicted to make room …
            for _ in range(40):
                await open_session(http)
            assert manager.evicted == 36 and manager.open_sessions() == 4
            # … and the last 4 time out: their idle period runs out now (the transport's idle scope is its timer).
            for transport in manager._server_instances.values():
                assert transport.idle_scope is not None
                transport.idle_scope.deadline = anyio.current_time()
            await gone(manager)

            assert not manager._server_instances and not manager._session_owners and not manager.usage
            # Each session's whole state (its runner, connection, dispatcher, streams, the client's
            # initialize params) is freed as the session closes, not whenever the cyclic collector runs.
            assert lingering(ServerRunner) - runners == 0
            assert lingering(Connection) - connections == 0


def test_a_transport_admitted_here_is_the_one_the_sdk_would_build_but_for_its_routable_id() -> None:
    # BoundedSessionManager._admit_session copies the SDK's (to name the session); an SDK change
    # to how it builds a transport must show here rather than slip by.
    from mcp.server.lowlevel import Server
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    options: dict[str, Any] = {"json_response": True, "session_idle_timeout": 42.0, "retry_interval": 250}
    ours = BoundedSessionManager(Server("x"), per_client=4, instance="inst", **options)
    sdk = StreamableHTTPSessionManager(Server("x"), **options)
    mine, theirs = ours._admit_session(None), sdk._admit_session(None)
    assert mine is not None and theirs is not None
    assert mine.mcp_session_id is not None and mine.mcp_session_id.startswith("inst.")
    skip = {"mcp_session_id", "_mcp_session_id"}

    def state(transport: Any) -> dict[str, Any]:
        return {k: v for k, v in vars(transport).items() if k not in skip and not callable(v)}

    def shape(value: Any) -> Any:  # streams, locks and events differ by identity only
        return value if isinstance(value, (str, int, float, bool, type(None), dict, list, tuple)) else type(value)

    assert {k: shape(v) for k, v in state(mine).items()} == {k: shape(v) for k, v in state(theirs).items()}
    assert set(ours._server_instances) == {mine.mcp_session_id}
