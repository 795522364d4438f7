"""The cost of MQTT ACLs on the embedded broker's fan-out: one event to N subscribers, per event.

Three brokers, each an EmbeddedBroker on a free port in this process: `bare` (amqtt with no topic
plugin, as before ACLs existed), `open` (open mode: the publish rule loaded, deliveries unchecked but
passing through the plugin) and `token` (every subscriber signed in with its own token; every
delivery asks TopicRules whether that agent may receive the topic). Subscribers are minimal MQTT
3.1.1 clients on raw sockets (QoS 1, PUBACK sent), all on `<root>/broadcast`. The number is the time
from handing K events to the broker until every subscriber holds all K, divided by K.

    python benchmarks/mqtt_acl.py            # 1, 50 and 200 subscribers, 200 events
    python benchmarks/mqtt_acl.py --quick    # CI: 1 and 20 subscribers, 20 events
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import machine
from _mqtt_wire import connect_and_subscribe, split_packets
from huddle.push.bridge import Message
from huddle.push.broker import EmbeddedBroker
from huddle.push.mqtt_access import MqttAccess
from huddle.service.credentials import Credentials
from huddle.settings import load_settings
from huddle.storage.sqlite import SqliteStore

ROOT = "huddle/bench"
SECRET = "b" * 40


class Subscriber(asyncio.Protocol):
    """Connects, subscribes at QoS 1, acknowledges and counts PUBLISH packets."""

    def __init__(self, client_id: str, username: str | None, password: str | None):
        self.client_id, self.username, self.password = client_id, username, password
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.received = 0
        self.wanted = 0
        self.ready = asyncio.Event()
        self.done = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            connect_and_subscribe(
                self.client_id, f"{ROOT}/broadcast", username=self.username or None, password=self.password
            )
        )

    def data_received(self, data: bytes) -> None:
        packets, self.buffer = split_packets(self.buffer + data)
        for header, body in packets:
            if header >> 4 == 9:
                self.ready.set()
            elif header >> 4 == 3:
                offset = 2 + int.from_bytes(body[:2], "big")
                if (header >> 1) & 3 and self.transport is not None:
                    self.transport.write(bytes([0x40, 2]) + body[offset : offset + 2])
                self.received += 1
                if self.received >= self.wanted:
                    self.done.set()


def _credentials(data_dir: Path) -> Credentials:
    settings = load_settings({"data_dir": str(data_dir), "auth": "token", "auth_secret": SECRET}, environ={})
    # Tokens are checked against the signing key and the in-memory revocation mirror: no database is read.
    return Credentials(SqliteStore(settings.sqlite_path, "bench"), settings)


async def run(kind: str, subscribers: int, events: int, data_dir: Path) -> dict[str, Any]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    credentials = _credentials(data_dir) if kind == "token" else None
    access = None if kind == "bare" else MqttAccess(ROOT, credentials)
    broker = EmbeddedBroker(sock, access)
    await broker.start()
    loop = asyncio.get_running_loop()
    subs: list[Subscriber] = []
    try:
        for i in range(subscribers):
            agent = f"agent-{i}"
            token = None
            if credentials is not None:
                token, _ = credentials.codec.issue(
                    agent, project="bench", org=credentials.org, scopes={"agent"}, ttl_s=3600
                )
            sub = Subscriber(f"{kind}-{i}", agent if token else None, token)
            await loop.create_connection(lambda sub=sub: sub, "127.0.0.1", broker.port)  # type: ignore[misc]
            await asyncio.wait_for(sub.ready.wait(), 10)
            subs.append(sub)
        for sub in subs:
            sub.wanted = events
        payload = json.dumps({"event": "message.sent", "content": "x" * 200}).encode()
        start = time.perf_counter()
        for n in range(events):
            await broker.publish([Message(f"{ROOT}/broadcast", payload + str(n).encode(), 1, False)])
        await asyncio.wait_for(asyncio.gather(*(sub.done.wait() for sub in subs)), 120)
        elapsed = time.perf_counter() - start
    finally:
        for sub in subs:
            if sub.transport is not None:
                sub.transport.close()
        await broker.stop()
        sock.close()
    return {"broker": kind, "subscribers": subscribers, "events": events, "ms_per_event": elapsed * 1000 / events}


async def main(quick: bool) -> None:
    sizes, events, rounds = ([1, 20], 20, 1) if quick else ([1, 50, 200], 200, 3)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for kind in ("bare", "open", "token"):
                runs = [await run(kind, size, events, Path(tmp)) for _ in range(rounds)]
                best = min(runs, key=lambda r: r["ms_per_event"])
                best["median_ms_per_event"] = statistics.median(r["ms_per_event"] for r in runs)
                results.append(best)
    report = {"benchmark": "mqtt_acl", "quick": quick, "machine": machine(), "rounds": rounds, "results": results}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few subscribers and events, for CI")
    asyncio.run(main(parser.parse_args().quick))
