"""Helpers for the push tests: REST calls, real MQTT subscribers (aiomqtt, i.e. paho), SSE readers,
MCP resource notifications, the S1 scenario, and a Mosquitto broker the test owns (free port,
stoppable, restartable)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import anyio
import httpx
import mcp_types as types
from mcp import Client


def runtime(server: Any) -> dict[str, Any]:
    """The server's server.json (ports, MQTT URL, topic root)."""
    return dict(json.loads((server.data_dir / "server.json").read_text()))


async def tool(http: httpx.AsyncClient, operation: str, /, **args: Any) -> dict[str, Any]:
    """Calls an operation over REST and returns its result; an error fails the test with its message."""
    response = await http.post(f"/api/v1/tools/{operation}", json=args)
    body = response.json()
    assert body.get("ok"), f"{operation} failed: {body}"
    return dict(body["result"])


async def s1(http: httpx.AsyncClient, path: str = "src/app.py") -> str:
    """Scenario S1: two agents announce work on the same file → a consultation thread; returns its id."""
    await tool(http, "register_agent", name="Alice", agent_id="alice")
    await tool(http, "register_agent", name="Bob", agent_id="bob")
    await tool(http, "announce_work", agent_id="alice", subject="refactor app", target_files=[path])
    result = await tool(http, "announce_work", agent_id="bob", subject="fix app bug", target_files=[path])
    assert result["verdict"] == "consult", result
    return str(result["thread_id"])


@dataclass
class Received:
    topic: str
    payload: Any
    retain: bool
    qos: int


@dataclass
class Subscriber:
    """Messages a real MQTT client received, with a way to wait for one."""

    messages: list[Received] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, message: Received) -> None:
        self.messages.append(message)
        self._arrived.set()

    async def wait_for(self, match: Callable[[Received], bool], timeout: float = 10) -> Received:
        seen = 0
        with anyio.fail_after(timeout):
            while True:
                for message in self.messages[seen:]:
                    if match(message):
                        return message
                seen = len(self.messages)
                self._arrived.clear()
                await self._arrived.wait()

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]


@contextlib.asynccontextmanager
async def mqtt_subscriber(
    port: int,
    topic_filter: str,
    *,
    websocket_path: str | None = None,
    qos: int = 1,
    identifier: str | None = None,
    clean_session: bool = True,
    subscribe: bool = True,
) -> AsyncIterator[Subscriber]:
    """A real aiomqtt (paho) client over TCP, or over WebSocket when `websocket_path` is given."""
    client = aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=identifier,
        clean_session=clean_session,
        transport="websockets" if websocket_path else "tcp",
        websocket_path=websocket_path,
    )
    subscriber = Subscriber()
    async with client:
        if subscribe:
            await client.subscribe(topic_filter, qos=qos)

        async def read() -> None:
            async for message in client.messages:
                raw = bytes(message.payload) if isinstance(message.payload, bytes | bytearray) else message.payload
                try:
                    payload = json.loads(raw) if isinstance(raw, bytes) else raw
                except ValueError:
                    payload = raw
                subscriber.add(Received(str(message.topic), payload, bool(message.retain), int(message.qos)))

        task = asyncio.create_task(read())
        try:
            yield subscriber
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


@dataclass
class SseEvent:
    id: int
    data: dict[str, Any]


class SseReader:
    """Reads `/api/events` as a browser would, recording events and the `: live` switch markers."""

    def __init__(self, response: httpx.Response):
        self.response = response
        self.events: list[SseEvent] = []
        self.live_markers: list[int] = []
        self._lines = response.aiter_lines()

    async def next_frame(self) -> SseEvent | int:
        data: list[str] = []
        event_id: int | None = None
        async for line in self._lines:
            if line == "":
                if data and event_id is not None:
                    event = SseEvent(event_id, json.loads("\n".join(data)))
                    self.events.append(event)
                    return event
                data, event_id = [], None
            elif line.startswith(": live"):
                marker = int(line.split()[-1])
                self.live_markers.append(marker)
                return marker
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line.startswith("id:"):
                event_id = int(line[3:].strip())
        raise EOFError("the SSE stream ended")

    async def until_live(self, timeout: float = 10) -> list[SseEvent]:
        """Reads the replay up to the `: live` marker; returns the replayed events."""
        start = len(self.events)
        with anyio.fail_after(timeout):
            while not isinstance(await self.next_frame(), int):
                pass
        return self.events[start:]

    async def until(self, match: Callable[[SseEvent], bool], timeout: float = 10) -> SseEvent:
        with anyio.fail_after(timeout):
            while True:
                frame = await self.next_frame()
                if isinstance(frame, SseEvent) and match(frame):
                    return frame


@contextlib.asynccontextmanager
async def sse(http: httpx.AsyncClient, *, last_event_id: int | None = None, **params: str) -> AsyncIterator[SseReader]:
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    async with http.stream(
        "GET", "/api/events", params=params, headers=headers, timeout=httpx.Timeout(10, read=30)
    ) as response:
        assert response.status_code == 200, await response.aread()
        yield SseReader(response)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


class TestBroker:
    """A Mosquitto the test owns, on a free port, with persistence so sessions survive a restart."""

    __test__ = False

    def __init__(self, workdir: Path, port: int | None = None):
        self.port = port or free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "mosquitto.conf"
        # As root, Mosquitto would drop to its own user and could not write into the test's private tmp dir.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nlog_dest file {workdir}/mosquitto.log\n{user}"
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> TestBroker:
        binary = mosquitto_binary()
        assert binary is not None
        self.process = subprocess.Popen(
            [binary, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        with anyio.fail_after(10):
            while not accepts(self.port):
                assert self.process.poll() is None, (self.workdir / "mosquitto.log").read_text()
                await anyio.sleep(0.02)
        return self

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its sessions (and their queued QoS 1 messages) and exits."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


async def wait_until(check: Callable[[], Any], timeout: float = 10, interval: float = 0.02) -> Any:
    """Waits for a condition the test cannot subscribe to (e.g. a status flag), with a deadline."""
    deadline = time.monotonic() + timeout
    with anyio.fail_after(timeout + 1):
        while True:
            value = check()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            assert time.monotonic() < deadline
            await anyio.sleep(interval)


class Notifications:
    """A message_handler that records resources/updated notifications and lets a test wait for one."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._changed = anyio.Event()

    async def __call__(self, message: object) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.uris.append(str(message.params.uri))
            self._changed.set()

    async def wait_for(self, uri: str, count: int = 1, timeout: float = 10) -> None:
        with anyio.fail_after(timeout):
            while self.uris.count(uri) < count:
                self._changed = anyio.Event()
                await self._changed.wait()


async def subscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated as of 2026-07-28, and exactly what older clients send
        await client.subscribe_resource(uri)


async def read_json(client: Client, uri: str) -> dict[str, object]:
    result = await client.read_resource(uri)
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents) and content.mime_type == "application/json"
    return dict(json.loads(content.text))
