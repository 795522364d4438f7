"""`/metrics` in the Prometheus text format (F-86), on the official `prometheus_client`.

Each app owns its CollectorRegistry (never the process-global one), so tests can build many apps.
Counters and histograms move where things happen: every tool call (MCP and REST alike, wrapped
once at the operation), announce verdicts and the scoring layers that fired, and each SQLite group
commit (batch size and the time COMMIT — the fsync — took, observed on the writer thread).
Gauges of state (open threads, leases, queues, subscribers) are read when Prometheus scrapes.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolResult
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from huddle.errors import HuddleError
from huddle.transports.operation import Operation, Result

if TYPE_CHECKING:
    from huddle.push.hub import PushHub
    from huddle.service.coordinator import Coordinator

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
SCORED = ("announce_work", "update_intent")
REST_PREFIX = "/api/v1/tools/"
INVALID = "invalid"  # outcome of a call refused at argument validation, before the operation ran

# Set by a transport's counting hook for one call; the operation's wrapper marks it when it runs.
# A refused call (error, mark unset) never reached the operation: its arguments were refused.
# A list is marked rather than the variable set, so the mark survives a copied context.
_reached: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar("huddle_call_reached", default=None)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._tools: set[str] = set()
        r = self.registry
        self.tool_calls = Counter(
            "huddle_tool_calls",
            "Tool calls by tool and outcome (ok, or the error code).",
            ["tool", "outcome"],
            registry=r,
        )
        self.tool_seconds = Histogram(
            "huddle_tool_call_seconds", "Tool call latency by tool.", ["tool"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.announces = Counter("huddle_announces", "announce_work calls by verdict.", ["verdict"], registry=r)
        self.layer_firings = Counter(
            "huddle_scoring_layer_firings",
            "Agents each scoring layer fired for (announce_work and update_intent).",
            ["layer"],
            registry=r,
        )
        self.open_threads = Gauge("huddle_open_threads", "Consultation threads open or resolving.", registry=r)
        self.leases = Gauge("huddle_leases", "Live lock leases.", registry=r)
        self.agents_online = Gauge("huddle_agents_online", "Agents online.", registry=r)
        self.queue_length = Gauge(
            "huddle_queue_length",
            "Waiting work: lock_waiters, tasks_available, tasks_in_flight, message_waiters, sqlite_writes.",
            ["queue"],
            registry=r,
        )
        self.subscribers = Gauge(
            "huddle_subscribers", "Connected push subscribers by channel (sse, mcp, mqtt).", ["channel"], registry=r
        )
        self.batch_size = Histogram(
            "huddle_sqlite_commit_batch_size",
            "Write transactions per SQLite group commit.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "huddle_sqlite_commit_seconds",
            "Time of each group COMMIT, fsync included (synchronous=FULL).",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.guard_keys = Gauge(
            "huddle_guard_keys",
            "Token mode's rate limiter and lockout: keys tracked, and keys forgotten at their cap (a flood of"
            " distinct addresses or agent ids shows as evictions).",
            ["table", "state"],
            registry=r,
        )
        self._coordinator: Coordinator | None = None
        self._push: PushHub | None = None

    def bind(self, coordinator: Coordinator, push: PushHub) -> None:
        """The sources of the gauges read at scrape time; hooks the SQLite writer if there is one."""
        self._coordinator = coordinator
        self._push = push
        store: Any = coordinator.store
        if hasattr(store, "on_batch"):
            store.on_batch = self.observe_batch

    def bind_guards(self, **tables: Any) -> None:
        """The edge's rate limiter and lockout (token mode), read at scrape time."""
        for name, table in tables.items():
            self.guard_keys.labels(name, "tracked").set_function(functools.partial(len, table))
            self.guard_keys.labels(name, "evicted").set_function(functools.partial(getattr, table, "evicted"))

    def observe_batch(self, size: int, commit_s: float) -> None:
        """Called by the SQLite writer thread after each group commit (prometheus_client is thread-safe)."""
        self.batch_size.observe(size)
        self.commit_seconds.observe(commit_s)

    def instrument(self, operations: Iterable[Operation]) -> list[Operation]:
        """Times and counts every call of `operations` (pass the complete catalogue)."""
        wrapped = [dataclasses.replace(op, fn=self._timed(op)) for op in operations]
        self._tools = {op.name for op in wrapped}
        return wrapped

    async def mcp_middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Counts MCP tool calls refused at argument validation (outcome="invalid")."""
        if ctx.method != "tools/call":
            return await call_next(ctx)
        mark: list[bool] = []
        token = _reached.set(mark)
        try:
            result = await call_next(ctx)
        finally:
            _reached.reset(token)
        # The SDK hands the result on already serialised (a dict); a model in other versions.
        refused = (
            result.is_error
            if isinstance(result, CallToolResult)
            else isinstance(result, dict) and result.get("isError")
        )
        if refused and not mark:
            self._count_invalid(str((ctx.params or {}).get("name", "")))
        return result

    def rest_middleware(self, app: ASGIApp) -> ASGIApp:
        """Counts REST calls (`POST /api/v1/tools/{name}`) refused at argument validation."""

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            path = scope.get("path", "") if scope["type"] == "http" else ""
            if scope.get("method") != "POST" or not path.startswith(REST_PREFIX):
                return await app(scope, receive, send)
            status = 0

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            mark: list[bool] = []
            token = _reached.set(mark)
            try:
                await app(scope, receive, send_status)
            finally:
                _reached.reset(token)
            if 400 <= status < 500 and not mark:
                self._count_invalid(path[len(REST_PREFIX) :])

        return counted

    def _count_invalid(self, name: str) -> None:
        if name in self._tools:  # an unknown tool's name is the caller's text: never a label
            self.tool_calls.labels(name, INVALID).inc()

    def _timed(self, op: Operation) -> Any:
        name, fn = op.name, op.fn
        calls, seconds = self.tool_calls, self.tool_seconds.labels(name)

        @functools.wraps(fn)
        async def timed(*args: Any, **kwargs: Any) -> Result:
            mark = _reached.get()
            if mark is not None:
                mark.append(True)
            started = time.perf_counter()
            outcome = "ok"
            try:
                result = await fn(*args, **kwargs)
            except HuddleError as exc:
                outcome = exc.code
                raise
            except Exception:
                outcome = "internal"
                raise
            finally:
                seconds.observe(time.perf_counter() - started)
                calls.labels(name, outcome).inc()
            if name in SCORED:
                self._count_scoring(name, result)
            return result

        return timed

    def _count_scoring(self, name: str, result: Result) -> None:
        if name == "announce_work":
            self.announces.labels(str(result.get("verdict"))).inc()
        # Counted from the summary, which covers every impact (the answer shows only the strongest).
        summary = result.get("impact_summary") or {}
        for layer, agents in (summary.get("by_layer") or {}).items():
            self.layer_firings.labels(str(layer)).inc(agents)

    async def refresh(self) -> None:
        """Sets the state gauges from one status read and the push hub's counters."""
        if self._coordinator is None or self._push is None:
            return
        status = await self._coordinator.status.status()
        self.open_threads.set(status["threads"]["active"])
        self.agents_online.set(status["agents"]["online"])
        self.leases.set(status["locks"]["active"])
        tasks = status["tasks"]
        self.queue_length.labels("lock_waiters").set(status["locks"]["waiting"])
        self.queue_length.labels("tasks_available").set(tasks["available"])
        self.queue_length.labels("tasks_in_flight").set(len(tasks["in_flight"]))
        self.queue_length.labels("message_waiters").set(len(status["messages"]["waiting"]))
        pending = getattr(self._coordinator.store, "pending_writes", None)
        if pending is not None:
            self.queue_length.labels("sqlite_writes").set(pending)
        push = self._push.push_status()
        self.subscribers.labels("sse").set(push["sse_streams"])
        self.subscribers.labels("mcp").set(push["mcp"]["listen_streams"])
        self.subscribers.labels("mqtt").set(self._push.mqtt_status().get("clients", 0))

    async def endpoint(self, request: Request) -> Response:
        await self.refresh()
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
