"""The in-memory bus: committed events reach every subscriber, whatever a listener does."""

from __future__ import annotations

from collections.abc import Sequence

from huddle.bus.memory import MemoryBus
from huddle.domain.events import Event


def event(cursor: int) -> Event:
    return Event(cursor, 0.0, "p", "test.event", None, ("*",))


async def test_a_failing_listener_does_not_stop_delivery_to_subscribers() -> None:
    bus = MemoryBus()

    def broken(events: Sequence[Event]) -> None:
        raise RuntimeError("channel down")

    bus.add_listener(broken)
    with bus.subscribe() as subscription:
        bus.publish([event(1)])
        received = await subscription.next_event(timeout=1)
    assert received is not None and received.cursor == 1


async def test_a_full_subscriber_is_marked_lagged_instead_of_blocking_the_publisher() -> None:
    bus = MemoryBus()
    with bus.subscribe(maxsize=2) as subscription:
        bus.publish([event(1), event(2), event(3)])
        assert subscription.lagged is True
        assert [e.cursor for e in subscription.drain()] == [1, 2]


async def test_a_filtered_subscription_sees_only_what_it_accepts() -> None:
    bus = MemoryBus()
    with bus.subscribe(lambda e: e.cursor % 2 == 0) as evens:
        bus.publish([event(1), event(2), event(3), event(4)])
        assert [e.cursor for e in evens.drain()] == [2, 4]
