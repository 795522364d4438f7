"""Announce latency over real HTTP with the official MCP client, as agents and history grow.

For each N, registers N agents that each hold an active intent, then times `announce_work` calls
from one more agent. Every announce depends on a file another agent targets (a gray-zone hit:
scored, recorded, and an awareness event written), so the measured path does real work. The
intents of earlier announces stay active, so history grows during the run too.

Also times a trivial tool on a bare MCPServer in its own process: the floor the SDK and HTTP set.

    python benchmarks/announce.py            # N = 2, 10, 50, 1000; 600 timed announces each
    python benchmarks/announce.py --quick    # CI: N = 2, 10; 40 announces
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import textwrap
import time
from typing import Any

import anyio
from mcp import Client

from _harness import huddle_server, machine, summarise

WARMUP = 50


async def timed_announces(url: str, agents: int, calls: int) -> dict[str, Any]:
    async with Client(url) as client:
        # Register N agents, each holding one active intent on its own file.
        for i in range(agents):
            await client.call_tool("register_agent", {"name": f"agent-{i}", "modules": [f"mod{i % 20}"]})
            await client.call_tool("announce_work", {"agent_id": f"agent-{i}", "subject": f"work {i}",
                                                     "target_files": [f"src/agent{i}/main.py"]})
        await client.call_tool("register_agent", {"name": "bench", "modules": ["bench"]})
        latencies = []
        for i in range(WARMUP + calls):
            args = {"agent_id": "bench", "subject": f"bench {i}", "target_files": [f"src/bench/{i}.py"],
                    "depends_on_files": [f"src/agent{i % agents}/main.py"]}
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
    report["sdk_floor_trivial_tool"] = anyio.run(sdk_floor, calls)
    results = report["results"]
    if "10" in results and "1000" in results:
        report["p50_ratio_1000_vs_10"] = round(results["1000"]["p50_ms"] / results["10"]["p50_ms"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
