"""In-process event fan-out: committed events reach every local subscriber.

SSE streams, MQTT bridges, MCP resource notifications and blocking waits (`wait_for_message`,
`wait_for_peers`) all subscribe here. Delivery never blocks the publisher: a subscriber whose
queue is full is marked `lagged` and must resync from the event log by cursor — push is a hint,
the log is the truth.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from huddle.domain.events import Event

log = logging.getLogger(__name__)
EventFilter = Callable[[Event], bool]
Listener = Callable[[Sequence[Event]], None]


class EventBus(Protocol):
    def publish(self, events: Sequence[Event]) -> None: ...

    def subscribe(self, accept: EventFilter | None = None, *, maxsize: int = 10_000) -> Subscription: ...

    def add_listener(self, listener: Listener) -> None: ...


class Subscription:
    """A queue of events for one consumer. Iterate it, or `await next_event(timeout)`."""

    def __init__(self, bus: MemoryBus, accept: EventFilter | None, maxsize: int):
        self._bus = bus
        self._accept = accept
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.lagged = False
        self.last_cursor = 0

    def offer(self, event: Event) -> None:
        if self._accept is not None and not self._accept(event):
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagged = True

    async def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event, or None when `timeout` passes first."""
        try:
            event = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        self.last_cursor = event.cursor
        return event

    def drain(self) -> list[Event]:
        out = []
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        if out:
            self.last_cursor = out[-1].cursor
        return out

    def close(self) -> None:
        self._bus._subscriptions.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        event = await self.next_event()
        assert event is not None
        return event


class MemoryBus:
    """The default bus: everything in one process, on the server's event loop."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Listener] = []

    def publish(self, events: Sequence[Event]) -> None:
        for listener in self._listeners:
            try:
                listener(events)
            except Exception:  # one broken channel must not starve the others of events
                log.exception("event listener %r failed", listener)
        for subscription in list(self._subscriptions):
            for event in events:
                subscription.offer(event)

    def subscribe(self, accept: EventFilter | None = None, *, maxsize: int = 10_000) -> Subscription:
        subscription = Subscription(self, accept, maxsize)
        self._subscriptions.add(subscription)
        return subscription

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)
