"""Bounded MCP sessions: abandoned `initialize`s can neither exhaust memory nor lock anyone out.

The SDK's StreamableHTTPSessionManager keeps every session until it has been idle for its timeout
(30 minutes by default) and, at its cap, answers every *new* client 503. One script opening
sessions in a loop and never closing them therefore grows memory by tens of KB a session and then
refuses every legitimate agent for half an hour. Here:

- the idle timeout is a setting (`mcp_session_idle_s`, 10 minutes by default);
- each client address has its own cap (`mcp_sessions_per_client`), and the whole server one
  (`mcp_max_sessions`);
- at the client's cap, that client's least recently used *idle* session (no request or stream in
  flight) is closed to make room. If all of its sessions are busy (e.g. each holds a standalone
  GET stream), the client is refused with 429 naming the cap — it never gets more than its share.
  On a loopback address every local agent shares one address and cannot be told apart, so there
  the address's least recently used session is closed even if busy, rather than refusing;
- at the server's cap, the session closed is one of the client holding the most sessions (its
  least recently used idle one, else anyone's idle one, else — if the newcomer is a different
  client — that hog's least recently used busy one). The hog itself is refused (429), never a
  different newcomer.

An evicted session's id answers 404, which the MCP specification tells clients to handle by
initialising again. The SDK's session table is the source of truth; this class only adds the
bookkeeping (owner address, last use, requests in flight) it needs to choose whom to evict.

Session ids are `<instance_name>.<random hex>` (transports/instance.py): behind a load balancer a
session lives only in the process that created it, so the balancer routes each id back to the
instance it names (deploy/nginx/huddle.conf). An id naming another instance that reaches this one
answers 404 saying the balancer misrouted it, rather than a bare "Session not found".

A closed session is freed as it closes, by reference counting (`free_sessions_when_they_close`),
not left for the cyclic garbage collector, which a long-lived server runs rarely.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from uuid import uuid4

from mcp.server.mcpserver import MCPServer
from mcp.server.runner import ServerRunner
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp_types import INVALID_REQUEST
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from huddle.settings import Settings
from huddle.transports.instance import owner_of, routed_id
from huddle.transports.origin import is_loopback

log = logging.getLogger(__name__)

_client: contextvars.ContextVar[str] = contextvars.ContextVar("huddle_mcp_client", default="?")


def free_sessions_when_they_close() -> None:
    """Makes each MCP session's state freeable by reference counting the moment the session ends.

    Cause: the SDK (mcp 2.3) builds one `ServerRunner` per session (per request when stateless) and
    caches its two handlers, `on_request` and `on_notify`, with `functools.cached_property`: each
    is a bound method stored in the runner's own `__dict__`, so every runner is a reference cycle
    (runner → bound method → runner). Everything it holds — the session's Connection, dispatcher,
    memory streams, exit stack, the client's `initialize` params, ~40 objects and ~2 KB a session —
    therefore outlives the closed session until the cyclic collector runs. A server runs it rarely
    (cli/server.py freezes the heap and raises its thresholds: generation 1 is collected roughly once
    every 10,000 abandoned sessions, generation 2 a hundred times less often), so 10,000 abandoned
    sessions grew RSS by ~14 MiB a wave (benchmarks/proof/resources.py, abandoned_sessions).

    Fix: the same handlers as plain properties: a fresh bound method on each access (the SDK reads
    each once per session, to hand it to the dispatcher), nothing stored on the runner, no cycle.
    Done only while the SDK still caches them, so a fixed SDK is left alone.
    tests/transports/test_mcp_sessions.py checks that closed sessions leave no runner behind.
    """
    for name in ("on_request", "on_notify"):
        cached = ServerRunner.__dict__.get(name)
        if isinstance(cached, cached_property):
            setattr(ServerRunner, name, property(cached.func, doc=cached.__doc__))


free_sessions_when_they_close()


@dataclass
class _Usage:
    client: str
    last_used: float
    in_flight: int = 0


class BoundedSessionManager(StreamableHTTPSessionManager):
    """A session manager that evicts the least recently used idle session instead of refusing."""

    def __init__(
        self,
        *args: Any,
        per_client: int,
        instance: str,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.per_client = per_client
        self.instance = instance
        self.clock = clock
        self.usage: dict[str, _Usage] = {}
        self.evicted = 0

    def open_sessions(self, client: str | None = None) -> int:
        """How many sessions are open (for one client address, or all)."""
        return sum(1 for u in self.usage.values() if client is None or u.client == client)

    async def _handle_stateful_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = (scope.get("client") or ("?", 0))[0]
        session_id = Headers(scope=scope).get(MCP_SESSION_ID_HEADER)
        usage = self.usage.get(session_id) if session_id else None
        if usage is None:
            if session_id and session_id not in self._server_instances:
                owner = owner_of(session_id)
                if owner is not None and owner != self.instance:
                    await self._misrouted(session_id, owner)(scope, receive, send)
                    return
            _client.set(client)
            reason = None if session_id else self._make_room(client)
            if reason is not None:
                body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": reason}}
                await JSONResponse(body, status_code=429)(scope, receive, send)
                return
            await super()._handle_stateful_request(scope, receive, send)
            return
        usage.in_flight += 1
        usage.last_used = self.clock()
        try:
            await super()._handle_stateful_request(scope, receive, send)
        finally:
            usage.in_flight -= 1
            usage.last_used = self.clock()

    def new_session_id(self) -> str:
        """`<instance>.<32 hex digits>`: as unguessable as the SDK's own ids, and routable."""
        return routed_id(self.instance, uuid4().hex)

    def _admit_session(self, requestor: Any) -> StreamableHTTPServerTransport | None:
        # The SDK's `_admit_session` with one change: the id comes from `new_session_id` (the SDK
        # draws a bare uuid4 inline, with no hook to name it). tests/transports/test_mcp_sessions.py
        # checks a transport built here equals one the SDK builds, so an SDK change cannot slip by.
        if self._make_room(_client.get()) is not None:
            return None  # filled up since the request was checked; the SDK answers 503
        if self.max_sessions is not None and len(self._server_instances) >= self.max_sessions:
            return None
        transport = StreamableHTTPServerTransport(
            mcp_session_id=self.new_session_id(),
            is_json_response_enabled=self.json_response,
            event_store=self.event_store,
            security_settings=self.security_settings,
            retry_interval=self.retry_interval,
            idle_timeout=self.session_idle_timeout,
        )
        session_id = transport.mcp_session_id
        assert session_id is not None
        if requestor is not None:
            self._session_owners[session_id] = requestor
        self._server_instances[session_id] = transport
        self.usage[session_id] = _Usage(_client.get(), self.clock())
        log.debug("opened MCP session %s", session_id)
        return transport

    def _misrouted(self, session_id: str, owner: str) -> JSONResponse:
        """404 (the session is not here; MCP clients initialise again) naming the routing fault."""
        log.warning("MCP session %s of instance %s reached instance %s", session_id[:80], owner, self.instance)
        message = (
            f"MCP session {session_id[:80]} belongs to Huddle instance {owner!r}, but this request reached"
            f" instance {self.instance!r}: the load balancer must send every request carrying an Mcp-Session-Id"
            " to the instance named before its first '.' (see deploy/nginx/huddle.conf). Initialize again for a"
            " new session"
        )
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": message}}
        return JSONResponse(body, status_code=404)

    def _make_room(self, client: str) -> str | None:
        """Closes a session so `client` may open one, or says why it may not (see the module doc)."""
        if self.open_sessions(client) >= self.per_client and not self._evict(client, busy_too=is_loopback(client)):
            return (
                f"client {client} already holds {self.open_sessions(client)} MCP sessions, all busy: the "
                f"mcp_sessions_per_client cap is {self.per_client}. Close sessions you no longer use "
                "(DELETE /mcp with their mcp-session-id) or end their GET streams, then initialize again"
            )
        if self.max_sessions is not None and len(self._server_instances) >= self.max_sessions:
            counts = Counter(u.client for u in self.usage.values())
            hog = max(counts, key=lambda c: (counts[c], c != client), default=None)
            if hog is None or not (
                self._evict(hog, busy_too=False)
                or self._evict(None, busy_too=False)
                or (hog != client and self._evict(hog, busy_too=True))
            ):
                return (
                    f"the server holds {len(self._server_instances)} MCP sessions, its mcp_max_sessions cap, and "
                    f"client {client} holds the most ({counts.get(client, 0)}), all busy; close sessions you no "
                    "longer use (DELETE /mcp) and initialize again"
                )
        return None

    def _evict(self, client: str | None, *, busy_too: bool) -> bool:
        """Closes the least recently used idle session (of `client`, or of anyone); with
        `busy_too`, a busy one when none is idle. False when there was none to close."""
        idle = [
            (u.in_flight > 0, u.last_used, sid)
            for sid, u in self.usage.items()
            if (busy_too or u.in_flight == 0) and (client is None or u.client == client)
        ]
        if not idle:
            return False
        *_, victim = min(idle)
        transport = self._server_instances.pop(victim, None)
        self._session_owners.pop(victim, None)
        self.usage.pop(victim, None)
        self.evicted += 1
        log.debug("closing MCP session %s of %s to make room", victim[:12], client or "any client")
        # Ending the session's idle scope stops its server task, which terminates the transport;
        # it is already gone from the table, so its id answers 404 from now on.
        if transport is not None and transport.idle_scope is not None:
            transport.idle_scope.cancel()
        return True

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        self.usage.pop(session_id, None)
        await super()._discard_session(session_id, transport)

    def route(self, path: str = "/mcp") -> Route:
        return Route(path, endpoint=StreamableHTTPASGIApp(self))


def bounded_sessions(mcp: MCPServer, settings: Settings, instance: str) -> BoundedSessionManager:
    """The SDK's session manager for `mcp` (configured by `streamable_http_app`), bounded by settings,
    with session ids routed to `instance`."""
    sdk = mcp.session_manager
    return BoundedSessionManager(
        app=sdk.app,
        event_store=sdk.event_store,
        json_response=sdk.json_response,
        stateless=sdk.stateless,
        security_settings=sdk.security_settings,
        retry_interval=sdk.retry_interval,
        max_request_body_size=sdk.max_request_body_size,
        session_idle_timeout=settings.mcp_session_idle_s,
        max_sessions=settings.mcp_max_sessions,
        per_client=settings.mcp_sessions_per_client,
        instance=instance,
    )
