"""Resource bounds: memory and descriptors of a real server under hostile load, and after it.

Four phases against one `huddle server start` process, each measured from /proc (RSS and open
descriptors) before, at the peak during, and after the load is gone:

- `sse_streams`: 500 concurrent `GET /api/events` streams held open, then closed;
- `abandoned_sessions`: 10,000 MCP sessions opened with `initialize` and never closed;
- `slow_clients`: 1,000 connections that stall, half in the middle of their headers and half with
  a body shorter than their Content-Length; the server must close them itself;
- `sse_replay`: four streams at once replaying 100,000 logged events from cursor 0, read to the end.

Throughout each phase (while the load is held) a new client is probed: an official MCP SDK client
registers an agent, and a REST call answers. `served` counts the probes that succeeded; every one
must. Each phase runs its load twice. After each wave, descriptors must be back at the baseline
(+2). CPython keeps freed memory in its arenas rather than giving it back, so RSS is judged by
reuse: the second wave may add at most a quarter of what the first grew (or 3 MiB); state that is
never freed (a leak, sessions never closed) grows it again by the whole wave. Slow clients must be
disconnected by the server itself, and abandoned sessions closed by it (their ids answer 404).

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
from _workload import ServerProcess
from mcp import Client

from huddle.bus.memory import MemoryBus
from huddle.service.coordinator import Coordinator
from huddle.settings import load_settings
from huddle.storage.sqlite import SqliteStore
from huddle.testing import MCP_HEADERS, initialize_request

FULL = {"sse_streams": 500, "abandoned_sessions": 10_000, "slow_clients": 1_000, "replay_events": 100_000}
QUICK = {"sse_streams": 50, "abandoned_sessions": 100, "slow_clients": 100, "replay_events": 5_000}
FAST_BOUNDS = {"--header-timeout-s": "1", "--body-timeout-s": "2", "--mcp-session-idle-s": "2"}
QUICK_SESSION_CAP = 32  # per client in quick mode, so 100 sessions also exercise eviction at the cap
FD_SLACK = 2
RSS_FLOOR = 3 * 1024 * 1024  # RSS changes below this are noise (allocator arenas, caches)
RSS_KEEP = 0.25  # a second wave may add at most this share of what the first wave grew


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


async def settle(pid: int, fd_base: int, timeout_s: float) -> None:
    """Polls /proc until the server's descriptors are back at the baseline, or the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and open_fds(pid) > fd_base + FD_SLACK:
        await asyncio.sleep(0.1)


async def phase(
    server: ServerProcess,
    name: str,
    load: Callable[[], Awaitable[Callable[[], Awaitable[dict[str, Any]]]]],
    settle_s: float = 15,
) -> dict[str, Any]:
    """Two waves of `load()` (which returns its release), probed while held, each released and settled.

    Memory is judged on the second wave: once a wave's state is freed, the next identical wave
    reuses that memory, so RSS after it is no higher than after the first; state that is never
    freed (a leak, sessions never closed) grows RSS again by the whole wave.
    """
    pid = server.pid
    started = time.monotonic()
    rss_base, fd_base = rss_bytes(pid), open_fds(pid)
    waves: list[dict[str, Any]] = []
    served = failed = 0
    for wave in range(2):
        with Sampler(pid) as sampler:
            release = await load()
            for i in range(2):
                if await probe(server.url, f"probe-{name}-{wave}-{i}"):
                    served += 1
                else:
                    failed += 1
            details = await release()
        await settle(pid, fd_base, settle_s)
        peak = {"rss_mib": _mib(sampler.peak_rss), "fds": sampler.peak_fds}
        waves.append({**details, "peak": peak, "after": {"rss_mib": _mib(rss_bytes(pid)), "fds": open_fds(pid)}})
    first_growth = (waves[0]["peak"]["rss_mib"] - _mib(rss_base)) * 1024 * 1024
    second_added = (waves[1]["after"]["rss_mib"] - waves[0]["after"]["rss_mib"]) * 1024 * 1024
    memory_ok = second_added <= max(RSS_FLOOR, RSS_KEEP * first_growth)
    fds_ok = all(w["after"]["fds"] <= fd_base + FD_SLACK for w in waves)
    load_ok = all(w.pop("ok", True) for w in waves)
    return {
        "phase": name,
        "before": {"rss_mib": _mib(rss_base), "fds": fd_base},
        "waves": waves,
        "second_wave_added_rss_mib": _mib(int(second_added)),
        "probes_served": served,
        "probes_failed": failed,
        "wall_s": round(time.monotonic() - started, 1),
        "ok": failed == 0 and fds_ok and memory_ok and load_ok,
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


async def abandoned_sessions(url: str, count: int, idle_s: float) -> Callable[[], Awaitable[dict[str, Any]]]:
    """`count` sessions opened and dropped; the release waits out the idle timeout and asks each id."""
    init = initialize_request("x")
    headers = MCP_HEADERS
    statuses: dict[int, int] = {}
    ids: list[str] = []
    sem = asyncio.Semaphore(32)

    async def each(fn: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=32)) as http:

            async def one() -> None:
                async with sem:
                    with contextlib.suppress(httpx.HTTPError):
                        await fn(http)

            await asyncio.gather(*(one() for _ in range(count)))

    async def open_one(http: httpx.AsyncClient) -> None:
        response = await http.post("/mcp", json=init, headers=headers)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if "mcp-session-id" in response.headers:
            ids.append(response.headers["mcp-session-id"])

    await each(open_one)

    async def release() -> dict[str, Any]:
        await asyncio.sleep(idle_s + 1)  # the server's own idle timeout is what is under test
        gone = 0
        pending = list(ids)

        async def ask(http: httpx.AsyncClient) -> None:
            nonlocal gone
            if not pending:  # fewer ids than attempts: some initialize calls were refused (see statuses)
                return
            sid = pending.pop()
            ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
            response = await http.post("/mcp", json=ping, headers={**headers, "mcp-session-id": sid})
            gone += response.status_code == 404

        await each(ask)
        return {
            "sessions": count,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "closed_by_server": gone,
            "ok": gone == len(ids) == count,
        }

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
    if bounds and quick:
        extra += ["--mcp-sessions-per-client", str(QUICK_SESSION_CAP)]
    slow_wait = 12.0 if bounds else (15.0 if quick else 130.0)
    # Without the setting, waiting out the SDK's 30 minutes is pointless: ask at once (all still open).
    idle_s = float(FAST_BOUNDS["--mcp-session-idle-s"]) if bounds else 0.0
    streams = 2 if quick else 4  # concurrent replays of the whole log
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
            phases.append(await phase(server, "sse_streams", lambda: sse_streams(url, scale["sse_streams"]), 15))
            phases.append(
                await phase(
                    server,
                    "abandoned_sessions",
                    lambda: abandoned_sessions(url, scale["abandoned_sessions"], idle_s),
                )
            )
            phases.append(
                await phase(server, "slow_clients", lambda: slow_clients(url, scale["slow_clients"], slow_wait), 15)
            )
            phases.append(
                await phase(server, "sse_replay", lambda: sse_replay(url, scale["replay_events"], streams), 15)
            )
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
