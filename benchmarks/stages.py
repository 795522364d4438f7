"""Where one call's time goes: announce_work and acquire_lock/release_lock broken into stages.

Three measurements, all on this machine, one call in flight at a time:

`http`: a real `huddle server start` process (this script launches it through `--serve`, which
instruments the server in its own process and then runs the ordinary CLI; nothing in src changes),
driven by the official MCP client over HTTP. Each call is stamped with `time.perf_counter_ns` at
the stage boundaries below; the server also reports the CPU time (`time.process_time`, every
thread) it spent per call, which a noisy neighbour barely moves. The floor's trivial tool (the bare
SDK server of _harness.py, stamped at the same SDK boundaries) is timed in alternating blocks in
the same run, and its stages are reported beside Huddle's.

    asgi_in        the request reaches the outermost ASGI app
    mcp_endpoint   Huddle's ASGI middleware and routing are done; the SDK's endpoint starts
    sdk_dispatch   the SDK parsed the JSON-RPC body and reached the server middleware
    tool_fn        the SDK found the tool and calls its function
    validate       Huddle's argument contract (check_values, pydantic) starts
    operation      arguments valid; the operation (metrics wrapper, service) starts
    handoff        the service queues its transaction function for the writer thread
    txn_start      the writer thread runs it (after BEGIN IMMEDIATE, and SAVEPOINT in a batch)
    txn_end        the transaction function returned
    commit_start   RELEASE SAVEPOINT (in a batch) and the pre-commit hook are done; COMMIT starts
    commit_end     COMMIT returned (the fsync of synchronous=FULL is inside it)
    deliver        the event loop runs the writer's hand-back (call_soon_threadsafe)
    published      the commit's events went to the bus and the push channels
    resumed        the service's `await store.write` returns
    returned       the operation returned its result
    tool_return    the tool function returned it serialised into a CallToolResult
    tool_done      the SDK converted and serialised the result, back in the server middleware
    response_start the SDK serialised the JSON-RPC response and started it
    asgi_out       the last body byte left the app

`service`: the same operations on the Coordinator in this process (no HTTP, no MCP): wall time,
CPU time per call, and the share of the wall time that is COMMIT. For acquire+release, `wall_p50_ms`
is one pair (both calls), `cpu_ms_per_call` and `wall_p50_ms_per_call` one call.

`in_memory`: the same tools through the official client connected to Huddle's MCPServer in
this process (no HTTP), and the same for the bare SDK server's trivial tool: CPU per call, so a
regression in Huddle's own code path shows without the network or the neighbours.

    python benchmarks/stages.py            # 1000 calls per operation
    python benchmarks/stages.py --quick    # CI: 40 calls, proves it works
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

STAGES = (
    "asgi_in",
    "mcp_endpoint",
    "sdk_dispatch",
    "tool_fn",
    "validate",
    "operation",
    "handoff",
    "txn_start",
    "txn_end",
    "commit_start",
    "commit_end",
    "deliver",
    "published",
    "resumed",
    "returned",
    "tool_return",
    "tool_done",
    "response_start",
    "asgi_out",
)
WARMUP = 50
BLOCK = 50
STAGES_PATH = "/__stages"


# -- the instrumented server (runs in the server's process, through --serve) -------------------


class Recorder:
    """Stamps of the call in flight (the benchmark sends one at a time), and every finished call's."""

    def __init__(self) -> None:
        self.current: dict[str, int] | None = None
        self.calls: list[dict[str, int]] = []
        self.cpu_start = time.process_time()

    def stamp(self, name: str) -> None:
        record = self.current
        if record is not None and name not in record:  # the first write's stages; later ones counted
            record[name] = time.perf_counter_ns()

    def count(self, name: str) -> None:
        record = self.current
        if record is not None:
            record[name] = record.get(name, 0) + 1


RECORDER = Recorder()


def _wrap_async(fn: Callable[..., Awaitable[Any]], before: str, after: str | None = None) -> Any:
    @functools.wraps(fn)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        RECORDER.stamp(before)
        result = await fn(*args, **kwargs)
        if after is not None:
            RECORDER.stamp(after)
        return result

    return wrapped


class StageRecorder:
    """The outermost ASGI app: opens a record per MCP POST, closes it on the last body byte, and
    answers GET /__stages (the records and the CPU time since the last reset)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == STAGES_PATH:
            await self._report(scope, receive, send)
            return
        if scope["path"] != "/mcp" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        record = {"asgi_in": time.perf_counter_ns()}
        RECORDER.current = record

        async def stamped_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                RECORDER.stamp("response_start")
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                record["asgi_out"] = time.perf_counter_ns()

        try:
            await self.app(scope, receive, stamped_send)
        finally:
            RECORDER.current = None
            if "tool_fn" in record:  # a tool call (not initialize, notifications, tools/list)
                RECORDER.calls.append(record)

    async def _report(self, scope: Any, receive: Any, send: Any) -> None:
        from starlette.responses import JSONResponse

        body = {"calls": RECORDER.calls, "cpu_s": time.process_time() - RECORDER.cpu_start}
        if scope.get("query_string", b"").startswith(b"reset"):
            RECORDER.calls = []
            RECORDER.cpu_start = time.process_time()
        await JSONResponse(body)(scope, receive, send)


async def stamping_middleware(ctx: Any, call_next: Any) -> Any:
    """An SDK server middleware, innermost: the SDK has parsed the request / serialised the result."""
    RECORDER.stamp("sdk_dispatch")
    result = await call_next(ctx)
    if ctx.method == "tools/call":
        RECORDER.stamp("tool_done")
    return result


def instrument_sdk() -> None:
    """The boundaries Huddle and the floor share: the SDK's endpoint and the tool function."""
    from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
    from mcp.server.streamable_http_manager import StreamableHTTPASGIApp

    endpoint_call = StreamableHTTPASGIApp.__call__

    async def endpoint(self: Any, scope: Any, receive: Any, send: Any) -> None:
        RECORDER.stamp("mcp_endpoint")
        await endpoint_call(self, scope, receive, send)

    StreamableHTTPASGIApp.__call__ = endpoint  # type: ignore[method-assign]
    call_fn = FuncMetadata.call_fn

    async def stamped_call_fn(self: Any, *args: Any, **kwargs: Any) -> Any:
        RECORDER.stamp("tool_fn")
        result = await call_fn(self, *args, **kwargs)
        RECORDER.stamp("tool_return")
        return result

    FuncMetadata.call_fn = stamped_call_fn  # type: ignore[method-assign]


def serve_floor(port: str) -> None:
    """The floor server of _harness.py, stamped at the same SDK boundaries as Huddle."""
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    from _harness import FLOOR_SERVER

    instrument_sdk()
    streamable_http_app = MCPServer.streamable_http_app

    def instrumented_app(self: MCPServer, *args: Any, **kwargs: Any) -> Any:
        self.middleware.append(stamping_middleware)
        return StageRecorder(streamable_http_app(self, *args, **kwargs))

    MCPServer.streamable_http_app = instrumented_app  # type: ignore[method-assign]
    sys.argv = [sys.argv[0], port]
    exec(compile(FLOOR_SERVER, "floor", "exec"), {"__name__": "__main__", "uvicorn": uvicorn})


def instrument_server() -> None:
    """Patches the stage boundaries into the server's classes (this process only)."""
    from huddle.cli import server as cli_server
    from huddle.storage.group_commit import GroupCommitStore
    from huddle.storage.sqlite import SqliteStore
    from huddle.transports import mcp_server
    from huddle.transports.arguments import BoundOperation

    instrument_sdk()

    class StampedBoundOperation(BoundOperation):
        def __init__(self, op: Any):
            super().__init__(dataclasses.replace(op, fn=_wrap_async(op.fn, "operation")))

        async def __call__(self, args: dict[str, Any]) -> Any:
            RECORDER.stamp("validate")
            result = await super().__call__(args)
            RECORDER.stamp("returned")
            return result

    mcp_server.BoundOperation = StampedBoundOperation  # type: ignore[misc]

    write = GroupCommitStore.write

    async def stamped_write(self: Any, fn: Callable[[Any], Any]) -> Any:
        RECORDER.count("writes")
        RECORDER.stamp("handoff")
        record = RECORDER.current

        def job(unit: Any) -> Any:
            # The writer thread: stamp this call's record directly (RECORDER.current is the loop's).
            if record is not None:
                record.setdefault("txn_start", time.perf_counter_ns())
            try:
                return fn(unit)
            finally:
                if record is not None:
                    record.setdefault("txn_end", time.perf_counter_ns())
                    BATCH.append(record)

        result = await write(self, job)
        RECORDER.stamp("resumed")
        return result

    BATCH: list[dict[str, int]] = []
    commit = SqliteStore._commit

    def stamped_commit(self: Any, conn: Any) -> None:
        started = time.perf_counter_ns()
        commit(self, conn)
        ended = time.perf_counter_ns()
        for record in BATCH:
            record.setdefault("commit_start", started)
            record.setdefault("commit_end", ended)
        BATCH.clear()

    deliver = GroupCommitStore._deliver

    def stamped_deliver(self: Any, outcomes: Any) -> None:
        RECORDER.stamp("deliver")
        deliver(self, outcomes)

    publish = GroupCommitStore._publish

    def stamped_publish(self: Any, events: Any) -> None:
        publish(self, events)
        RECORDER.stamp("published")

    read = SqliteStore.read

    async def counted_read(self: Any, fn: Callable[[Any], Any]) -> Any:
        RECORDER.count("reads")
        return await read(self, fn)

    GroupCommitStore.write = stamped_write  # type: ignore[method-assign]
    SqliteStore._commit = stamped_commit  # type: ignore[method-assign]
    GroupCommitStore._deliver = stamped_deliver  # type: ignore[method-assign]
    GroupCommitStore._publish = stamped_publish  # type: ignore[method-assign]
    SqliteStore.read = counted_read  # type: ignore[method-assign]

    build_app = cli_server.build_app

    def build_recorded_app(settings: Any) -> Any:
        huddle = build_app(settings)
        huddle.mcp.middleware.append(stamping_middleware)
        huddle.http = StageRecorder(huddle.http)  # type: ignore[assignment]
        return huddle

    cli_server.build_app = build_recorded_app  # type: ignore[assignment]


def serve(argv: list[str]) -> int:
    instrument_server()
    from huddle.cli.main import main

    return main(argv)


# -- the client side -----------------------------------------------------------------------------


def stage_table(calls: list[dict[str, int]]) -> dict[str, Any]:
    """p50 and mean per stage (µs from the previous stamp present), plus the server's total."""
    durations: dict[str, list[float]] = {}
    totals = []
    for record in calls:
        previous = None
        for name in STAGES:
            if name not in record:
                continue
            if previous is not None:
                durations.setdefault(f"{previous}->{name}", []).append((record[name] - record[previous]) / 1000)
            previous = name
        totals.append((record["asgi_out"] - record["asgi_in"]) / 1000)
    table = {
        stage: {"p50_us": round(statistics.median(values), 1), "mean_us": round(statistics.fmean(values), 1)}
        for stage, values in durations.items()
    }
    return {
        "stages": table,
        "server_total_p50_us": round(statistics.median(totals), 1),
        "server_total_mean_us": round(statistics.fmean(totals), 1),
        "sum_of_stage_p50s_us": round(sum(s["p50_us"] for s in table.values()), 1),
        "writes_per_call": statistics.fmean(r.get("writes", 0) for r in calls),
        "reads_per_call": statistics.fmean(r.get("reads", 0) for r in calls),
    }


def p50_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 3)


def timed_block(
    into: list[float], fns: list[Callable[[], Awaitable[None]]], n: int
) -> Callable[[int], Awaitable[None]]:
    """One block: `n` rounds of `fns`, each call's client-side latency appended to `into`."""

    async def run(_: int) -> None:
        for _ in range(n):
            for fn in fns:
                start = time.perf_counter()
                await fn()
                into.append(time.perf_counter() - start)

    return run


async def http_stages(url: str, floor_url: str, calls: int) -> dict[str, Any]:
    import httpx
    from mcp import Client

    from _harness import interleave

    base, floor_base = url.removesuffix("/mcp"), floor_url.removesuffix("/mcp")
    out: dict[str, Any] = {}
    async with Client(url) as client, Client(floor_url) as floor, httpx.AsyncClient() as http:
        for i in range(50):  # 50 agents holding an active intent, as in announce.py
            await client.call_tool("register_agent", {"name": f"agent-{i}", "modules": [f"mod{i % 20}"]})
            await client.call_tool(
                "announce_work",
                {"agent_id": f"agent-{i}", "subject": f"work {i}", "target_files": [f"src/agent{i}/main.py"]},
            )
        await client.call_tool("register_agent", {"name": "bench", "agent_id": "bench", "modules": ["bench"]})
        counter = iter(range(10**9))

        async def announce() -> None:
            i = next(counter)
            result = await client.call_tool(
                "announce_work",
                {
                    "agent_id": "bench",
                    "subject": f"bench {i}",
                    "target_files": [f"src/bench/{i}.py"],
                    "depends_on_files": [f"src/agent{i % 50}/main.py"],
                },
            )
            if result.is_error:
                raise SystemExit(f"announce failed: {result.content}")

        async def acquire() -> None:
            result = await client.call_tool("acquire_lock", {"agent_id": "bench", "path": "bench/locked.py"})
            if result.is_error or not (result.structured_content or {}).get("granted"):
                raise SystemExit(f"acquire failed: {result.content}")

        async def release() -> None:
            result = await client.call_tool("release_lock", {"agent_id": "bench", "path": "bench/locked.py"})
            if result.is_error or not (result.structured_content or {}).get("released"):
                raise SystemExit(f"release failed: {result.content}")

        async def ping() -> None:
            await floor.call_tool("ping", {"n": 1})

        for name, ops in (("announce_work", [announce]), ("acquire_lock+release_lock", [acquire, release])):
            client_s: dict[str, list[float]] = {"huddle": [], "floor": []}

            await timed_block(client_s["huddle"], ops, WARMUP)(0)
            await timed_block(client_s["floor"], [ping], WARMUP)(0)
            client_s = {"huddle": [], "floor": []}
            for server in (base, floor_base):
                await http.get(server + STAGES_PATH + "?reset=1")
            per_block = max(1, BLOCK // len(ops))
            await interleave(
                -(-calls // per_block),
                timed_block(client_s["huddle"], ops, per_block),
                timed_block(client_s["floor"], [ping], BLOCK),
            )
            report = (await http.get(base + STAGES_PATH + "?reset=1")).json()
            floor_report = (await http.get(floor_base + STAGES_PATH + "?reset=1")).json()
            recorded = report["calls"]
            out[name] = {
                "calls": len(recorded),
                **stage_table(recorded),
                "server_cpu_ms_per_call": round(report["cpu_s"] / len(recorded) * 1000, 3),
                "client_p50_ms": p50_ms(client_s["huddle"]),
                "floor_client_p50_ms": p50_ms(client_s["floor"]),
                "client_p50_over_floor_p50": round(p50_ms(client_s["huddle"]) / p50_ms(client_s["floor"]), 2),
                "floor": {
                    **stage_table(floor_report["calls"]),
                    "server_cpu_ms_per_call": round(floor_report["cpu_s"] / len(floor_report["calls"]) * 1000, 3),
                },
            }
    return out


@contextlib.contextmanager
def temp_settings(**extra: Any) -> Iterator[Any]:
    from huddle.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="huddle-stages-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        overrides = {"data_dir": str(Path(tmp) / "data"), "repo": str(repo), "mqtt_broker": "off", **extra}
        yield load_settings(overrides, environ={})


def per_call(fn: Callable[[], Awaitable[Any]]) -> Callable[[int], Awaitable[dict[str, Any]]]:
    """Runs `fn` n times (after a warm-up): wall p50, CPU per call of the whole process."""

    async def run(n: int) -> dict[str, Any]:
        for _ in range(WARMUP):
            await fn()
        walls = []
        cpu = time.process_time()
        for _ in range(n):
            start = time.perf_counter()
            await fn()
            walls.append(time.perf_counter() - start)
        cpu = time.process_time() - cpu
        return {"calls": n, "wall_p50_ms": p50_ms(walls), "cpu_ms_per_call": round(cpu / n * 1000, 3)}

    return run


async def seed(coordinator: Any) -> None:
    for i in range(50):
        await coordinator.agents.register(f"agent-{i}", agent_id=f"agent-{i}", modules=[f"mod{i % 20}"])
        await coordinator.intents.announce(f"agent-{i}", f"work {i}", [f"src/agent{i}/main.py"])
    await coordinator.agents.register("bench", agent_id="bench", modules=["bench"])


async def service_stages(calls: int) -> dict[str, Any]:
    """The Coordinator alone: wall and CPU per call, and COMMIT's share of the wall time."""
    from huddle.bus.memory import MemoryBus
    from huddle.service.coordinator import Coordinator
    from huddle.storage.sqlite import SqliteStore

    with temp_settings() as settings:
        store = SqliteStore(settings.sqlite_path, settings.project_key)
        commits: list[float] = []
        commit = store._commit

        def timed_commit(conn: Any) -> None:
            start = time.perf_counter()
            commit(conn)
            commits.append(time.perf_counter() - start)

        store._commit = timed_commit  # type: ignore[method-assign]
        coordinator = Coordinator(store, MemoryBus(), settings)
        await coordinator.start()
        try:
            await seed(coordinator)
            counter = iter(range(10**9))

            async def announce() -> None:
                i = next(counter)
                await coordinator.intents.announce(
                    "bench", f"bench {i}", [f"src/bench/{i}.py"], depends_on_files=[f"src/agent{i % 50}/main.py"]
                )

            async def lease() -> None:
                await coordinator.locks.acquire("bench", "bench/locked.py")
                await coordinator.locks.release("bench", "bench/locked.py")

            out = {}
            for name, fn, per in (("announce_work", announce, 1), ("acquire_lock+release_lock", lease, 2)):
                commits.clear()
                result = await per_call(fn)(calls)
                timed = commits[-calls * per :]
                result["commit_p50_ms"] = p50_ms(timed)
                # COMMIT's time over the run's wall time (wall p50 x runs; a lease run is a pair of calls).
                result["commit_share_of_wall"] = round(sum(timed) / (result["wall_p50_ms"] / 1000 * calls), 2)
                if per == 2:
                    result = {
                        **result,
                        "wall_p50_ms_per_call": round(result["wall_p50_ms"] / 2, 3),
                        "cpu_ms_per_call": round(result["cpu_ms_per_call"] / 2, 3),
                    }
                out[name] = result
            return out
        finally:
            await coordinator.stop()


async def in_memory(calls: int) -> dict[str, Any]:
    """The official client on Huddle's MCPServer in this process, and on the bare SDK server."""
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    from huddle.app import build_app

    out: dict[str, Any] = {}
    floor = MCPServer("floor", log_level="WARNING")
    floor.middleware[:] = [m for m in floor.middleware if type(m).__name__ != "OpenTelemetryMiddleware"]

    @floor.tool()
    async def ping(n: int) -> dict[str, int]:
        return {"n": n}

    async with Client(floor) as client:
        out["floor_ping"] = await per_call(lambda: client.call_tool("ping", {"n": 1}))(calls)
    with temp_settings() as settings:
        huddle = build_app(settings)
        await huddle.coordinator.start()
        try:
            await seed(huddle.coordinator)
            counter = iter(range(10**9))
            async with Client(huddle.mcp) as client:

                async def announce() -> None:
                    i = next(counter)
                    await client.call_tool(
                        "announce_work",
                        {
                            "agent_id": "bench",
                            "subject": f"bench {i}",
                            "target_files": [f"src/bench/{i}.py"],
                            "depends_on_files": [f"src/agent{i % 50}/main.py"],
                        },
                    )

                async def lease() -> None:
                    await client.call_tool("acquire_lock", {"agent_id": "bench", "path": "bench/locked.py"})
                    await client.call_tool("release_lock", {"agent_id": "bench", "path": "bench/locked.py"})

                out["announce_work"] = await per_call(announce)(calls)
                lease_result = await per_call(lease)(calls)
                out["acquire_lock+release_lock"] = {
                    **lease_result,
                    "cpu_ms_per_call": round(lease_result["cpu_ms_per_call"] / 2, 3),
                }
        finally:
            await huddle.coordinator.stop()
    floor_cpu = out["floor_ping"]["cpu_ms_per_call"]
    for name in ("announce_work", "acquire_lock+release_lock"):
        out[name]["cpu_ms_over_floor"] = round(out[name]["cpu_ms_per_call"] - floor_cpu, 3)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        raise SystemExit(serve(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-floor":
        serve_floor(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run for CI (no timing claims)")
    parser.add_argument("--calls", type=int, default=None, help="timed calls per operation (default 1000)")
    args = parser.parse_args()
    calls = args.calls or (40 if args.quick else 1000)

    from _harness import floor_server, huddle_server, machine

    report: dict[str, Any] = {"benchmark": "stages", "machine": machine(), "quick": args.quick, "calls": calls}
    launcher = [sys.executable, os.path.abspath(__file__), "--serve"]
    floor_launcher = [sys.executable, os.path.abspath(__file__), "--serve-floor"]
    with floor_server(floor_launcher) as floor_url, huddle_server(launcher=launcher) as server:
        report["http"] = asyncio.run(http_stages(server.mcp_url, floor_url, calls))
    report["service"] = asyncio.run(service_stages(calls))
    report["in_memory"] = asyncio.run(in_memory(calls))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
