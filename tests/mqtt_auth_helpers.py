"""A real Huddle app served by uvicorn in this process (ephemeral HTTP and MQTT ports) in open or
token mode, with the Credentials the test holds (a ManualClock for expiry), and MQTT clients that
report their CONNACK, SUBACK and what they were delivered.

In-process so that the broker can be handed Credentials on a ManualClock (expiry without waiting),
in place of the app's own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import anyio
import httpx
import uvicorn

from _mqtt_wire import string, varint
from helpers import ManualClock
from huddle.app import Huddle, build_app
from huddle.service.credentials import Credentials
from huddle.settings import Settings, load_settings
from push_helpers import wait_until

SECRET = "s" * 40
OTHER_SECRET = "o" * 40
ACCEPTED = "Success"
NOT_AUTHORIZED = "Not authorized"
BAD_CREDENTIALS = "Bad user name or password"
ID_REJECTED = "Client identifier not valid"
REFUSED_FILTER = 0x80


@dataclass
class Served:
    app: Huddle
    settings: Settings
    clock: ManualClock
    credentials: Credentials | None
    http_port: int
    mqtt_port: int

    @property
    def root(self) -> str:
        return self.app.push.root

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def token(self, agent_id: str, *scopes: str, ttl_s: float | None = None) -> str:
        assert self.credentials is not None
        issued = await self.credentials.issue(agent_id, scopes or ("agent",), ttl_s=ttl_s, with_refresh=False)
        return str(issued["access_token"])

    def port(self, transport: str) -> int:
        return self.http_port if transport == "ws" else self.mqtt_port


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, repo: Path, *, auth: str = "token", **overrides: Any) -> AsyncIterator[Served]:
    settings = load_settings(
        {
            "data_dir": str(tmp_path / "data"),
            "repo": str(repo),
            "mqtt_port": 0,
            "auth": auth,
            "auth_secret": SECRET,
            **overrides,
        },
        environ={},
    )
    app = build_app(settings)
    clock = ManualClock()
    credentials = None
    if auth == "token":
        credentials = Credentials(app.coordinator.store, settings, clock=clock)
        app.coordinator.bus.add_listener(credentials.apply)
        app.push.credentials = credentials
    server = uvicorn.Server(uvicorn.Config(app.http, host="127.0.0.1", port=0, lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done())
        assert server.started, "the server did not start"
        http_port = server.servers[0].sockets[0].getsockname()[1]
        if credentials is not None:
            await credentials.load()
        yield Served(app, settings, clock, credentials, http_port, int(app.push.runtime_info()["mqtt_port"]))
    finally:
        server.should_exit = True
        with anyio.fail_after(20):
            await task


def other_credentials(served: Served, clock: Any = None, **changes: Any) -> Credentials:
    """Credentials of the same store with other settings (another key, org…) or another clock."""
    settings = dataclasses.replace(served.settings, **changes)
    return Credentials(served.app.coordinator.store, settings, clock=clock or served.clock)


def alg_none(token: str) -> str:
    """The same claims, unsigned, with `alg: none`."""
    payload = token.split(".")[1]

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."


def client(
    served: Served,
    transport: str = "tcp",
    *,
    username: str | None = None,
    password: str | None = None,
    identifier: str | None = None,
    clean_session: bool = True,
    will: tuple[str, bytes] | None = None,
) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        served.port(transport),
        username=username,
        password=password,
        identifier=identifier,
        clean_session=clean_session,
        transport="websockets" if transport == "ws" else "tcp",
        websocket_path="/mqtt" if transport == "ws" else None,
        will=aiomqtt.Will(will[0], will[1]) if will else None,
        timeout=10,
    )


async def connack(served: Served, transport: str = "tcp", **kwargs: Any) -> str:
    """The broker's answer to a CONNECT: "Success", or paho's name for the refusal code."""
    try:
        async with client(served, transport, **kwargs):
            return ACCEPTED
    except aiomqtt.MqttCodeError as refused:
        return str(refused.rc)


@dataclass
class Listener:
    """An MQTT client that records what it is delivered and what its subscriptions were granted."""

    client: aiomqtt.Client
    granted: dict[str, int] = field(default_factory=dict)
    messages: list[tuple[str, Any]] = field(default_factory=list)
    closed: bool = False
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def subscribe(self, *filters: str) -> dict[str, int]:
        for topic_filter in filters:
            codes = await self.client.subscribe(topic_filter, qos=1)
            self.granted[topic_filter] = int(codes[0].value if hasattr(codes[0], "value") else codes[0])
        return {f: self.granted[f] for f in filters}

    def topics(self) -> list[str]:
        return [topic for topic, _ in self.messages]

    async def wait_for(self, topic: str, timeout: float = 10, count: int = 1) -> Any:
        """The payload of the `count`-th message on `topic`."""
        with anyio.fail_after(timeout):
            while True:
                on_topic = [payload for seen, payload in self.messages if seen == topic]
                if len(on_topic) >= count:
                    return on_topic[count - 1]
                if self.closed:
                    raise AssertionError(f"the connection closed before {topic} arrived; got {self.topics()}")
                self._arrived.clear()
                await self._arrived.wait()

    async def wait_closed(self, timeout: float = 10) -> None:
        with anyio.fail_after(timeout):
            while not self.closed:
                self._arrived.clear()
                await self._arrived.wait()

    async def _read(self) -> None:
        try:
            async for message in self.client.messages:
                raw = bytes(message.payload) if isinstance(message.payload, bytes | bytearray) else message.payload
                with contextlib.suppress(ValueError, TypeError):
                    raw = json.loads(raw)
                self.messages.append((str(message.topic), raw))
                self._arrived.set()
        except aiomqtt.MqttError:
            pass
        self.closed = True
        self._arrived.set()


@contextlib.asynccontextmanager
async def listener(served: Served, transport: str = "tcp", **kwargs: Any) -> AsyncIterator[Listener]:
    mqtt = client(served, transport, **kwargs)
    async with mqtt:
        heard = Listener(mqtt)
        task = asyncio.create_task(heard._read())
        try:
            yield heard
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def tool(served: Served, operation: str, /, **args: Any) -> dict[str, Any]:
    """Calls a tool over REST: in token mode as an admin, who may act for the agent it names."""
    headers = {"Authorization": f"Bearer {await served.token('ops', 'admin')}"} if served.credentials else {}
    async with httpx.AsyncClient(base_url=served.url, headers=headers) as http:
        response = await http.post(f"/api/v1/tools/{operation}", json=args)
    body = response.json()
    assert body.get("ok"), f"{operation} failed: {body}"
    return dict(body["result"])


async def raw_connack(port: int, username: str | None = None, password: str | None = None) -> int:
    """Sends an MQTT 3.1.1 CONNECT byte by byte and returns the CONNACK's return code as sent."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = string("MQTT") + bytes([4, flags]) + struct.pack("!H", 30) + string("raw-client")
    body += (string(username) if username is not None else b"") + (string(password) if password is not None else b"")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(bytes([0x10]) + varint(len(body)) + body)
        await writer.drain()
        with anyio.fail_after(10):
            connack = await reader.readexactly(4)
    finally:
        writer.close()
    assert connack[:3] == b"\x20\x02\x00", connack
    return connack[3]


async def register(served: Served, *agent_ids: str) -> None:
    for agent_id in agent_ids:
        await tool(served, "register_agent", name=agent_id.title(), agent_id=agent_id)
