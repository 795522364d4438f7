"""The push hub: builds the push channels from Settings and wires them to the bus, HTTP and MCP.

One object so the composition root stays short: `build_app` creates a `PushHub`, adds its routes
(`/api/events`, `/mqtt`), its operations (`mqtt_publish`) and its MCP resources, and starts/stops it
in the lifespan. The CLI calls `bind()` before the server runs, so a taken MQTT port is a clear
message and a non-zero exit rather than a failure inside the event loop.

Brokers (`mqtt_url` wins over `mqtt_broker`):
- embedded  — amqtt in this process; TCP on `host:mqtt_port`, WebSocket on `/mqtt`.
- mosquitto — a managed `mosquitto` child on 127.0.0.1:mqtt_port; `/mqtt` proxies to it.
- external  — `mqtt_url`; Huddle publishes to it and reconnects with backoff; `/mqtt` proxies to it.
              On a shared database (team mode) only the leader instance publishes coordination events.
- off       — no MQTT; SSE and MCP push still work.

Token mode (`auth=token`) needs the server's `Credentials` (`PushHub(settings, coordinator,
credentials=...)`): the embedded broker then admits a CONNECT only with a valid token and applies
the topic ACLs (acl.py, mqtt_access.py). A managed Mosquitto cannot check Huddle's tokens, so token
mode refuses it; an external broker is its operator's to secure (docs/security.md, "MQTT").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from typing import Any

from mcp.server.mcpserver import MCPServer
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from huddle.domain import validate
from huddle.errors import HuddleError, InvalidInput, Unavailable
from huddle.push.bridge import Message, MqttBridge, SinkDown
from huddle.push.broker import WS_PATH, EmbeddedBroker
from huddle.push.external import ExternalBroker
from huddle.push.mcp_push import McpPush
from huddle.push.mosquitto import ManagedMosquitto
from huddle.push.mqtt_access import MqttAccess
from huddle.push.ports import bind_tcp
from huddle.push.sse import EventStream
from huddle.push.topics import check_publish_topic, render_root
from huddle.service.coordinator import Coordinator
from huddle.service.credentials import REVOKED, SIGNED_OUT, Credentials
from huddle.settings import Settings
from huddle.transports.operation import Operation, Result
from huddle.urls import host_port

log = logging.getLogger(__name__)
MAX_RAW_PAYLOAD = 64 * 1024


class PushHub:
    def __init__(self, settings: Settings, coordinator: Coordinator, credentials: Credentials | None = None):
        self.settings = settings
        self.coordinator = coordinator
        self.credentials = credentials  # token mode: who may CONNECT to the embedded broker
        self.root = render_root(settings.topic_root, settings.project_key)
        self.mode = "external" if settings.mqtt_url else settings.mqtt_broker
        # Token mode: streams and subscriptions end with the token they were opened with.
        still_valid = credentials.still_valid if credentials is not None else None
        self.events = EventStream(coordinator.store, settings, still_valid)
        self.mcp_push = McpPush(coordinator.store, coordinator.threads, still_valid)
        self.embedded: EmbeddedBroker | None = None
        # A server of several projects runs one embedded broker, in its own project's hub: the other
        # projects' hubs are its guests (`share`), publishing under their own roots.
        self.host: PushHub | None = None
        self.guests: list[PushHub] = []
        self.external: ExternalBroker | None = None
        self.mosquitto: ManagedMosquitto | None = None
        self.bridge: MqttBridge | None = None
        self._sock: socket.socket | None = None
        self._bound = False
        self._started = False
        coordinator.bus.add_listener(self._offer)
        coordinator.status.live_sections["mqtt"] = self.mqtt_status
        coordinator.status.live_sections["push"] = self.push_status

    # -- setup -----------------------------------------------------------------------------------

    def bind(self) -> None:
        """Claims the MQTT port now (idempotent); raises HuddleError naming the port and the choices."""
        if self._bound:
            return
        if self.mode == "embedded":
            if self.settings.auth == "token" and self.credentials is None:
                # Fail closed: an embedded broker with no way to check tokens would be open to anyone.
                raise HuddleError("token mode needs the server's credentials for MQTT: PushHub(..., credentials=...)")
            self._sock = bind_tcp(self.settings.host, self.settings.mqtt_port)
        elif self.mode == "mosquitto":
            if self.settings.auth == "token":
                raise HuddleError(
                    "--mqtt-broker mosquitto cannot check Huddle's tokens, so it would let anyone read every"
                    " agent's inbox in token mode (auth=token). Use the embedded broker (--mqtt-broker"
                    " embedded), which checks them, or run a broker you secure yourself and point"
                    " --mqtt-url at it (docs/security.md, MQTT)"
                )
            self.mosquitto = ManagedMosquitto(self.settings.data_path, self.settings.mqtt_port)
            self.mosquitto.prepare()
        elif self.mode == "external":
            self.external = ExternalBroker(self.settings.mqtt_url, project=self.settings.project_key)
        self._bound = True

    def share(self, host: PushHub) -> None:
        """Publish into `host`'s embedded broker, under this project's root, with its ACLs (token mode)."""
        if host.mode != "embedded":
            return  # the server's own project has no embedded broker: this project has no MQTT either
        self.host = host
        self.mode = "shared"
        host.guests.append(self)

    def attach_mcp(self, mcp: MCPServer, *, sessions: bool = True) -> None:
        """`sessions=False`: MCP runs stateless (mcp_stateless=on), so nothing can be sent after a request."""
        self.mcp_push.attach(mcp, sessions=sessions)

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/events", self.events.endpoint, methods=["GET"]), WebSocketRoute(WS_PATH, self._websocket)]

    def operations(self) -> list[Operation]:
        hub = self

        async def mqtt_publish(
            topic: str, payload: Any = None, agent_id: str | None = None, retain: bool = False
        ) -> Result:
            """Publish a raw JSON message on MQTT under Huddle's topic root, e.g. <root>/broadcast (the
            root is in coordinator_status.mqtt.topic_root). agent_id, when given, is added to an object
            payload so the sender's own listeners can skip it. Huddle's own subtrees (consultations,
            agents, locks, tasks, quota) are refused."""
            return await hub.publish_raw(topic, payload, agent_id, retain)

        return [Operation("mqtt_publish", "push", mqtt_publish)]

    def runtime_info(self) -> dict[str, Any]:
        """What server.json says about MQTT, so clients and tests find the actual port."""
        info: dict[str, Any] = {"mqtt_broker": self.mode, "mqtt_topic_root": self.root}
        if self.mode == "embedded" and self._sock is not None:
            port = self._sock.getsockname()[1]
            info.update(mqtt_port=port, mqtt_url=f"mqtt://{host_port(self.settings.host, port)}", mqtt_ws_path=WS_PATH)
        elif self.mode == "mosquitto" and self.mosquitto is not None:
            info.update(mqtt_port=self.mosquitto.port, mqtt_url=self.mosquitto.url, mqtt_ws_path=WS_PATH)
        elif self.mode == "external" and self.external is not None:
            info.update(
                mqtt_port=self.external.url.port,
                mqtt_url=self.external.url.display,
                mqtt_ws_path=WS_PATH if self.external.url.scheme == "mqtt" else None,
            )
        return info

    def describe(self) -> str:
        """One line for the start banner: where MQTT subscribers connect."""
        info = self.runtime_info()
        if self.mode == "off":
            return "MQTT off (mqtt_broker=off); SSE at /api/events"
        where = {
            "embedded": "embedded broker",
            "mosquitto": "managed mosquitto",
            "external": "external broker",
            "shared": "the server's embedded broker",
        }
        ws = f" and ws://…{WS_PATH} on the HTTP port" if info.get("mqtt_ws_path") else ""
        return f"MQTT: {where[self.mode]} at {info.get('mqtt_url')}{ws}, topics under {self.root}/; SSE at /api/events"

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self.bind()
        await self.events.start()
        await self.mcp_push.start()
        if self.mode == "embedded" and self._sock is not None:
            self.embedded = EmbeddedBroker(self._sock, self._access())
            self.bridge = MqttBridge(self.embedded, self.coordinator.store, self.root)
        elif self.mode == "shared" and self.host is not None and self.host.embedded is not None:
            self.embedded = self.host.embedded  # started by the host, before this project's app
            self.bridge = MqttBridge(self.embedded, self.coordinator.store, self.root, owns_sink=False)
        elif self.mode == "mosquitto" and self.mosquitto is not None:
            await self.mosquitto.start()
            self.external = ExternalBroker(self.mosquitto.url, project=self.settings.project_key, kind="mosquitto")
            self.bridge = MqttBridge(self.external, self.coordinator.store, self.root)
        elif self.mode == "external" and self.external is not None:
            if self.settings.auth == "token":
                log.warning(
                    "token mode: Huddle does not check who connects to the external MQTT broker %s;"
                    " secure it with its own users and ACLs (docs/security.md, MQTT)",
                    self.external.url.display,
                )
            # Instances sharing a database share the external broker too: only the leader publishes,
            # or every subscriber would receive each event once per instance (bridge.py).
            ctx = self.coordinator.ctx
            publishes = (lambda: ctx.leader) if self.coordinator.store.shared else None
            self.bridge = MqttBridge(self.external, self.coordinator.store, self.root, publishes=publishes)
        if self.bridge is not None:
            await self.bridge.start()
        self._started = True

    def _access(self) -> MqttAccess:
        access = MqttAccess(self.root, self.credentials if self.settings.auth == "token" else None)
        for guest in self.guests:
            if guest.credentials is not None:
                access.serve(guest.root, guest.credentials)
        return access

    async def stop(self) -> None:
        self._started = False
        await self.events.stop()
        if self.bridge is not None:
            await self.bridge.stop()
        if self.mosquitto is not None:
            await self.mosquitto.stop()
        await self.mcp_push.stop()

    def _offer(self, events: Any) -> None:
        self.events.offer(events)
        if not self._started:
            return
        if any(e.kind in (REVOKED, SIGNED_OUT) for e in events):
            # After this commit's other listeners (the credentials' mirror among them) have run.
            if self.embedded is not None:
                asyncio.get_running_loop().call_soon(self.embedded.recheck)
            asyncio.get_running_loop().call_soon(self.mcp_push.recheck)
        if self.bridge is not None:
            self.bridge.offer(events)
        self.mcp_push.offer(events)

    # -- MQTT over WebSocket on the HTTP port ---------------------------------------------------------

    async def _websocket(self, websocket: WebSocket) -> None:
        if self.embedded is not None:
            await self.embedded.serve_websocket(websocket)
        elif self.external is not None and self.external.url.scheme == "mqtt":
            await _proxy(websocket, self.external.url.host, self.external.url.port)
        else:
            await websocket.close(code=1011, reason="MQTT over WebSocket is not available (mqtt_broker off)")

    # -- raw publishing (mqtt_publish) --------------------------------------------------------------

    async def publish_raw(self, topic: str, payload: Any, agent_id: str | None, retain: bool) -> Result:
        sink = self.embedded or self.external
        if sink is None:
            raise Unavailable("MQTT is off on this server (mqtt_broker=off); use send_message to reach agents")
        reason = check_publish_topic(topic, self.root)
        if reason is not None:
            raise InvalidInput(reason, field="topic")
        if agent_id is not None:
            agent_id = validate.identifier(agent_id, "agent_id")
        if agent_id is not None and isinstance(payload, dict) and "agent_id" not in payload:
            payload = {**payload, "agent_id": agent_id}
        data = json.dumps(payload, separators=(",", ":"), default=str).encode()
        if len(data) > MAX_RAW_PAYLOAD:
            raise InvalidInput(
                f"payload is {len(data)} bytes; MQTT broadcasts are capped at {MAX_RAW_PAYLOAD}"
                " bytes — share a summary, or share_context for longer text",
                field="payload",
            )
        try:
            await sink.publish([Message(topic, data, 0, retain)])
        except SinkDown:
            raise Unavailable(
                f"the MQTT broker ({self.mode}) is not reachable right now; nothing was published."
                " Retry later — coordination events are not affected"
            ) from None
        return {"published": True, "topic": topic, "bytes": len(data), "retain": retain}

    # -- status --------------------------------------------------------------------------------------

    def mqtt_status(self) -> dict[str, Any]:
        sink = self.embedded or self.external
        out: dict[str, Any] = {
            "enabled": self.mode != "off",
            "broker": self.mode,
            "topic_root": self.root,
            "connected": bool(sink is not None and sink.connected),
        }
        out.update({k: v for k, v in self.runtime_info().items() if k.startswith("mqtt_") and k != "mqtt_broker"})
        if sink is not None and self.mode != "shared":  # a shared broker's counts are every project's
            out.update(sink.info())
        if self.mosquitto is not None:
            out["child_pid"] = self.mosquitto.pid
            out["child_running"] = self.mosquitto.running
        if self.bridge is not None:
            out["published"] = self.bridge.info()
        return out

    def readiness(self) -> dict[str, Any]:
        """For /readyz: is the broker there? (`ok` stays true with MQTT off; push is a hint either way.)"""
        sink = self.embedded or self.external
        connected = bool(sink is not None and sink.connected)
        out: dict[str, Any] = {"ok": self.mode == "off" or connected, "broker": self.mode, "connected": connected}
        if self.external is not None and self.external.last_error:
            out["error"] = self.external.last_error
        return out

    def push_status(self) -> dict[str, Any]:
        return {
            "sse_streams": self.events.open_streams,
            "sse_events_sent": self.events.sent,
            "sse_resyncs": self.events.resyncs,
            "mcp": self.mcp_push.info(),
        }


async def _proxy(websocket: WebSocket, host: str, port: int) -> None:
    """`/mqtt` for a broker Huddle does not embed: WebSocket frames ↔ the broker's TCP port."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        await websocket.close(code=1013, reason="the MQTT broker is not reachable")
        return
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="mqtt" if "mqtt" in offered else None)

    async def upstream() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            writer.write(message.get("bytes") or (message.get("text") or "").encode())
            await writer.drain()

    async def downstream() -> None:
        while chunk := await reader.read(65536):
            await websocket.send_bytes(chunk)

    tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await websocket.close()
