"""Announce latency over real HTTP with the official MCP client, as agents and history grow.

For each N, registers N agents that each hold an active intent, then times `announce_work` calls
from one more agent. Every announce depends on a file another agent targets (a gray-zone hit:
scored, recorded, and an awareness event written), so the measured path does real work. The
intents of earlier announces stay active, so history grows during the run too.

`history`: N = 50 again, on a database pre-filled with a long past (1,000,000 events, 100,000
ended intents, 100,000 old file edits; --quick: 20,000 / 2,000 / 2,000), to show that an announce
does not cost more as history grows.

Every run is measured against the floor the SDK and HTTP set: a trivial tool on a bare MCPServer
served as Huddle serves (_harness.FLOOR_SERVER), in its own process. Huddle's announces and the
floor's calls alternate in blocks of 50 from one client process, so both see the same moments of
a noisy machine; each result carries the floor of its own run and the ratios
(`p50_over_floor_p50`, `p99_over_floor_p50`, `p99_over_floor_p99`).

    python benchmarks/announce.py            # N = 2, 10, 50, 1000; 600 timed announces each
    python benchmarks/announce.py --quick    # CI: N = 2, 10; 40 announces

`auth`: the same announces at N = 50 (--quick: 10) on an open-mode and a token-mode server, in
rotating blocks with the floor: `token_minus_open_p50_ms` is what token verification adds (issue
10 allows 0.2 ms).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from _harness import floor_server, huddle_server, interleave, machine, ratio, summarise, versus_floor
from huddle.service.token_codec import TokenCodec
from huddle.storage.sqlite import migrate

WARMUP = 50
BLOCK = 50  # calls per block; Huddle's and the floor's blocks alternate (see _harness.interleave)
# Issue 14: at 50 agents, in one interleaved run on the 2-core machine.
TARGETS = {"p50_over_floor_p50": 1.5, "p99_over_floor_p50": 3.0}
PROJECT = "repo"  # the harness names the repository directory `repo`
AUTH_SECRET = "announce-benchmark-" + "k" * 32
AUTH_BUDGET_MS = 0.2  # issue 10: token verification may add at most this to an announce's p50


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


def bearer_client(url: str, token: str | None) -> Client:
    """The official client over HTTP with the HTTP client the SDK itself builds (httpx2, its timeouts),
    sending `Authorization: Bearer <token>` when given: both modes then differ by the token alone."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0))
    return Client(streamable_http_client(url, http_client=http))


def token_for(agent: str, *scopes: str) -> str:
    """A token the token-mode server accepts: signed with its --auth-secret, for its project `repo`."""
    codec = TokenCodec(AUTH_SECRET, clock=time.time)
    return codec.issue(agent, project=PROJECT, org="default", scopes=set(scopes or ("agent",)), ttl_s=3600)[0]


async def prepare_agents(client: Client, agents: int) -> None:
    """N agents, each holding one active intent on its own file (the client may act for each: open
    mode, or an admin token)."""
    for i in range(agents):
        await client.call_tool(
            "register_agent", {"name": f"agent-{i}", "agent_id": f"agent-{i}", "modules": [f"mod{i % 20}"]}
        )
        await client.call_tool(
            "announce_work",
            {"agent_id": f"agent-{i}", "subject": f"work {i}", "target_files": [f"src/agent{i}/main.py"]},
        )


def announcer(client: Client, agents: int, into: list[float]) -> Callable[[int], Awaitable[None]]:
    """A block of `n` timed announces by `bench`, each a gray-zone hit on another agent's file."""
    done = 0

    async def block(n: int) -> None:
        nonlocal done
        for _ in range(n):
            i = done
            done += 1
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
            into.append(elapsed)

    return block


def pinger(floor: Client, into: list[float]) -> Callable[[int], Awaitable[None]]:
    async def block(n: int) -> None:
        for i in range(n):
            start = time.perf_counter()
            result = await floor.call_tool("ping", {"n": i})
            elapsed = time.perf_counter() - start
            if result.is_error:
                raise SystemExit(f"unexpected floor result: {result}")
            into.append(elapsed)

    return block


async def timed_auth_modes(
    open_url: str, token_url: str, floor_url: str, agents: int, calls: int, block: int
) -> dict[str, Any]:
    """Issue 10's budget: the same announces on an open-mode and a token-mode server, in rotating
    blocks with the floor, so token verification's cost is read from the same moments."""
    async with (
        bearer_client(open_url, None) as open_client,
        bearer_client(token_url, token_for("ops", "admin")) as admin,
        bearer_client(token_url, token_for("bench")) as token_client,
        Client(floor_url) as floor,
    ):
        await prepare_agents(open_client, agents)
        await prepare_agents(admin, agents)
        for client in (open_client, token_client):
            await client.call_tool("register_agent", {"name": "bench", "agent_id": "bench", "modules": ["bench"]})
        times: dict[str, list[float]] = {"open": [], "token": [], "floor": []}
        sides = {
            "open": announcer(open_client, agents, times["open"]),
            "token": announcer(token_client, agents, times["token"]),
            "floor": pinger(floor, times["floor"]),
        }
        for side in sides.values():
            await side(WARMUP)
        for samples in times.values():
            samples.clear()
        order = list(sides)
        for i in range(-(-calls // block)):
            for name in order[i % 3 :] + order[: i % 3]:  # each side leads in turn
                await sides[name](block)
        summary = {name: summarise(samples) for name, samples in times.items()}
        return {
            **summary,
            "token_minus_open_p50_ms": round(summary["token"]["p50_ms"] - summary["open"]["p50_ms"], 3),
            "open_p50_over_floor_p50": ratio(summary["open"]["p50_ms"], summary["floor"]["p50_ms"]),
            "token_p50_over_floor_p50": ratio(summary["token"]["p50_ms"], summary["floor"]["p50_ms"]),
            "budget_ms": AUTH_BUDGET_MS,
        }


async def timed_announces(url: str, floor_url: str, agents: int, calls: int, block: int) -> dict[str, Any]:
    """`calls` announces against Huddle and as many trivial calls against the floor, in alternating blocks."""
    async with Client(url) as client, Client(floor_url) as floor:
        await prepare_agents(client, agents)
        await client.call_tool("register_agent", {"name": "bench", "modules": ["bench"]})
        huddle_s: list[float] = []
        floor_s: list[float] = []
        announce_block, ping_block = announcer(client, agents, huddle_s), pinger(floor, floor_s)
        await announce_block(WARMUP)
        await ping_block(WARMUP)
        huddle_s.clear()
        floor_s.clear()
        await interleave(-(-calls // block), lambda _: announce_block(block), lambda _: ping_block(block))
        huddle, floor_summary = summarise(huddle_s), summarise(floor_s)
        return {**huddle, "floor": floor_summary, **versus_floor(huddle, floor_summary)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run for CI (no timing claims)")
    args = parser.parse_args()
    sizes, calls, block = ((2, 10), 40, 20) if args.quick else ((2, 10, 50, 1000), 600, BLOCK)
    report: dict[str, Any] = {
        "benchmark": "announce",
        "machine": machine(),
        "quick": args.quick,
        "block": block,
        "results": {},
    }
    with floor_server() as floor_url:
        for n in sizes:
            with huddle_server() as server:  # a fresh server and database per N
                report["results"][str(n)] = anyio.run(timed_announces, server.mcp_url, floor_url, n, calls, block)
        history = (20_000, 2_000, 2_000) if args.quick else (1_000_000, 100_000, 100_000)
        with huddle_server(prepare=prefill_history(*history)) as server:
            result = anyio.run(timed_announces, server.mcp_url, floor_url, 50, calls, block)
        auth_agents = 10 if args.quick else 50
        with (
            huddle_server() as open_server,
            # Rate limits off: the benchmark calls far faster than an agent would; this measures the token check.
            huddle_server("--auth", "token", "--auth-secret", AUTH_SECRET, "--rate-limit-per-s", "0") as token_server,
        ):
            report["auth"] = {
                "agents": auth_agents,
                **anyio.run(
                    timed_auth_modes, open_server.mcp_url, token_server.mcp_url, floor_url, auth_agents, calls, block
                ),
            }
    report["history"] = {
        "agents": 50,
        "events": history[0],
        "ended_intents": history[1],
        "old_file_edits": history[2],
        **result,
    }
    results = report["results"]
    if "10" in results and "1000" in results:
        report["p50_ratio_1000_vs_10"] = round(results["1000"]["p50_ms"] / results["10"]["p50_ms"], 2)
    if "50" in results:
        report["p50_ratio_history_vs_fresh_50"] = round(report["history"]["p50_ms"] / results["50"]["p50_ms"], 2)
        fifty = results["50"]
        report["targets"] = {
            name: {"target": target, "measured": fifty[name], "met": fifty[name] <= target}
            for name, target in TARGETS.items()
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
