"""A connection to an MQTT broker Huddle does not run in-process (Mosquitto, EMQX, a managed child…).

The connection lives in its own task and reconnects with capped, jittered exponential backoff; the
bridge publishes through it while it is up and catches up from the event log after it comes back.
Nothing here is on a request's path: a dead broker costs tool calls nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import aiomqtt

from huddle.background import Background
from huddle.errors import InvalidInput
from huddle.push.bridge import Message, SinkDown

log = logging.getLogger(__name__)
FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 2.0
PUBLISH_TIMEOUT_S = 5.0
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}


@dataclass(frozen=True)
class BrokerUrl:
    scheme: str
    host: str
    port: int
    path: str | None = None
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise InvalidInput(
                f"mqtt_url {url!r} must look like mqtt://host:1883 (or mqtts://, ws://, wss://)", field="mqtt_url"
            )
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise InvalidInput(f"mqtt_url {url!r} has an invalid port", field="mqtt_url") from None
        return cls(
            parts.scheme,
            parts.hostname,
            port,
            parts.path or None if parts.scheme.startswith("ws") else None,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
        )

    @property
    def display(self) -> str:
        """The URL without the password, for logs and status."""
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}{self.path or ''}"


class ExternalBroker:
    """A `Sink` publishing through an aiomqtt client that keeps itself connected."""

    acks = True

    def __init__(self, url: str, *, project: str, kind: str = "external"):
        self.kind = kind
        self.url = BrokerUrl.parse(url)
        self.client_id = f"huddle-{project[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
        self._client: aiomqtt.Client | None = None
        self._up = asyncio.Event()
        self._connection = Background("huddle-mqtt-connection")
        self.connects = 0
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def start(self) -> None:
        self._connection.start(self._maintain())

    async def stop(self) -> None:
        await self._connection.stop()

    def _new_client(self) -> aiomqtt.Client:
        u = self.url
        transport: Literal["tcp", "websockets"] = "websockets" if u.scheme.startswith("ws") else "tcp"
        tls = ssl.create_default_context() if u.scheme in ("mqtts", "wss") else None
        return aiomqtt.Client(
            u.host,
            u.port,
            username=u.username,
            password=u.password,
            identifier=self.client_id,
            clean_session=True,
            transport=transport,
            websocket_path=u.path,
            tls_context=tls,
            keepalive=30,
            timeout=PUBLISH_TIMEOUT_S,
            max_inflight_messages=1024,
            # paho leaves Nagle on: small PUBLISH packets would wait for the broker's ACKs.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)] if transport == "tcp" else None,
        )

    async def _maintain(self) -> None:
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                async with self._new_client() as client:
                    self._client = client
                    self._up.set()
                    self.connects += 1
                    backoff = FIRST_BACKOFF_S
                    if self.connects > 1 or self.last_error:
                        log.warning("MQTT broker %s is reachable again", self.url.display)
                    self.last_error = None
                    # Nothing is subscribed: iterating only waits for the connection to drop.
                    async for _ in client.messages:
                        pass
            except aiomqtt.MqttError as exc:
                if self.last_error is None:
                    log.warning("MQTT broker %s unreachable (%s); retrying in the background", self.url.display, exc)
                self.last_error = str(exc) or exc.__class__.__name__
            finally:
                self._client = None
                self._up.clear()
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def wait_connected(self) -> None:
        await self._up.wait()

    def wanted(self) -> None:
        return None  # who subscribes is the external broker's to know

    async def publish(self, messages: Sequence[Message]) -> None:
        client = self._client
        if client is None:
            raise SinkDown(f"MQTT broker {self.url.display} is not connected")
        try:
            # Started in order, so they leave on the wire in order; then wait for every PUBACK together.
            await asyncio.gather(*(client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain) for m in messages))
        except aiomqtt.MqttError as exc:
            raise SinkDown(str(exc)) from exc

    def info(self) -> dict[str, Any]:
        return {
            "url": self.url.display,
            "host": self.url.host,
            "port": self.url.port,
            "client_id": self.client_id,
            "connects": self.connects,
            "last_error": self.last_error,
        }
