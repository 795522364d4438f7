"""The embedded broker sends a retained message only for a filter the receiver holds (issue 7, defect 10).

Real aiomqtt clients against Huddle's EmbeddedBroker (amqtt plus push/amqtt_fixes.py).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiomqtt
import anyio
import pytest

from huddle.push.broker import EmbeddedBroker

RETAINED = {
    "x/agents/alice/status": b"online",
    "x/consultations/T-1": b"open",
    "x/locks/src/app.py": b"held",
}


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    embedded = EmbeddedBroker(sock)
    await embedded.start()
    try:
        yield embedded
    finally:
        await embedded.stop()


def client(broker: EmbeddedBroker, name: str) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", port=broker.port, identifier=name)


async def received_until_marker(subscriber: aiomqtt.Client, marker: str) -> list[tuple[str, bytes, bool]]:
    got: list[tuple[str, bytes, bool]] = []
    with anyio.fail_after(10):
        async for message in subscriber.messages:
            if message.topic.value == marker:
                return got
            got.append((message.topic.value, bytes(message.payload), message.retain))  # type: ignore[arg-type]
    return got


async def test_a_new_subscriber_gets_only_the_retained_messages_its_filter_matches_once(
    broker: EmbeddedBroker,
) -> None:
    async with client(broker, "publisher") as publisher, client(broker, "watch-all") as everything:
        for topic, payload in RETAINED.items():
            await publisher.publish(topic, payload, qos=1, retain=True)
        await everything.subscribe("x/#")
        async with client(broker, "status-only") as status:
            await status.subscribe("x/agents/+/status")
            await status.subscribe("x/marker")  # handled after the first: its retained replay is done by then
            await publisher.publish("x/marker", b"end", qos=1)
            got = await received_until_marker(status, "x/marker")
    assert got == [("x/agents/alice/status", b"online", True)]


async def test_a_resumed_persistent_session_still_gets_its_own_filters_retained(broker: EmbeddedBroker) -> None:
    async with client(broker, "publisher") as publisher:
        for topic, payload in RETAINED.items():
            await publisher.publish(topic, payload, qos=1, retain=True)
        first = aiomqtt.Client("127.0.0.1", port=broker.port, identifier="persistent", clean_session=False)
        async with first:
            await first.subscribe("x/locks/#", qos=1)
        async with client(broker, "other") as other:
            await other.subscribe("x/#")
            again = aiomqtt.Client("127.0.0.1", port=broker.port, identifier="persistent", clean_session=False)
            async with again:
                await again.subscribe("x/marker")
                await publisher.publish("x/marker", b"end", qos=1)
                got = await received_until_marker(again, "x/marker")
    assert {topic for topic, _, _ in got} == {"x/locks/src/app.py"}
