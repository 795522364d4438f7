"""MCP push (F-63): readable resources for an agent's inbox and a thread, and change notifications.

Two protocol eras are served side by side:
- handshake-era clients (≤ 2025-11-25) call `resources/subscribe` and receive
  `notifications/resources/updated` on their session;
- 2026-07-28 clients open `subscriptions/listen` with `resource_subscriptions=[uri, …]` and receive
  the same change events on that stream (the SDK's listen handler, fed through its subscription bus).

A notification only says "this resource changed": the client reads the resource (or calls
`get_updates`) for the content, so a missed notification loses nothing. Notifications are coalesced
per URI and sent by one task off the request path; an agent is not notified of its own actions.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ListenHandler, ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp_types import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)

from huddle.background import Background
from huddle.domain import validate
from huddle.domain.events import EVERYONE, Event
from huddle.domain.principal import Principal, current_principal
from huddle.errors import Forbidden, HuddleError, NotFound
from huddle.push import log as eventlog
from huddle.service.threads import ThreadService
from huddle.storage.base import Store

log = logging.getLogger(__name__)

INBOX_PREFIX = "huddle://agents/"
INBOX_SUFFIX = "/inbox"
THREAD_PREFIX = "huddle://threads/"
INBOX_TEMPLATE = INBOX_PREFIX + "{agent_id}" + INBOX_SUFFIX
THREAD_TEMPLATE = THREAD_PREFIX + "{thread_id}"
INBOX_SIZE = 50
SEND_TIMEOUT_S = 2.0
_CLEANUP_KEY = "huddle.push.cleanup"


def inbox_uri(agent_id: str) -> str:
    return f"{INBOX_PREFIX}{agent_id}{INBOX_SUFFIX}"


def thread_uri(thread_id: str) -> str:
    return f"{THREAD_PREFIX}{thread_id}"


def inbox_owner(uri: str) -> str | None:
    if uri.startswith(INBOX_PREFIX) and uri.endswith(INBOX_SUFFIX):
        return uri[len(INBOX_PREFIX) : -len(INBOX_SUFFIX)] or None
    return None


def own_inbox_only(agent: str) -> None:
    """Token mode: an agent reads and watches its own inbox only (people and admins, anyone's)."""
    principal = current_principal.get()
    if principal is not None and not principal.sees_everything and agent != principal.agent_id:
        raise Forbidden(
            f"you are signed in as {principal.agent_id!r}: you may read and watch only your own inbox,"
            f" huddle://agents/{principal.agent_id}/inbox"
        )


class TrackingListenHandler(ListenHandler):
    """The SDK's `subscriptions/listen` handler, counting which resource URIs open streams watch,
    so events nobody listens to cost nothing."""

    def __init__(
        self, bus: SubscriptionBus, watched: Counter[str], still_valid: Callable[[Principal], bool] | None = None
    ):
        super().__init__(bus)
        self._watched = watched
        # Token mode: each open stream with the principal that opened it, ended when its token is no
        # longer good (revoked, signed out, expired) — `recheck`, before anything is published to them.
        self._still_valid = still_valid
        self._open: dict[anyio.CancelScope, Principal] = {}

    def recheck(self) -> None:
        if self._still_valid is None:
            return
        for scope, principal in list(self._open.items()):
            if not self._still_valid(principal):
                scope.cancel()
                del self._open[scope]

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        uris = list(params.notifications.resource_subscriptions or ())
        for uri in uris:
            owner = inbox_owner(uri)
            if owner is not None:
                try:
                    own_inbox_only(owner)
                except Forbidden as exc:
                    raise MCPError(code=INVALID_PARAMS, message=f"{exc.message} [forbidden]") from None
        self._watched.update(uris)
        principal = current_principal.get()
        scope = anyio.CancelScope()
        if principal is not None and self._still_valid is not None:
            self._open[scope] = principal
        try:
            with scope:
                return await super().__call__(ctx, params)
            # Ended by `recheck`: the stream closes as the spec's graceful end, with its id.
            return SubscriptionsListenResult(_meta={SUBSCRIPTION_ID_META_KEY: ctx.request_id})
        finally:
            self._open.pop(scope, None)
            self._watched.subtract(uris)
            for uri in uris:
                if self._watched[uri] <= 0:
                    del self._watched[uri]


STATELESS_SUBSCRIBE = (
    "{method} needs an MCP session, and this Huddle runs stateless (mcp_stateless=on): no notification could"
    " reach you after this request. Call get_updates with your last cursor between turns, follow GET"
    " /api/events (SSE) or MQTT, or use subscriptions/listen (protocol 2026-07-28)"
)


async def _refuse_sessionless_subscribe(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """MCP middleware for mcp_stateless=on: a clear answer instead of the SDK's bare "Method not found"."""
    if ctx.method in ("resources/subscribe", "resources/unsubscribe"):
        raise MCPError(code=METHOD_NOT_FOUND, message=STATELESS_SUBSCRIBE.format(method=ctx.method))
    return await call_next(ctx)


class McpPush:
    def __init__(self, store: Store, threads: ThreadService, still_valid: Callable[[Principal], bool] | None = None):
        self.store = store
        self.threads = threads
        # Token mode: a subscription's token is re-checked before each notification (credentials.still_valid).
        self.still_valid = still_valid
        self._principals: dict[int, Principal] = {}  # connection id → who subscribed
        self._listen: TrackingListenHandler | None = None
        self._sessions: dict[str, dict[int, ServerSession]] = {}  # uri → connection id → session
        self._listening: Counter[str] = Counter()
        self._bus: SubscriptionBus | None = None
        self._pending: dict[str, None] = {}
        self._wake = asyncio.Event()
        self._notifier = Background("huddle-mcp-notifications")
        self.notifications_sent = 0

    # -- wiring ------------------------------------------------------------------------------

    def attach(self, mcp: MCPServer, *, sessions: bool = True) -> None:
        """Registers the resources and the subscribe/listen handlers on `mcp`.

        Without `sessions` (mcp_stateless=on) a handshake-era connection ends with each request, so
        a `resources/subscribe` could never be answered by a notification: it is not offered (the
        server's capabilities say `subscribe: false`) and a client that sends it anyway is told why
        and what to use instead. `subscriptions/listen` holds its own stream open and still works.
        """
        store, threads = self.store, self.threads

        @mcp.resource(
            INBOX_TEMPLATE,
            name="agent-inbox",
            mime_type="application/json",
            description="The newest events addressed to an agent (what get_updates returns), with"
            " latest_cursor. Subscribe to be told when it changes.",
        )
        async def agent_inbox(agent_id: str) -> str:
            try:
                agent = validate.identifier(agent_id, "agent_id")
                own_inbox_only(agent)
            except Forbidden as exc:
                raise ResourceError(exc.message) from None
            except HuddleError as exc:
                raise ResourceNotFoundError(exc.message) from None
            events = await eventlog.latest_for(store, agent, INBOX_SIZE)
            return json.dumps(
                {
                    "agent_id": agent,
                    "latest_cursor": events[-1].cursor if events else 0,
                    "events": [e.to_dict() for e in events],
                    "note": f"the newest {INBOX_SIZE} events; call get_updates with your last cursor for all of them",
                },
                default=str,
            )

        @mcp.resource(
            THREAD_TEMPLATE,
            name="thread",
            mime_type="application/json",
            description="A consultation thread (as get_thread returns it). Subscribe to be told when it changes.",
        )
        async def thread(thread_id: str) -> str:
            try:
                return json.dumps(await threads.get(thread_id), default=str)
            except NotFound as exc:
                raise ResourceNotFoundError(exc.message) from None
            except HuddleError as exc:
                raise ResourceError(exc.message) from None

        # The SDK keeps the low-level server and its subscription bus private; these are the documented
        # extension points of that low-level server (add_request_handler), reached through MCPServer.
        lowlevel = mcp._lowlevel_server
        if sessions:
            lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
            lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe)
        else:
            mcp.middleware.append(_refuse_sessionless_subscribe)
        self._bus = mcp._subscriptions
        self._listen = TrackingListenHandler(self._bus, self._listening, self.still_valid)
        lowlevel.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, self._listen)

    async def _subscribe(self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        owner = inbox_owner(str(params.uri))
        if owner is not None:
            try:
                own_inbox_only(owner)
            except Forbidden as exc:
                raise MCPError(code=INVALID_PARAMS, message=f"{exc.message} [forbidden]") from None
        principal = current_principal.get()
        if principal is not None and self.still_valid is not None:
            self._principals[self._key(ctx)] = principal
        # A ServerSession is built per request; the connection behind it lives as long as the client's MCP
        # session. Keep the session (to send on the connection's standalone stream) keyed by its connection,
        # and forget it when the connection closes. The SDK exposes no public accessor for the connection.
        connection = getattr(ctx.session, "_connection", None)
        key = self._key(ctx)
        self._sessions.setdefault(str(params.uri), {})[key] = ctx.session
        if connection is not None and not connection.state.get(_CLEANUP_KEY):
            connection.state[_CLEANUP_KEY] = True
            connection.exit_stack.callback(self._forget, key)
        return EmptyResult()

    async def _unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        connection = getattr(ctx.session, "_connection", None)
        key = id(connection) if connection is not None else id(ctx.session)
        sessions = self._sessions.get(str(params.uri))
        if sessions is not None:
            sessions.pop(key, None)
            if not sessions:
                del self._sessions[str(params.uri)]
        return EmptyResult()

    @staticmethod
    def _key(ctx: ServerRequestContext[Any, Any]) -> int:
        connection = getattr(ctx.session, "_connection", None)
        return id(connection) if connection is not None else id(ctx.session)

    def _forget(self, key: int) -> None:
        self._principals.pop(key, None)
        for uri in list(self._sessions):
            self._sessions[uri].pop(key, None)
            if not self._sessions[uri]:
                del self._sessions[uri]

    async def start(self) -> None:
        self._notifier.start(self._run())

    async def stop(self) -> None:
        await self._notifier.stop()

    # -- fan-out ---------------------------------------------------------------------------------

    def watched(self) -> set[str]:
        return {uri for uri, sessions in self._sessions.items() if sessions} | set(self._listening)

    def offer(self, events: Sequence[Event]) -> None:
        """Bus listener: marks the URIs these events change; cheap when nobody subscribed."""
        if not self._listening and not self._sessions:
            return
        watched = self.watched()
        if not watched:
            return
        for event in events:
            if event.thread_id is not None and thread_uri(event.thread_id) in watched:
                self._pending[thread_uri(event.thread_id)] = None
            if EVERYONE in event.audience:
                for uri in watched:
                    owner = inbox_owner(uri)
                    if owner is not None and owner != event.actor:
                        self._pending[uri] = None
            else:
                for agent in event.audience:
                    if agent != event.actor and inbox_uri(agent) in watched:
                        self._pending[inbox_uri(agent)] = None
        if self._pending:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            uris = list(self._pending)
            self._pending.clear()
            for uri in uris:
                try:
                    await self._notify(uri)
                except Exception:  # one failed notification must not end MCP push for good
                    log.exception("MCP resource notification for %s failed", uri)

    def recheck(self) -> None:
        """After a revocation or sign-out: streams opened with tokens no longer good end now."""
        if self._listen is not None:
            self._listen.recheck()

    async def _notify(self, uri: str) -> None:
        self.recheck()  # a token that expired since the last event hears no more
        if uri in self._listening and self._bus is not None:
            await self._bus.publish(ResourceUpdated(uri=uri))
            self.notifications_sent += 1
        for key, session in list(self._sessions.get(uri, {}).items()):
            principal = self._principals.get(key)
            if principal is not None and self.still_valid is not None and not self.still_valid(principal):
                self._forget(key)  # its token was revoked, signed out or expired: it hears no more
                continue
            try:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await session.send_resource_updated(uri)
                self.notifications_sent += 1
            except Exception:  # the client went away: forget its subscriptions
                log.debug("dropping MCP resource subscriber of %s", uri, exc_info=True)
                self._forget(key)

    def info(self) -> dict[str, Any]:
        return {
            "subscribed_uris": len(self.watched()),
            "listen_streams": sum(self._listening.values()),
            "notifications_sent": self.notifications_sent,
        }
