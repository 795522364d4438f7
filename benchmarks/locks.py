"""Lease and task-claim latency over real HTTP with the official MCP client, at 2 and 50 agents.

Each agent is its own MCP session to a real `huddle server start` process. Scenarios:

- `agents_2`: two agents, each in a closed loop (one call in flight per agent);
- `agents_50_sequential`: fifty agents registered and holding state, calls made one at a time;
- `agents_50_in_flight`: fifty agents each in a closed loop, so fifty calls are in flight at once.

Lock calls alternate `acquire_lock` / `release_lock` on the agent's own file (uncontended: the
path under test is the grant itself, with 50 agents' leases in the table). `claim_task` claims the
best available task from a pre-filled board (one contended row: every claim races for it).
Errors (tool errors, transport errors, refused grants/claims) are counted, never hidden.
`message_wake` is the time from the start of `send_message` to the return of the recipient's
blocked `wait_for_message`.

`service` runs the same operations in-process on the service API (a fresh SQLite file, no HTTP,
no MCP): what the lease and claim logic itself costs, commit with fsync included.

`sdk_floor` runs the same closed loops against a bare SDK `MCPServer` (same JSON-response
transport) whose tools return canned answers without touching anything: the latency the MCP SDK,
HTTP and this machine impose before Huddle does any work. `overhead_vs_floor_ms` is the difference.

    python benchmarks/locks.py            # full run
    python benchmarks/locks.py --quick    # CI: a few iterations, proves it works (no timing claims)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp import Client

from _harness import huddle_server, machine, summarise
from huddle.bus.memory import MemoryBus
from huddle.service.coordinator import Coordinator
from huddle.settings import load_settings
from huddle.storage.sqlite import SqliteStore

WARMUP = 5
FLOOR_SERVER = textwrap.dedent("""
    import json, sys, uvicorn
    from mcp.server.mcpserver import MCPServer
    from mcp_types import CallToolResult, TextContent
    server = MCPServer("floor", log_level="WARNING")
    def reply(result: dict) -> CallToolResult:  # the result shape Huddle's tools return
        text = json.dumps(result, separators=(",", ":"))
        return CallToolResult(content=[TextContent(text=text)], structured_content=result)
    @server.tool()
    async def register_agent(name: str, agent_id: str) -> CallToolResult:
        return reply({"agent_id": agent_id})
    @server.tool()
    async def add_tasks(tasks: list[dict]) -> CallToolResult:
        return reply({"created": len(tasks)})
    @server.tool()
    async def acquire_lock(agent_id: str, path: str) -> CallToolResult:
        return reply({"granted": True, "path": path, "kind": "file", "mode": "exclusive", "fencing_token": 1,
                      "expires_at": "2030-01-01T00:00:00Z", "ttl_s": 600.0})
    @server.tool()
    async def release_lock(agent_id: str, path: str) -> CallToolResult:
        return reply({"released": True, "path": path, "mode": "exclusive", "fencing_token": 1})
    @server.tool()
    async def claim_task(agent_id: str) -> CallToolResult:
        return reply({"claimed": True, "task": {"task_id": "t", "description": "benchmark task",
                      "status": "claimed", "claimed_by": agent_id, "priority": 0, "depends_on": []}})
    app = server.streamable_http_app(json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
""")
TARGETS = {"agents_2_p50_ms": 2.5, "agents_50_in_flight_p99_ms": 50.0, "agents_50_in_flight_errors": 0}


@dataclass
class Sample:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)

    def add(self, name: str, seconds: float) -> None:
        self.latencies.setdefault(name, []).append(seconds)

    def fail(self, what: str) -> None:
        self.errors += 1
        if len(self.error_examples) < 5:
            self.error_examples.append(what[:300])


async def timed(
    sample: Sample, name: str, call: Awaitable[Any], ok: Callable[[dict[str, Any]], bool], record: bool
) -> None:
    start = time.perf_counter()
    try:
        result = await call
    except Exception as exc:  # a transport failure is an error to report, not a crash
        sample.fail(f"{name}: {type(exc).__name__}: {exc}")
        return
    elapsed = time.perf_counter() - start
    if result.is_error or not ok(result.structured_content or {}):
        sample.fail(f"{name}: {result.content[0].text if result.content else result}")  # type: ignore[union-attr]
        return
    if record:
        sample.add(name, elapsed)


async def lock_loop(client: Client, agent: str, iterations: int, sample: Sample) -> None:
    for i in range(WARMUP + iterations):
        await lock_once(client, agent, sample, record=i >= WARMUP)


async def claim_loop(client: Client, agent: str, iterations: int, sample: Sample) -> None:
    for i in range(WARMUP + iterations):
        await timed(
            sample,
            "claim_task",
            client.call_tool("claim_task", {"agent_id": agent}),
            lambda r: bool(r.get("claimed")),
            i >= WARMUP,
        )


def report(sample: Sample, wall_s: float) -> dict[str, Any]:
    """Lock samples: acquire, release and both together; claim samples: the claims. Plus errors."""
    out: dict[str, Any]
    if "claim_task" in sample.latencies:
        out = summarise(sample.latencies["claim_task"], wall_s)
    else:
        out = {name: summarise(values) for name, values in sample.latencies.items()}
        both = sample.latencies.get("acquire_lock", []) + sample.latencies.get("release_lock", [])
        if both:
            out["acquire_release"] = summarise(both, wall_s)
    out["errors"] = sample.errors
    if sample.error_examples:
        out["error_examples"] = sample.error_examples
    return out


async def fill_board(client: Client, tasks: int, prefix: str) -> None:
    for start in range(0, tasks, 500):
        batch = [
            {"task_id": f"{prefix}-{i}", "description": f"benchmark task {i}", "priority": i % 5}
            for i in range(start, min(tasks, start + 500))
        ]
        result = await client.call_tool("add_tasks", {"tasks": batch})
        if result.is_error:
            raise SystemExit(f"add_tasks failed: {result.content}")


async def closed_loops(url: str, agents: int, iterations: int) -> dict[str, Any]:
    """Every agent loops on its own session, so `agents` calls are in flight at any moment."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(url)) for _ in range(agents)]
        names = [f"loop{agents}-{i}" for i in range(agents)]
        for client, name in zip(clients, names, strict=True):
            await client.call_tool("register_agent", {"name": name, "agent_id": name})
        await fill_board(clients[0], agents * (WARMUP + iterations), names[0])
        results: dict[str, Any] = {"agents": agents, "calls_in_flight": agents}
        for kind, loop in (("locks", lock_loop), ("claim_task", claim_loop)):
            sample = Sample()
            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for client, name in zip(clients, names, strict=True):
                    tg.start_soon(loop, client, name, iterations, sample)
            results[kind] = report(sample, time.perf_counter() - start)
        return results


async def sequential_fifty(url: str, rounds: int) -> dict[str, Any]:
    """Fifty agents, each holding a lease and a claimed task; calls go one at a time, round-robin."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(url)) for _ in range(50)]
        names = [f"seq-{i}" for i in range(50)]
        for client, name in zip(clients, names, strict=True):
            await client.call_tool("register_agent", {"name": name, "agent_id": name})
            await client.call_tool("acquire_lock", {"agent_id": name, "path": f"held/{name}.py"})
        await fill_board(clients[0], 50 * (rounds + 1), "seq")
        locks, claims = Sample(), Sample()
        start = time.perf_counter()
        for r in range(rounds + 1):
            for client, name in zip(clients, names, strict=True):
                await lock_once(client, name, locks, record=r > 0)
        lock_wall = time.perf_counter() - start
        start = time.perf_counter()
        for r in range(rounds + 1):
            for client, name in zip(clients, names, strict=True):
                await timed(
                    claims,
                    "claim_task",
                    client.call_tool("claim_task", {"agent_id": name}),
                    lambda res: bool(res.get("claimed")),
                    r > 0,
                )
        return {
            "agents": 50,
            "calls_in_flight": 1,
            "locks": report(locks, lock_wall),
            "claim_task": report(claims, time.perf_counter() - start),
        }


async def lock_once(client: Client, agent: str, sample: Sample, record: bool) -> None:
    path = f"bench/{agent}/file.py"
    await timed(
        sample,
        "acquire_lock",
        client.call_tool("acquire_lock", {"agent_id": agent, "path": path}),
        lambda r: bool(r.get("granted")),
        record,
    )
    await timed(
        sample,
        "release_lock",
        client.call_tool("release_lock", {"agent_id": agent, "path": path}),
        lambda r: bool(r.get("released")),
        record,
    )


async def message_wake(url: str, samples: int) -> dict[str, Any]:
    async with Client(url) as alice, Client(url) as bob:
        await alice.call_tool("register_agent", {"name": "wake-alice", "agent_id": "wake-alice"})
        await bob.call_tool("register_agent", {"name": "wake-bob", "agent_id": "wake-bob"})
        latencies = []
        for i in range(samples + 1):
            woke: list[float] = []

            async def wait(woke: list[float]) -> None:
                await bob.call_tool("wait_for_message", {"agent_id": "wake-bob", "timeout_s": 30})
                woke.append(time.perf_counter())

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait, woke)
                while True:  # until bob's call is blocked server-side
                    status = await alice.call_tool("coordinator_status", {})
                    if "wake-bob" in (status.structured_content or {}).get("messages", {}).get("waiting", []):
                        break
                    await anyio.sleep(0.002)
                sent = time.perf_counter()
                await alice.call_tool(
                    "send_message", {"from_agent": "wake-alice", "to_agent": "wake-bob", "content": f"ping {i}"}
                )
            if i > 0:
                latencies.append(woke[0] - sent)
        return summarise(latencies)


@contextlib.contextmanager
def floor_server() -> Any:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, str(port)])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait()


def p50(result: dict[str, Any], kind: str) -> float:
    section = result[kind]
    return float(section["acquire_release"]["p50_ms"] if kind == "locks" else section["p50_ms"])


async def service_only(agents: int, iterations: int) -> dict[str, Any]:
    """The same loops on the service API in this process: no HTTP, no MCP."""
    with tempfile.TemporaryDirectory(prefix="huddle-bench-service-") as tmp:
        settings = load_settings({"data_dir": tmp, "repo": tmp, "mqtt_broker": "off"}, environ={})
        coordinator = Coordinator(SqliteStore(settings.sqlite_path, settings.project_key), MemoryBus(), settings)
        await coordinator.start()
        try:
            names = [f"svc-{i}" for i in range(agents)]
            for name in names:
                await coordinator.agents.register(name, agent_id=name)
            total = agents * (WARMUP + iterations)
            for first in range(0, total, 500):
                await coordinator.tasks.add_many(
                    [{"task_id": f"svc-{i}", "description": "x"} for i in range(first, min(total, first + 500))]
                )
            locks, claims = Sample(), Sample()

            async def loop(name: str) -> None:
                for i in range(WARMUP + iterations):
                    for tool, call, key, sample in (
                        ("acquire_lock", lambda: coordinator.locks.acquire(name, f"bench/{name}.py"), "granted", locks),
                        (
                            "release_lock",
                            lambda: coordinator.locks.release(name, f"bench/{name}.py"),
                            "released",
                            locks,
                        ),
                        ("claim_task", lambda: coordinator.tasks.claim(name), "claimed", claims),
                    ):
                        start = time.perf_counter()
                        result = await call()
                        if not result.get(key):
                            sample.fail(f"{tool}: {result}")
                        elif i >= WARMUP:
                            sample.add(tool, time.perf_counter() - start)

            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for name in names:
                    tg.start_soon(loop, name)
            wall = time.perf_counter() - start
            return {"agents": agents, "locks": report(locks, wall), "claim_task": report(claims, wall)}
        finally:
            await coordinator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run for CI (no timing claims)")
    args = parser.parse_args()
    two, fifty, rounds, wakes = (30, 4, 2, 5) if args.quick else (1000, 40, 20, 50)
    out: dict[str, Any] = {"benchmark": "locks", "machine": machine(), "quick": args.quick, "results": {}}
    with huddle_server() as server:
        results = out["results"]
        results["agents_2"] = anyio.run(closed_loops, server.mcp_url, 2, two)
        results["agents_50_sequential"] = anyio.run(sequential_fifty, server.mcp_url, rounds)
        results["agents_50_in_flight"] = anyio.run(closed_loops, server.mcp_url, 50, fifty)
        results["message_wake"] = anyio.run(message_wake, server.mcp_url, wakes)
    out["service"] = {
        "agents_2": anyio.run(service_only, 2, min(two, 200)),
        "agents_50": anyio.run(service_only, 50, fifty),
    }
    with floor_server() as url:
        out["sdk_floor"] = {
            "agents_2": anyio.run(closed_loops, url, 2, two),
            "agents_50_in_flight": anyio.run(closed_loops, url, 50, fifty),
        }
    r = out["results"]
    out["overhead_vs_floor_ms"] = {
        f"{scenario}.{kind}.p50": round(p50(r[scenario], kind) - p50(out["sdk_floor"][scenario], kind), 3)
        for scenario in ("agents_2", "agents_50_in_flight")
        for kind in ("locks", "claim_task")
    }
    measured = {
        "agents_2_p50_ms": max(
            r["agents_2"]["locks"]["acquire_release"]["p50_ms"], r["agents_2"]["claim_task"]["p50_ms"]
        ),
        "agents_50_in_flight_p99_ms": max(
            r["agents_50_in_flight"]["locks"]["acquire_release"]["p99_ms"],
            r["agents_50_in_flight"]["claim_task"]["p99_ms"],
        ),
        "agents_50_in_flight_errors": r["agents_50_in_flight"]["locks"]["errors"]
        + r["agents_50_in_flight"]["claim_task"]["errors"],
    }
    out["targets"] = {
        name: {"target": TARGETS[name], "measured": value, "met": value <= TARGETS[name]}
        for name, value in measured.items()
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
