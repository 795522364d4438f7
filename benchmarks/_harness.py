"""Shared benchmark plumbing: start a real Huddle server process, time calls, summarise as JSON.

Benchmarks never assert timings; they print numbers. CI runs them with --quick to prove they work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huddle.testing import log_tail, server_command, start_server, stop_server

logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass
class Server:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def mcp_url(self) -> str:
        return self.url + "/mcp"


@contextlib.contextmanager
def huddle_server(
    *extra_args: str, prepare: Callable[[Path], None] | None = None, launcher: Sequence[str] | None = None
) -> Iterator[Server]:
    """`huddle server start --port 0` on a throw-away data dir and repo; stopped on exit.

    `prepare(data_dir)` runs before the server starts (e.g. to pre-fill the database). The repo
    directory is named `repo`, so the project key is `repo`. `launcher` replaces
    `python -m huddle.cli.main` (a script that instruments the server, then runs that CLI).
    """
    with tempfile.TemporaryDirectory(prefix="huddle-bench-") as tmp:
        data_dir, repo = Path(tmp) / "data", Path(tmp) / "repo"
        repo.mkdir()
        if prepare is not None:
            prepare(data_dir)
        # The server's output goes to a file in the run's temp dir, not a pipe nobody reads.
        log = Path(tmp) / "server.log"
        ok = False
        try:
            command = server_command(data_dir, repo, *extra_args)
            if launcher is not None:
                command = [*launcher, *command[3:]]  # command[:3] is `python -m huddle.cli.main`
            process, url = start_server(command, data_dir, log, timeout_s=30)
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None
        try:
            yield Server(url, data_dir, process)
            ok = True
        finally:
            stop_server(process, timeout_s=10)
            if not ok or process.returncode not in (0, -signal.SIGINT):
                # The temp dir goes with this block: show what the server said while it still exists.
                print(f"huddle server log ({log}):\n{log_tail(log)}", file=sys.stderr)


def summarise(seconds: Sequence[float], wall_s: float | None = None) -> dict[str, Any]:
    """p50/p99/mean in milliseconds, and calls per second over the wall time."""
    ordered = sorted(seconds)
    n = len(ordered)
    out: dict[str, Any] = {
        "calls": n,
        "p50_ms": round(ordered[n // 2] * 1000, 3),
        "p99_ms": round(ordered[min(n - 1, int(n * 0.99))] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }
    total = wall_s if wall_s is not None else sum(ordered)
    out["calls_per_s"] = round(n / total, 1) if total else None
    return out


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform}


# A bare SDK server served as Huddle serves MCP: the same MCPServer class, JSON responses (not an SSE
# stream per POST), stateful sessions, OpenTelemetry middleware removed, uvicorn with the same
# event loop and HTTP parser. Its tools answer in the shape Huddle's tools return (compact JSON
# text plus structured content) without touching anything: the floor the SDK, HTTP and this
# machine set before Huddle does any work.
FLOOR_SERVER = textwrap.dedent("""
    import json, sys, uvicorn
    from mcp.server.mcpserver import MCPServer
    from mcp_types import CallToolResult, TextContent
    server = MCPServer("floor", log_level="WARNING")
    server.middleware[:] = [m for m in server.middleware if type(m).__name__ != "OpenTelemetryMiddleware"]
    def reply(result: dict) -> CallToolResult:
        text = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
        return CallToolResult(content=[TextContent(text=text)], structured_content=result)
    @server.tool()
    async def ping(n: int) -> CallToolResult:
        return reply({"n": n})
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
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
""")


@contextlib.contextmanager
def floor_server(launcher: Sequence[str] | None = None) -> Iterator[str]:
    """The bare SDK server (FLOOR_SERVER) in its own process; yields its MCP URL.

    `launcher` replaces `python -c FLOOR_SERVER` (a script that instruments, then runs it); the
    port is its last argument."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [*(launcher or [sys.executable, "-c", FLOOR_SERVER]), str(port)]
    process = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the SDK floor server did not start (exit {process.returncode})") from None
                time.sleep(0.05)  # polling a port another process opens
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait()


async def interleave(
    blocks: int, huddle: Callable[[int], Awaitable[None]], floor: Callable[[int], Awaitable[None]]
) -> None:
    """Runs `blocks` blocks on each side, alternating, so both sides see the same moments of noise.

    Each callable runs one block (its argument is the block's index). The order flips every block
    (H F F H H F …), so neither side always runs right after the other's warm caches.
    """
    for i in range(blocks):
        first, second = (huddle, floor) if i % 4 in (0, 3) else (floor, huddle)
        await first(i)
        await second(i)


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator else None


def versus_floor(huddle: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    """Huddle's percentiles as multiples of the floor's, measured in the same run."""
    return {
        "p50_over_floor_p50": ratio(huddle["p50_ms"], floor["p50_ms"]),
        "p99_over_floor_p50": ratio(huddle["p99_ms"], floor["p50_ms"]),
        "p99_over_floor_p99": ratio(huddle["p99_ms"], floor["p99_ms"]),
    }
