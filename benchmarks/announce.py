"""Announce latency over real HTTP with the official MCP client, as agents and history grow.

For each N, registers N agents that each hold an active intent, then times `announce_work` calls
from one more agent. Every announce depends on a file another agent targets (a gray-zone hit:
scored, recorded, and an awareness event written), so the measured path does real work. The
intents of earlier announces stay active, so history grows during the run too.

`history`: N = 50 again, on a database pre-filled with a long past (1,000,000 events, 100,000
ended intents, 100,000 old file edits; --quick: 20,000 / 2,000 / 2,000), to show that an announce
does not cost more as history grows.

Also times a trivial tool on a bare MCPServer in its own process: the floor the SDK and HTTP set.

    python benchmarks/announce.py            # N = 2, 10, 50, 1000; 600 timed announces each
    python benchmarks/announce.py --quick    # CI: N = 2, 10; 40 announces
"""

from __future__ import annotations

import argparse
import json
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from _harness import huddle_server, machine, summarise
from huddle.storage.sqlite import migrate

WARMUP = 50
PROJECT = "repo"  # the harness names the repository directory `repo`


def prefill_history(events: int, intents: int, edits: int) -> Callable[[Path], None]:
    """Writes a long past straight into a fresh database before the server opens it."""

    def prepare(data_dir: Path) -> None:
        data_dir.mkdir(parents=True)
        conn = sqlite3.connect(data_dir / "huddle.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        migrate(conn)
        long_ago = time.time() - 30 * 86400
        conn.execute("BEGIN")
        for start in range(0, events, 100_000):
            rows = [
                (
                    PROJECT,
                    long_ago + i,
                    "action.summary",
                    f"old-{i % 1000}",
                    None,
                    f'["old-{i % 1000}"]',
                    '{"summary": "history"}',
                )
                for i in range(start, min(events, start + 100_000))
            ]
            conn.executemany(
                "INSERT INTO events (project, ts, kind, actor, thread_id, audience, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        conn.execute("INSERT INTO event_audience (project, agent_id, cursor) SELECT project, actor, cursor FROM events")
        conn.executemany(
            "INSERT INTO intents (project, agent_id, subject, kind, status, created_at, expires_at, ended_at,"
            " target_files, depends_on_files, target_modules, target_symbols, verdict, impacts)"
            " VALUES (?, ?, 'old work', 'edit', 'completed', ?, ?, ?, ?, '[]', '[]', '[]', 'proceed', '[]')",
            [
                (PROJECT, f"old-{i % 1000}", long_ago, long_ago + 60, long_ago + 60, f'["src/old/{i}.py"]')
                for i in range(intents)
            ],
        )
        conn.executemany(
            "INSERT INTO file_edits (project, agent_id, path, ts) VALUES (?, ?, ?, ?)",
            [(PROJECT, f"old-{i % 1000}", f"src/agent{i % 50}/main.py", long_ago + i) for i in range(edits)],
        )
        conn.execute("COMMIT")
        conn.close()

    return prepare


async def timed_announces(url: str, agents: int, calls: int) -> dict[str, Any]:
    async with Client(url) as client:
        # Register N agents, each holding one active intent on its own file.
        for i in range(agents):
            await client.call_tool("register_agent", {"name": f"agent-{i}", "modules": [f"mod{i % 20}"]})
            await client.call_tool(
                "announce_work",
                {"agent_id": f"agent-{i}", "subject": f"work {i}", "target_files": [f"src/agent{i}/main.py"]},
            )
        await client.call_tool("register_agent", {"name": "bench", "modules": ["bench"]})
        latencies = []
        for i in range(WARMUP + calls):
            args = {
                "agent_id": "bench",
                "subject": f"bench {i}",
                "target_files": [f"src/bench/{i}.py"],
                "depends_on_files": [f"src/agent{i % agents}/main.py"],
            }
            start = time.perf_counter()
            result = await client.call_tool("announce_work", args)
            elapsed = time.perf_counter() - start
            if result.is_error or result.structured_content["verdict"] != "caution":  # type: ignore[index]
                raise SystemExit(f"unexpected announce result: {result}")
            if i >= WARMUP:
                latencies.append(elapsed)
        return summarise(latencies)


SDK_FLOOR_SERVER = textwrap.dedent("""
    import sys, uvicorn
    from mcp.server.mcpserver import MCPServer
    server = MCPServer("floor", log_level="WARNING")
    @server.tool()
    async def ping(n: int) -> dict:
        return {"n": n}
    app = server.streamable_http_app(json_response=True)  # the same transport mode Huddle serves
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
""")


async def sdk_floor(calls: int) -> dict[str, Any]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-c", SDK_FLOOR_SERVER, str(port)])
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                time.sleep(0.05)
        async with Client(url) as client:
            latencies = []
            for i in range(WARMUP + calls):
                start = time.perf_counter()
                await client.call_tool("ping", {"n": i})
                if i >= WARMUP:
                    latencies.append(time.perf_counter() - start)
        return summarise(latencies)
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run for CI (no timing claims)")
    args = parser.parse_args()
    sizes, calls = ((2, 10), 40) if args.quick else ((2, 10, 50, 1000), 600)
    report: dict[str, Any] = {"benchmark": "announce", "machine": machine(), "quick": args.quick, "results": {}}
    for n in sizes:
        with huddle_server() as server:  # a fresh server and database per N
            report["results"][str(n)] = anyio.run(timed_announces, server.mcp_url, n, calls)
    history = (20_000, 2_000, 2_000) if args.quick else (1_000_000, 100_000, 100_000)
    with huddle_server(prepare=prefill_history(*history)) as server:
        result = anyio.run(timed_announces, server.mcp_url, 50, calls)
    report["history"] = {
        "agents": 50,
        "events": history[0],
        "ended_intents": history[1],
        "old_file_edits": history[2],
        **result,
    }
    report["sdk_floor_trivial_tool"] = anyio.run(sdk_floor, calls)
    results = report["results"]
    if "10" in results and "1000" in results:
        report["p50_ratio_1000_vs_10"] = round(results["1000"]["p50_ms"] / results["10"]["p50_ms"], 2)
    if "50" in results:
        report["p50_ratio_history_vs_fresh_50"] = round(report["history"]["p50_ms"] / results["50"]["p50_ms"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
