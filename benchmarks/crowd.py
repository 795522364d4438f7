"""A crowd on one module: what one announce costs with 10 vs 1,000 agents registered there.

Every agent registers on module `src/crowd`; one more agent then announces work on a new file in
that module, so every registered agent is a gray-zone impact (layer 3). Reported per size:
announce p50/p99, the response's size in bytes (compact JSON, as an MCP client receives it), and
per announce the events written and the event_audience rows (inbox entries) they add, and the
audience-group member rows (written once per distinct large audience, storage/base.py) in all.

`in_process`: the Coordinator service API on a fresh SQLite file, no HTTP. Both sizes live side by
side and their announces alternate, so a load spike on this shared machine hits both alike.
`server`: a real `huddle server start` process (MCP over HTTP with the official client, embedded
MQTT broker on) per size, both running, their announces alternating too; agents register over REST
to keep the setup short.

    python benchmarks/crowd.py            # 300 timed announces per size (after 30 warm-up)
    python benchmarks/crowd.py --quick    # CI: 15 timed announces per size
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client

from _harness import huddle_server, machine, summarise
from huddle.bus.memory import MemoryBus
from huddle.service.coordinator import Coordinator
from huddle.settings import load_settings
from huddle.storage.base import Unit
from huddle.storage.sqlite import SqliteStore

MODULE = "src/crowd"
SIZES = (10, 1000)
ANNOUNCER = "announcer"


def announce_args(i: int) -> dict[str, Any]:
    return {
        "agent_id": ANNOUNCER,
        "subject": f"crowd work {i}",
        "target_files": [f"{MODULE}/file{i}.py"],
        "target_modules": [MODULE],
    }


def counts(unit: Unit) -> tuple[int, int, int]:
    """(events, event_audience rows, audience group member rows) in the log so far."""
    out = []
    for table in ("events", "event_audience", "audience_members"):
        row = unit.tx.one(f"SELECT COUNT(*) AS n FROM {table} WHERE project = ?", (unit.project,))
        assert row is not None
        out.append(int(row["n"]))
    return out[0], out[1], out[2]


@contextlib.asynccontextmanager
async def crowd_coordinator(tmp: Path, agents: int) -> AsyncIterator[Coordinator]:
    repo = tmp / "repo"
    repo.mkdir(parents=True)
    settings = load_settings({"data_dir": str(tmp / "data"), "repo": str(repo), "analysis": "off"}, environ={})
    coord = Coordinator(SqliteStore(settings.sqlite_path, settings.project_key), MemoryBus(), settings)
    await coord.start()
    try:
        for i in range(agents):
            await coord.agents.register(f"agent-{i:04d}", modules=[MODULE])
        await coord.agents.register(ANNOUNCER, modules=[MODULE])
        yield coord
    finally:
        await coord.stop()


async def in_process(warmup: int, calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="huddle-crowd-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            coords = {n: await stack.enter_async_context(crowd_coordinator(Path(tmp) / str(n), n)) for n in SIZES}
            latencies: dict[int, list[float]] = {n: [] for n in SIZES}
            sizes: dict[int, int] = {}
            before = {n: await c.store.read(counts) for n, c in coords.items()}
            for i in range(warmup + calls):
                for n, coord in coords.items():  # alternate: both sizes see the same machine load
                    start = time.perf_counter()
                    result = await coord.intents.announce(**announce_args(i))
                    elapsed = time.perf_counter() - start
                    if result["verdict"] != "caution" or result["impact_summary"]["total"] != n:
                        raise SystemExit(f"unexpected announce result with {n} agents: {result}")
                    if i >= warmup:
                        latencies[n].append(elapsed)
                    sizes[n] = len(json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode())
            out: dict[str, Any] = {}
            for n, coord in coords.items():
                events, rows, members = await coord.store.read(counts)
                announces = warmup + calls
                out[str(n)] = {
                    **summarise(latencies[n]),
                    "response_bytes": sizes[n],
                    "events_per_announce": round((events - before[n][0]) / announces, 2),
                    "inbox_rows_per_announce": round((rows - before[n][1]) / announces, 2),
                    "group_member_rows_in_all": members - before[n][2],
                }
            return out


async def on_servers(urls: dict[int, str], warmup: int, calls: int) -> dict[str, Any]:
    """One server per size, their announces alternating (as in-process) so both see the same load."""
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for agents, url in urls.items():
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                for i in range(agents):
                    reply = await http.post(
                        "/api/v1/tools/register_agent", json={"name": f"agent-{i:04d}", "modules": [MODULE]}
                    )
                    reply.raise_for_status()
            client = clients[agents] = await stack.enter_async_context(Client(url + "/mcp"))
            await client.call_tool("register_agent", {"name": ANNOUNCER, "modules": [MODULE]})
        latencies: dict[int, list[float]] = {n: [] for n in urls}
        sizes: dict[int, int] = {}
        for i in range(warmup + calls):
            for agents, client in clients.items():
                start = time.perf_counter()
                result = await client.call_tool("announce_work", announce_args(i))
                elapsed = time.perf_counter() - start
                body = result.structured_content
                if result.is_error or body is None or body["impact_summary"]["total"] != agents:
                    raise SystemExit(f"unexpected announce result with {agents} agents: {result}")
                if i >= warmup:
                    latencies[agents].append(elapsed)
                sizes[agents] = sum(len(c.text.encode()) for c in result.content if hasattr(c, "text"))
        return {str(n): {**summarise(latencies[n]), "response_bytes": sizes[n]} for n in urls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run for CI (no timing claims)")
    parser.add_argument("--no-server", action="store_true", help="in-process only")
    args = parser.parse_args()
    warmup, calls = (5, 15) if args.quick else (30, 300)
    report: dict[str, Any] = {
        "benchmark": "crowd",
        "machine": machine(),
        "quick": args.quick,
        "module": MODULE,
        "in_process": anyio.run(in_process, warmup, calls),
    }
    if not args.no_server:
        with contextlib.ExitStack() as servers:  # a fresh server and database per size
            urls = {n: servers.enter_context(huddle_server()).url for n in SIZES}
            report["server"] = anyio.run(on_servers, urls, warmup, calls)
    for where in ("in_process", "server"):
        if where in report:
            small, big = report[where][str(SIZES[0])], report[where][str(SIZES[-1])]
            report[where]["p50_ratio_1000_vs_10"] = round(big["p50_ms"] / small["p50_ms"], 2)
            report[where]["p99_ratio_1000_vs_10"] = round(big["p99_ms"] / small["p99_ms"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
