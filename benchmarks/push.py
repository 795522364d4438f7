"""Push latency: from the announce's HTTP response to the event's arrival at MQTT and SSE subscribers.

Each iteration is scenario S1 on a fresh file: alice announces it, then bob announces it (timed) and
a consultation opens; every subscriber waits for that thread's `consultations/new` (MQTT, QoS 1) or
its `thread.opened` SSE frame. The delay is arrival time minus the time the announce's response reached
the client (all in this process, one clock). The thread is then cancelled and the bench waits for every
subscriber to see that too, so iterations do not overlap.

Subscribers are lean asyncio protocols (a minimal MQTT 3.1.1 client, a raw HTTP/1.1 SSE reader) so the
numbers measure the server's fan-out, not a heavy client library. They run in a child process of
their own (one event loop for all of them), so the announcing client does not share a loop with them;
all three processes share this machine's cores.

    python benchmarks/push.py            # 1, 50 and 200 subscribers per channel
    python benchmarks/push.py --quick    # CI: fewer iterations, 1 and 50 subscribers
    python benchmarks/push.py --pin      # the announcing client on a CPU of its own (Linux)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from _harness import huddle_server, machine
from _mqtt_wire import connect_and_subscribe, split_packets


class Subscriber(asyncio.Protocol):
    """Records when a frame containing the awaited marker arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.marker: bytes | None = None
        self.arrived_at: float | None = None
        self.done = asyncio.Event()
        self.ready = asyncio.Event()

    def expect(self, marker: bytes) -> None:
        self.marker = marker
        self.arrived_at = None
        self.done.clear()
        if marker in self.buffer:  # it may already be here
            self._hit(time.perf_counter())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def _hit(self, now: float) -> None:
        self.arrived_at = now
        self.buffer = self.buffer[self.buffer.index(self.marker) + len(self.marker or b"") :]  # type: ignore[arg-type]
        self.marker = None
        self.done.set()

    def feed(self, now: float, data: bytes) -> None:
        self.buffer = (self.buffer + data)[-65536:]
        if self.marker is not None and self.marker in self.buffer:
            self._hit(now)


class MqttSubscriber(Subscriber):
    def __init__(self, client_id: str, topic: str):
        super().__init__()
        self.client_id = client_id
        self.topic = topic
        self.packets = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.write(connect_and_subscribe(self.client_id, self.topic))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        packets, self.packets = split_packets(self.packets + data)
        for header, body in packets:
            kind = header >> 4
            if kind == 9:  # SUBACK
                self.ready.set()
            elif kind == 3:  # PUBLISH
                topic_len = int.from_bytes(body[:2], "big")
                offset = 2 + topic_len
                if (header >> 1) & 3:
                    assert self.transport is not None
                    # PUBACK after this loop pass: the other sockets that became readable with this one
                    # get their arrival stamped first, not after our send syscalls.
                    asyncio.get_running_loop().call_soon(
                        self.transport.write, bytes([0x40, 2]) + body[offset : offset + 2]
                    )
                    offset += 2
                self.feed(now, body[offset:])


class SseSubscriber(Subscriber):
    def __init__(self, host: str, port: int, query: str):
        super().__init__()
        self.request = (
            f"GET /api/events?{query} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.ready.is_set() and b": live" in self.buffer + data:
            self.ready.set()
        self.feed(now, data)


def summary_ms(values: Sequence[float]) -> dict[str, Any]:
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return {"n": 0}
    return {
        "n": n,
        "p50_ms": round(ordered[n // 2] * 1000, 3),
        "p99_ms": round(ordered[min(n - 1, int(n * 0.99))] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


async def connect(subscribers: list[Subscriber], host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    for sub in subscribers:
        await loop.create_connection(lambda sub=sub: sub, host, port)  # type: ignore[misc]
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subscribers)), 60)


def disconnect(subscribers: list[Subscriber]) -> None:
    for sub in subscribers:
        if sub.transport is not None:
            sub.transport.close()


async def host_subscribers(channel: str, host: str, port: int, topic_root: str, count: int) -> None:
    """Child process: holds the subscribers; per `expect MARKER` line, answers with the arrival times."""
    subscribers: list[Subscriber]
    if channel == "mqtt":
        subscribers = [MqttSubscriber(f"bench-{i}", f"{topic_root}/consultations/#") for i in range(count)]
    else:
        query = "kinds=thread.opened,thread.status"
        subscribers = [SseSubscriber(host, port, query) for _ in range(count)]
    await connect(subscribers, host, port)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while line := (await reader.readline()).decode().strip():
        command, _, marker = line.partition(" ")
        if command != "expect":
            break
        for sub in subscribers:
            sub.expect(marker.encode())
        print("armed", flush=True)
        await asyncio.wait_for(asyncio.gather(*(s.done.wait() for s in subscribers)), 30)
        print(json.dumps([s.arrived_at for s in subscribers]), flush=True)
    disconnect(subscribers)


class SubscriberHost:
    """The subscribers, in their own process: the announcing client must not share a loop (or a core's
    time slice) with 200 sockets, or it would measure its own subscribers instead of the server."""

    def __init__(self, channel: str, host: str, port: int, root: str, count: int):
        self.args = [sys.executable, __file__, "--host-subscribers", channel, host, str(port), root, str(count)]
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> SubscriberHost:
        self.process = await asyncio.create_subprocess_exec(
            *self.args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        if SERVER_CPUS:
            pin(self.process.pid, SERVER_CPUS)
        assert await self._line() == "ready"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.close()
        await self.process.wait()

    async def _line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        return (await asyncio.wait_for(self.process.stdout.readline(), 60)).decode().strip()

    async def arm(self, marker: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(f"expect {marker}\n".encode())
        await self.process.stdin.drain()
        assert await self._line() == "armed"

    async def arrivals(self) -> list[float]:
        return [float(t) for t in json.loads(await self._line())]


class Case:
    """One server, one channel, one subscriber count: S1 iterations with and without subscribers."""

    def __init__(self, http: httpx.AsyncClient, url: str, mqtt_port: int, root: str, channel: str, count: int):
        self.http = http
        self.host, port = url.removeprefix("http://").split(":")
        self.port = mqtt_port if channel == "mqtt" else int(port)
        self.root = root
        self.channel = channel
        self.count = count
        self.n = 0
        self.announce: dict[str, list[float]] = {"with": [], "without": []}
        self.delays: list[float] = []
        self.from_request: list[float] = []

    async def call(self, operation: str, /, **args: Any) -> dict[str, Any]:
        body = (await self.http.post(f"/api/v1/tools/{operation}", json=args)).json()
        if not body.get("ok"):
            raise SystemExit(f"{operation} failed: {body}")
        return dict(body["result"])

    async def iteration(self, subscribers: SubscriberHost | None, record: str | None) -> None:
        self.n += 1
        path, subject, done = f"src/f{self.n}.py", f"bench-{self.n}", f"bench-done-{self.n}"
        mine = await self.call("announce_work", agent_id="alice", subject="alice side", target_files=[path])
        if subscribers is not None:
            await subscribers.arm(f'"subject":"{subject}"')
        started = time.perf_counter()
        response = await self.http.post(
            "/api/v1/tools/announce_work", json={"agent_id": "bob", "subject": subject, "target_files": [path]}
        )
        answered = time.perf_counter()
        result = response.json()["result"]
        assert result["verdict"] == "consult", result
        arrivals = await subscribers.arrivals() if subscribers is not None else []
        if record is not None:
            self.announce[record].append(answered - started)
            # perf_counter is CLOCK_MONOTONIC: comparable across processes on one machine.
            self.delays.extend(a - answered for a in arrivals)
            self.from_request.extend(a - started for a in arrivals)
        if subscribers is not None:
            await subscribers.arm(done)
        await self.call("cancel_thread", thread_id=result["thread_id"], agent_id="bob", reason=done)
        await self.call("complete_work", agent_id="alice", intent_id=mine["intent_id"])
        if subscribers is not None:
            await subscribers.arrivals()

    async def run(self, iterations: int, block: int = 10) -> dict[str, Any]:
        """Alternates blocks without and with subscribers, so load changes on the machine hit both alike."""
        await self.call("register_agent", name="Alice", agent_id="alice")
        await self.call("register_agent", name="Bob", agent_id="bob")
        for _ in range(5):
            await self.iteration(None, None)
        for start in range(0, iterations, block):
            size = min(block, iterations - start)
            for _ in range(size):
                await self.iteration(None, "without")
            async with SubscriberHost(self.channel, self.host, self.port, self.root, self.count) as subscribers:
                await self.iteration(subscribers, None)  # warm the new connections
                for _ in range(size):
                    await self.iteration(subscribers, "with")
        with_p50 = summary_ms(self.announce["with"])["p50_ms"]
        without_p50 = summary_ms(self.announce["without"])["p50_ms"]
        return {
            "channel": self.channel,
            "subscribers": self.count,
            "iterations": iterations,
            "push_delay_after_response": summary_ms(self.delays),
            "push_delay_after_request": summary_ms(self.from_request),
            "announce_with_subscribers": summary_ms(self.announce["with"]),
            "announce_without_subscribers": summary_ms(self.announce["without"]),
            "announce_overhead_pct": round((with_p50 / without_p50 - 1) * 100, 1),
        }


SERVER_CPUS: set[int] = set()


def pin(pid: int, cpus: set[int]) -> None:
    """Pins every thread of a process (sched_setaffinity on a pid only covers its main thread)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


async def main(quick: bool, pinned: bool) -> dict[str, Any]:
    if pinned:
        # The announcing client gets a CPU of its own; server and subscribers share the rest. On a small
        # machine this keeps the subscribers' own CPU use out of the announce latency the client sees.
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit("--pin needs at least 2 CPUs")
        os.sched_setaffinity(0, {cpus[-1]})
        SERVER_CPUS.update(cpus[:-1])
    counts = [1, 50] if quick else [1, 50, 200]
    iterations = 20 if quick else 200
    results: list[dict[str, Any]] = []
    for channel in ("mqtt", "sse"):
        for count in counts:
            rounds = max(20, iterations // 4) if count >= 200 else iterations
            with huddle_server() as server:  # a fresh server per case: history does not carry over
                if SERVER_CPUS:
                    pin(server.process.pid, SERVER_CPUS)
                runtime = json.loads((server.data_dir / "server.json").read_text())
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                    case = Case(http, server.url, runtime["mqtt_port"], runtime["mqtt_topic_root"], channel, count)
                    results.append(await case.run(rounds))
    fifty = [r for r in results if r["subscribers"] == 50]
    targets = {
        f"{r['channel']}_50_p50<=3ms_p99<=10ms": r["push_delay_after_response"]["p50_ms"] <= 3
        and r["push_delay_after_response"]["p99_ms"] <= 10
        for r in fifty
    }
    targets.update({f"{r['channel']}_50_announce_overhead<=20%": r["announce_overhead_pct"] <= 20 for r in fifty})
    return {
        "benchmark": "push",
        "machine": {**machine(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "quick": quick,
        "pinned": pinned,
        "results": results,
        "targets_met": targets,
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--host-subscribers":
        channel, host, port, root, count = sys.argv[2:7]
        asyncio.run(host_subscribers(channel, host, int(port), root, int(count)))
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few iterations, for CI")
    parser.add_argument("--pin", action="store_true", help="give the announcing client a CPU of its own (Linux)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.quick, args.pin)), indent=2))
