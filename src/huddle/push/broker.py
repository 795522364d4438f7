"""The embedded MQTT broker: amqtt running inside the server's event loop.

Huddle owns both listeners. TCP connections come from a socket bound before the server starts (so a
taken port is a clear message), WebSocket connections from `/mqtt` on the HTTP port; both are handed
to amqtt as "external" listeners. Huddle's own events skip the network entirely: the bridge hands
them to the broker's fan-out in-process.

With an `MqttAccess` (push/mqtt_access.py) each listener reads a client's CONNECT itself and refuses
it before amqtt sees it: amqtt looks the client id up in its session table — deleting a clean
session's predecessor, taking over a connected one — and keeps a refused session in that table,
all before its auth plugins answer. So a client without a valid token never touches another
client's session. Accepted CONNECTs are replayed to amqtt byte for byte, whose plugins then check
the same packet and every topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any

from amqtt.adapters import ReaderAdapter, StreamReaderAdapter, StreamWriterAdapter, WriterAdapter
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import ConnackPacket
from amqtt.mqtt.connect import ConnectPacket
from amqtt.mqtt.packet import CONNECT
from starlette.websockets import WebSocket, WebSocketDisconnect

from huddle.push.amqtt_fixes import Payload, RoutedBroker
from huddle.push.bridge import Message
from huddle.push.mqtt_access import GRANT, HuddleAuthPlugin, HuddleTopicPlugin, MqttAccess, Refused

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


class ReplayReader(ReaderAdapter):  # type: ignore[misc]
    """Records what is read until `rewind`, then hands those bytes out again before reading on."""

    def __init__(self, inner: ReaderAdapter):
        self._inner = inner
        self._recorded: bytearray | None = bytearray()
        self._replay = bytearray()

    def rewind(self) -> None:
        self._replay, self._recorded = self._recorded or bytearray(), None

    async def read(self, n: int = -1) -> bytes:
        if not self._replay:
            data = bytes(await self._inner.read(n))
            if self._recorded is not None:
                self._recorded += data
            return data
        if 0 <= n < len(self._replay):
            head = bytes(self._replay[:n])
            del self._replay[:n]
            return head
        head, self._replay = bytes(self._replay), bytearray()
        if n < 0 or n == len(head):
            return head
        return head + bytes(await self._inner.read(n - len(head)))

    def feed_eof(self) -> None:
        self._inner.feed_eof()


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

    def __init__(self, sock: socket.socket, access: MqttAccess | None = None):
        self._sock = sock
        self.host, self.port = sock.getsockname()[:2]
        self.access = access
        self.refused = 0  # CONNECTs refused by `access` since start
        self._broker: RoutedBroker | None = None
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()
        self._drops: set[asyncio.Task[None]] = set()
        if access is not None:
            access.on_lapse = self.drop

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
            "plugins": self._plugins(),
        }
        broker = RoutedBroker(config)
        await broker.start()
        self._broker = broker
        self._server = await asyncio.start_server(self._on_tcp, sock=self._sock)

    def _plugins(self) -> dict[str, dict[str, Any]]:
        if self.access is None:  # a bare broker (tests, interop): anonymous, no ACL
            return {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        return {_path(HuddleAuthPlugin): {"access": self.access}, _path(HuddleTopicPlugin): {"access": self.access}}

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
            admitted = await self._admit(StreamReaderAdapter(reader), out := StreamWriterAdapter(writer))
            if admitted is not None:
                await broker.external_connected(admitted, out, TCP_LISTENER)
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
            admitted = await self._admit(StarletteWsReader(websocket), out := StarletteWsWriter(websocket))
            if admitted is not None:
                await broker.external_connected(admitted, out, WS_LISTENER)
        except Exception:
            log.debug("MQTT WebSocket connection ended with an error", exc_info=True)

    async def _admit(self, reader: ReaderAdapter, writer: WriterAdapter) -> ReaderAdapter | None:
        """The reader to hand amqtt, or None when `access` refused the CONNECT (answered and closed here)."""
        if self.access is None:
            return reader
        replay = ReplayReader(reader)
        try:
            connect = await ConnectPacket.from_stream(replay)
        except (AMQTTError, MQTTError, NoDataError, ValueError, UnicodeDecodeError):
            connect = None
        replay.rewind()
        if connect is None or connect.fixed_header.packet_type != CONNECT or connect.proto_level != 4:
            return replay  # not an MQTT 3.1.1 CONNECT: amqtt answers it as before, before any session exists
        try:
            will = connect.will_topic if connect.will_flag else None
            self.access.admit(
                connect.username, connect.password, will, self.access.owner(self._session(connect.client_id))
            )
        except Refused as refused:
            self.refused += 1
            host, port = writer.get_peer_info() or ("?", 0)
            log.warning("MQTT CONNECT from %s:%s refused (CONNACK %d): %s", host, port, refused.code, refused.reason)
            with contextlib.suppress(Exception):
                await ConnackPacket.build(0, refused.code).to_stream(writer)
                await writer.close()
            return None
        return replay

    def _session(self, client_id: str | None) -> Any:
        broker = self._broker
        if broker is None or not client_id:
            return None
        return broker.sessions.get(client_id, (None, None))[0]

    def drop(self, client_id: str) -> None:
        """Closes a client's connection (its token lapsed); its will is not sent."""
        entry = self._broker.sessions.get(client_id) if self._broker is not None else None
        if entry is None or entry[1].writer is None:
            return
        session, handler = entry
        session.will_flag = False
        log.info("MQTT client %s disconnected: its token expired or was revoked", client_id)
        task = asyncio.get_running_loop().create_task(handler.writer.close())
        self._drops.add(task)
        task.add_done_callback(self._drops.discard)

    def recheck(self) -> None:
        """After a revocation or a sign-out everywhere: drops every client whose token no longer holds."""
        if self.access is None or self._broker is None:
            return
        for client_id, (session, _) in list(self._broker.sessions.items()):
            grant = getattr(session, GRANT, None)
            if grant is not None and not grant.dropped and not self.access.recheck(grant):
                grant.dropped = True
                self.drop(client_id)

    async def wait_connected(self) -> None:
        return None

    def wanted(self) -> Callable[[str], bool] | None:
        broker = self._broker
        return broker.subscribed() if broker is not None else None

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
            "auth": "token" if self.access is not None and self.access.token_mode else "open",
            "refused_connects": self.refused,
        }


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
