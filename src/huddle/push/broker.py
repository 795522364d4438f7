"""The embedded MQTT broker: amqtt running inside the server's event loop.

Huddle owns both listeners. TCP connections come from a socket bound before the server starts (so a
taken port is a clear message), WebSocket connections from `/mqtt` on the HTTP port; both are handed
to amqtt as "external" listeners. Huddle's own events skip the network entirely: the bridge hands
them to the broker's fan-out in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Sequence
from typing import Any

from amqtt.adapters import ReaderAdapter, StreamReaderAdapter, StreamWriterAdapter, WriterAdapter
from starlette.websockets import WebSocket, WebSocketDisconnect

from huddle.push.amqtt_fixes import Payload, RoutedBroker
from huddle.push.bridge import Message

log = logging.getLogger(__name__)
TCP_LISTENER = "default"
WS_LISTENER = "ws"
WS_PATH = "/mqtt"


def _quiet_amqtt() -> None:
    # amqtt logs every connection at INFO and `transitions` every state change; keep the server log useful.
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.WARNING)


class StarletteWsReader(ReaderAdapter):  # type: ignore[misc]  # amqtt ships no types
    """Bytes from MQTT-over-WebSocket frames, for amqtt's packet reader."""

    def __init__(self, websocket: WebSocket):
        self._ws = websocket
        self._buffer = bytearray()
        self._closed = False

    async def read(self, n: int = -1) -> bytes:
        want = max(n, 1)
        while len(self._buffer) < want and not self._closed:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                self._closed = True
                break
            chunk = message.get("bytes")
            if chunk is None:
                chunk = (message.get("text") or "").encode()
            self._buffer += chunk
        if n < 0:
            n = len(self._buffer)
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def feed_eof(self) -> None:
        self._closed = True


class StarletteWsWriter(WriterAdapter):  # type: ignore[misc]
    def __init__(self, websocket: WebSocket):
        self._ws = websocket
        self._buffer = bytearray()
        self._closed = False

    def write(self, data: bytes) -> None:
        self._buffer += data

    async def drain(self) -> None:
        if not self._buffer or self._closed:
            return
        data = bytes(self._buffer)
        self._buffer.clear()
        try:
            await self._ws.send_bytes(data)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._closed = True

    def get_peer_info(self) -> tuple[str, int] | None:
        client = self._ws.client
        return (client.host, client.port) if client else ("websocket", 0)

    def get_ssl_info(self) -> ssl.SSLObject | None:
        return None

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self._ws.close()


class EmbeddedBroker:
    """amqtt with Huddle's own TCP socket and the `/mqtt` WebSocket; a `Sink` for the bridge."""

    kind = "embedded"
    acks = False

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self.host, self.port = sock.getsockname()[:2]
        self._broker: RoutedBroker | None = None
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    @property
    def connected(self) -> bool:
        return self._broker is not None

    async def start(self) -> None:
        _quiet_amqtt()
        config = {
            "listeners": {
                TCP_LISTENER: {"type": "external", "bind": f"{self.host}:{self.port}"},
                WS_LISTENER: {"type": "external", "bind": f"{self.host}:{self.port}"},
            },
            # Anonymous on loopback, as in open mode everywhere else (token mode will plug in here).
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = RoutedBroker(config)
        await broker.start()
        self._broker = broker
        self._server = await asyncio.start_server(self._on_tcp, sock=self._sock)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._broker is not None:
            broker, self._broker = self._broker, None
            with contextlib.suppress(Exception):
                await broker.shutdown()
        for task in list(self._clients):
            task.cancel()

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        broker = self._broker
        if broker is None:
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            await broker.external_connected(StreamReaderAdapter(reader), StreamWriterAdapter(writer), TCP_LISTENER)
        except Exception:  # one client's protocol error must not reach the server's log as a crash
            log.debug("MQTT client connection ended with an error", exc_info=True)
        finally:
            if task is not None:
                self._clients.discard(task)

    async def serve_websocket(self, websocket: WebSocket) -> None:
        """`/mqtt`: MQTT over WebSocket on the HTTP port (subprotocol `mqtt`)."""
        broker = self._broker
        if broker is None:
            await websocket.close(code=1013)
            return
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol="mqtt" if "mqtt" in offered else None)
        try:
            await broker.external_connected(StarletteWsReader(websocket), StarletteWsWriter(websocket), WS_LISTENER)
        except Exception:
            log.debug("MQTT WebSocket connection ended with an error", exc_info=True)

    async def wait_connected(self) -> None:
        return None

    async def publish(self, messages: Sequence[Message]) -> None:
        broker = self._broker
        if broker is None:
            return
        wanted = broker.subscribed()
        payloads: dict[int, Payload] = {}  # one event's messages share one payload: wrap it once
        for m in messages:
            if wanted(m.topic):
                payload = payloads.get(id(m.payload))
                if payload is None:
                    payload = payloads[id(m.payload)] = Payload(m.payload)
                # QoS 1 messages go out at the QoS each subscriber asked for; QoS 0 stays 0.
                await broker.internal_message_broadcast(m.topic, payload, None if m.qos else 0)
            if m.retain:
                await broker.retain_message(None, m.topic, m.payload, m.qos)

    async def publish_raw(self, message: Message) -> None:
        await self.publish([message])

    def info(self) -> dict[str, Any]:
        broker = self._broker
        sessions = broker.sessions.values() if broker is not None else []
        clients = sum(1 for session, _ in sessions if session.transitions.state == "connected")
        return {
            "host": self.host,
            "port": self.port,
            "ws_path": WS_PATH,
            "clients": clients,
            "retained": len(broker.retained_messages) if broker is not None else 0,
        }
