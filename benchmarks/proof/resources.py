"""Resource bounds: memory and descriptors of a real server under hostile load, and after it.

Four phases against one `huddle server start` process, each measured from /proc (RSS and open
descriptors) before, at the peak during, and after the load is gone:

- `sse_streams`: 500 concurrent `GET /api/events` streams held open, then closed;
- `abandoned_sessions`: 10,000 MCP sessions opened with `initialize` and never closed;
- `slow_clients`: 1,000 connections that stall, half in the middle of their headers and half with
  a body shorter than their Content-Length; the server must close them itself;
- `sse_replay`: streams replaying 100,000 logged events from cursor 0, read to the end.

Throughout each phase (while the load is held) a new client is probed: an official MCP SDK client
registers an agent, and a REST call answers. `served` counts the probes that succeeded; every one
must. After a phase, descriptors must come back to the baseline (+2), and of the RSS the phase added
at most half may still be resident (or 4 MiB): CPython keeps some freed memory in its arenas, so
exact equality is not expected, but state that is never freed (a leak) keeps all of it. Slow
clients must be disconnected by the server itself.

The slow-client and idle-session bounds are settings (`header_timeout_s`, `body_timeout_s`,
`mcp_session_idle_s`); when the server has them they are set low here so a run takes seconds, and
`bounds_settings` in the output says whether they were available.

    python benchmarks/proof/resources.py            # full scale
    python benchmarks/proof/resources.py --quick    # scaled down (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from mcp import Client

from _workload import ServerProcess
from huddle.bus.memory import MemoryBus
from huddle.service.coordinator import Coordinator
from huddle.settings import load_settings
from huddle.storage.sqlite import SqliteStore

FULL = {"sse_streams": 500, "abandoned_sessions": 10_000, "slow_clients": 1_000, "replay_events": 100_000}
QUICK = {"sse_streams": 50, "abandoned_sessions": 300, "slow_clients": 100, "replay_events": 5_000}
FAST_BOUNDS = {"--header-timeout-s": "2", "--body-timeout-s": "3", "--mcp-session-idle-s": "3"}
FD_SLACK = 2
RSS_FLOOR = 4 * 1024 * 1024  # retained RSS below this is noise (allocator arenas, caches)
RSS_KEEP = 0.5  # of what a phase added, at most this share may still be resident afterwards


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Sampler:
    """Peak RSS and descriptors of a process, sampled every 20 ms on a thread while a phase runs."""

    def __init__(self, pid: int):
        self.pid, self.peak_rss, self.peak_fds = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.peak_rss = max(self.peak_rss, rss_bytes(self.pid))
                self.peak_fds = max(self.peak_fds, open_fds(self.pid))
            self._stop.wait(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def probe(url: str, name: str) -> bool:
    """A brand-new client is served: an MCP session registers an agent, and REST answers."""
    try:
        with anyio_timeout(20):
            async with Client(url + "/mcp") as client:
                result = await client.call_tool("register_agent", {"name": name})
            if result.is_error:
                return False
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.post(url + "/api/v1/tools/list_agents", json={})
            return response.status_code == 200
    except Exception:
        return False


@contextlib.contextmanager
def anyio_timeout(seconds: float) -> Any:
    import anyio

    with anyio.fail_after(seconds):
        yield


async def settle(pid: int, done: Callable[[], bool], timeout_s: float) -> None:
    """Polls /proc until `done()` (descriptors and memory back at the baseline) or the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not done():
        await asyncio.sleep(0.1)


async def phase(
    server: ServerProcess,
    name: str,
    load: Callable[[], Awaitable[Callable[[], Awaitable[dict[str, Any]]]]],
    settle_s: float,
) -> dict[str, Any]:
    """Baseline, `load()` (returns a release), probes while held, release, settle, after."""
    pid = server.pid
    rss_base, fd_base = rss_bytes(pid), open_fds(pid)
    served = failed = 0
    with Sampler(pid) as sampler:
        release = await load()
        for i in range(3):
            if await probe(server.url, f"probe-{name}-{i}"):
                served += 1
            else:
                failed += 1
        details = await release()
    growth = sampler.peak_rss - rss_base

    def back_to_baseline() -> bool:
        rss_ok = rss_bytes(pid) - rss_base <= max(RSS_FLOOR, RSS_KEEP * growth)
        return rss_ok and open_fds(pid) <= fd_base + FD_SLACK

    await settle(pid, back_to_baseline, settle_s)
    rss_after, fd_after = rss_bytes(pid), open_fds(pid)
    rss_ok = rss_after - rss_base <= max(RSS_FLOOR, RSS_KEEP * growth)
    load_ok = details.pop("ok", True)
    return {
        "phase": name,
        **details,
        "rss_mib": {"before": _mib(rss_base), "peak": _mib(sampler.peak_rss), "after": _mib(rss_after)},
        "fds": {"before": fd_base, "peak": sampler.peak_fds, "after": fd_after},
        "probes_served": served,
        "probes_failed": failed,
        "ok": failed == 0 and fd_after <= fd_base + FD_SLACK and rss_ok and load_ok,
    }


def _mib(n: int) -> float:
    return round(n / 1024 / 1024, 1)


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


async def sse_streams(url: str, count: int) -> Callable[[], Awaitable[dict[str, Any]]]:
    host, port = _host_port(url)
    writers: list[asyncio.StreamWriter] = []
    opened = 0
    for _ in range(count):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /api/events HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        opened += head.startswith(b"HTTP/1.1 200")
        writers.append(writer)

    async def release() -> dict[str, Any]:
        for writer in writers:
            writer.close()
        return {"streams": count, "opened": opened}

    return release


async def abandoned_sessions(url: str, count: int) -> Callable[[], Awaitable[dict[str, Any]]]:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}},
    }
    headers = {"Accept": "application/json, text/event-stream"}
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        sem = asyncio.Semaphore(32)

        async def one() -> None:
            async with sem:
                try:
                    response = await http.post("/mcp", json=body, headers=headers)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                except httpx.HTTPError:
                    statuses[0] = statuses.get(0, 0) + 1

        await asyncio.gather(*(one() for _ in range(count)))

    async def release() -> dict[str, Any]:
        return {"sessions": count, "statuses": {str(k): v for k, v in sorted(statuses.items())}}

    return release


async def slow_clients(url: str, count: int, wait_s: float) -> Callable[[], Awaitable[dict[str, Any]]]:
    host, port = _host_port(url)
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for i in range(count):
        reader, writer = await asyncio.open_connection(host, port)
        if i % 2:
            writer.write(f"POST /api/v1/tools/list_agents HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Le".encode())
        else:
            head = f"POST /api/v1/tools/list_agents HTTP/1.1\r\nHost: {host}:{port}\r\n"
            writer.write((head + "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{}").encode())
        conns.append((reader, writer))

    async def closed_by_server(reader: asyncio.StreamReader) -> bool:
        try:
            with anyio_timeout(wait_s):
                while await reader.read(65536):
                    pass
            return True
        except (TimeoutError, ConnectionError):
            return False

    async def release() -> dict[str, Any]:
        results = await asyncio.gather(*(closed_by_server(r) for r, _ in conns))
        for _, writer in conns:
            writer.close()
        closed = sum(results)
        return {"clients": count, "closed_by_server": closed, "waited_s": wait_s, "ok": closed == count}

    return release


async def sse_replay(url: str, events: int, streams: int) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def replay() -> int:
        seen = 0
        with anyio_timeout(300):
            async with (
                httpx.AsyncClient(base_url=url, timeout=60) as http,
                http.stream("GET", "/api/events", params={"since": 0}) as response,
            ):
                async for line in response.aiter_lines():
                    if line.startswith(": live"):
                        break
                    seen += line.startswith("id:")
        return seen

    started = time.monotonic()
    counts = await asyncio.gather(*(replay() for _ in range(streams)))
    wall = time.monotonic() - started

    async def release() -> dict[str, Any]:
        return {"logged_events": events, "streams": streams, "replayed_each": min(counts), "wall_s": round(wall, 1)}

    return release


async def prefill(data_dir: Path, repo: Path, events: int) -> None:
    """Writes `events` action-summary events through the service layer before the server starts."""
    settings = load_settings({"data_dir": str(data_dir), "repo": str(repo), "mqtt_broker": "off"}, environ={})
    coordinator = Coordinator(SqliteStore(settings.sqlite_path, settings.project_key), MemoryBus(), settings)
    await coordinator.start()
    try:
        await coordinator.agents.register("filler", "filler", None, None, None, None)
        for start in range(0, events, 1000):
            batch = range(start, min(events, start + 1000))
            await asyncio.gather(*(coordinator.updates.log_action_summary("filler", f"e{i}") for i in batch))
    finally:
        await coordinator.stop()


def fast_bounds_supported() -> bool:
    """Whether this Huddle has the slow-client and idle-session settings (flags of `server start`)."""
    help_text = subprocess.run(
        [sys.executable, "-m", "huddle.cli.main", "server", "start", "--help"], capture_output=True, text=True
    ).stdout
    return all(flag in help_text for flag in FAST_BOUNDS)


async def main(quick: bool) -> dict[str, Any]:
    scale = QUICK if quick else FULL
    bounds = fast_bounds_supported()
    extra = [x for pair in FAST_BOUNDS.items() for x in pair] if bounds else []
    slow_wait = 12.0 if bounds else (15.0 if quick else 130.0)
    phases: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="huddle-bounds-") as tmp:
        data_dir, repo = Path(tmp) / "data", Path(tmp) / "repo"
        repo.mkdir()
        await prefill(data_dir, repo, scale["replay_events"])
        server = ServerProcess(data_dir, repo, *extra)
        url = server.start()
        try:
            # Warm-up: load every code path once so the baseline is not the cold import.
            await probe(url, "warmup")
            release = await sse_streams(url, 2)
            await release()
            release = await sse_replay(url, scale["replay_events"], 1)
            await release()
            session_settle = 15.0 if bounds else 5.0
            phases.append(await phase(server, "sse_streams", lambda: sse_streams(url, scale["sse_streams"]), 15))
            phases.append(
                await phase(
                    server,
                    "abandoned_sessions",
                    lambda: abandoned_sessions(url, scale["abandoned_sessions"]),
                    session_settle,
                )
            )
            phases.append(
                await phase(server, "slow_clients", lambda: slow_clients(url, scale["slow_clients"], slow_wait), 15)
            )
            phases.append(await phase(server, "sse_replay", lambda: sse_replay(url, scale["replay_events"], 4), 15))
        finally:
            server.stop()
    return {"scale": scale, "bounds_settings": bounds, "phases": phases, "ok": all(p["ok"] for p in phases)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="scaled down, for CI")
    args = parser.parse_args()
    report = asyncio.run(main(args.quick))
    print(json.dumps({"benchmark": "resources", "quick": args.quick, **report}, indent=2))
    sys.exit(0 if report["ok"] else 1)
