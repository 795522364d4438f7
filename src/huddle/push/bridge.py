"""The MQTT bridge: committed events → topic map → a broker, off the request path.

The bus hands every commit's events to `offer` synchronously on the event loop; `offer` only appends
to a bounded queue, so a slow or dead broker can never block or fail a tool call. One task drains the
queue into the sink (the embedded broker, or a client of an external one). When the queue overflows
or the broker is unreachable, the bridge stops queueing and, once the broker is back, republishes
from the event log by cursor — subscribers connected at that point see what they missed, in order.

Several instances on one database (team mode) each hear every commit through their event feed. With
an external broker they share, publishing them all would deliver every event once per instance, so
such a bridge is given `publishes` (the hub passes "this instance is the leader"): while it answers
False the bridge only follows the feed's position, and when it turns True it publishes from that
position on. The handover is not exactly-once: events committed after a crashed leader's last
acknowledged publish and before the next leader takes over (within one sweep interval of PostgreSQL
freeing the dead leader's lock) are not published, and a leader that lost its database connection
while still running publishes until its next sweep notices, alongside its successor. Subscribers
resync from the log (`get_updates`, SSE `Last-Event-ID`), as after any broker outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from huddle.background import Background
from huddle.domain.events import Event
from huddle.push import log as eventlog
from huddle.push.topics import Routed, route
from huddle.storage.base import Store

log = logging.getLogger(__name__)

MAX_QUEUE = 10_000
MAX_BATCH = 256
MAX_CATCH_UP = 10_000  # older misses are left to get_updates, the truth
MAX_IN_FLIGHT = 64  # batches handed to a broker and not acknowledged yet


class SinkDown(Exception):
    """The broker connection is gone; the sink reconnects on its own."""


class Message(NamedTuple):  # a tuple, not a frozen dataclass: a crowd's event makes a thousand
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Sink(Protocol):
    """Where the bridge publishes: the embedded broker or a connection to an external one."""

    kind: str
    acks: bool  # publish() waits for the broker's acknowledgements: the bridge pipelines it

    @property
    def connected(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def wait_connected(self) -> None:
        """Returns once messages can be published (immediately for the embedded broker)."""
        ...

    def wanted(self) -> Callable[[str], bool] | None:
        """Which inbox topics are worth a message now (someone subscribes); None: every one (an
        external broker's subscribers are unknown here)."""
        ...

    async def publish(self, messages: Sequence[Message]) -> None:
        """Publishes in order; raises SinkDown when the broker is unreachable."""
        ...

    def info(self) -> dict[str, Any]: ...


def encode(routed: Routed, wanted: Callable[[str], bool] | None = None) -> list[Message]:
    """The event's messages; with `wanted`, inbox messages only for the topics it accepts."""
    data = json.dumps(routed.payload, separators=(",", ":"), default=str).encode()
    inboxes = routed.inboxes if wanted is None else [topic for topic in routed.inboxes if wanted(topic)]
    return [Message(p.topic, data, p.qos, p.retain) for p in routed.fixed] + [
        Message(topic, data, routed.inbox_qos, False) for topic in inboxes
    ]


class MqttBridge:
    """Bus listener + publisher task.

    `sent_cursor` is the last event handed to the broker, `acked_cursor` the last one it confirmed.
    Against an external broker batches are pipelined (the next one leaves while the previous one waits
    for its PUBACKs); when the connection drops, everything after `acked_cursor` is sent again from
    the log — at least once, in order.
    """

    def __init__(
        self,
        sink: Sink,
        store: Store,
        root: str,
        *,
        max_queue: int = MAX_QUEUE,
        publishes: Callable[[], bool] | None = None,
        owns_sink: bool = True,
    ):
        self.sink = sink
        # False for another project's bridge into this server's broker, which its own hub starts and stops.
        self.owns_sink = owns_sink
        self.store = store
        self.root = root
        self.max_queue = max_queue
        # None: this bridge publishes everything it hears (its broker is its own).
        self.publishes = publishes
        self.sent_cursor = 0
        self.acked_cursor = 0
        self.names: dict[str, str] = {}
        self._in_flight: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._queue: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._lagged = False
        self._sender = Background("huddle-mqtt-bridge")
        self.stats = {
            "events": 0,
            "messages": 0,
            "catch_ups": 0,
            "caught_up_events": 0,
            "skipped_events": 0,
            "overflows": 0,
            "followed_events": 0,
            "takeovers": 0,
        }
        self._publishing = publishes is None
        self.last_published_at: float | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts from the log's present: history is not republished when the server starts."""
        self.sent_cursor = self.acked_cursor = await eventlog.latest_cursor(self.store)
        self.names = await eventlog.agent_names(self.store)
        if self.owns_sink:
            await self.sink.start()
        self._sender.start(self._run())

    async def stop(self) -> None:
        if self._sender.running:
            # Give what is queued a moment to go out (a clean shutdown should not drop the last events).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    while (self._queue or self._lagged or self._in_flight) and self.sink.connected:
                        await asyncio.sleep(0.01)
        await self._sender.stop()
        for _, pending in self._in_flight:
            pending.cancel()
        self._in_flight.clear()
        if self.owns_sink:
            await self.sink.stop()

    # -- the bus side (synchronous, never blocks) -----------------------------------------------

    def offer(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.kind.startswith("agent.") and event.actor and isinstance(event.data.get("name"), str):
                self.names[event.actor] = event.data["name"]
        if not events:
            return
        if self.publishes is not None and not self._may_publish():
            self._follow(events[-1].cursor, len(events))
            return
        if self._lagged:
            return  # the log has them; the catch-up will read them
        if not self.sink.connected or len(self._queue) + len(events) > self.max_queue:
            if self.sink.connected:
                self.stats["overflows"] += 1
                log.warning("MQTT queue full (%d events); will resend from the event log", len(self._queue))
            self._lagged = True
            self._queue.clear()
        else:
            self._queue.extend(events)
        self._wake.set()

    def _may_publish(self) -> bool:
        """Asks `publishes`; a bridge that starts publishing does so from the feed's position."""
        assert self.publishes is not None
        now = self.publishes()
        if now and not self._publishing:
            self.stats["takeovers"] += 1
            log.info("this instance now publishes to the MQTT broker, from cursor %d on", self.sent_cursor)
        elif not now and self._publishing:
            log.info("another instance publishes to the MQTT broker from cursor %d on", self.sent_cursor)
        self._publishing = now
        return now

    def _follow(self, cursor: int, count: int) -> None:
        """Another instance publishes these events: keep only the position (and nothing to resend)."""
        self._queue.clear()
        self._lagged = False
        self.sent_cursor = max(self.sent_cursor, cursor)
        self.acked_cursor = max(self.acked_cursor, cursor)
        self.stats["followed_events"] += count

    # -- the publisher task --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._queue and not self._lagged:
                await self._wake.wait()
                self._wake.clear()
                # Woken by a commit: let the request that made it answer first (it was scheduled after
                # us); the fan-out to subscribers then costs that caller nothing.
                await asyncio.sleep(0)
                continue
            await self.sink.wait_connected()
            try:
                if self._lagged:
                    await self._catch_up()
                batch: list[Event] = []
                while self._queue and len(batch) < MAX_BATCH:
                    event = self._queue.popleft()
                    if event.cursor > self.sent_cursor:
                        batch.append(event)
                if batch:
                    await self._send(batch)
            except SinkDown:
                self._resend_unacked()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one event's rendering must not stop the bridge for good
                log.exception("MQTT bridge failed; resending from the event log")
                self._resend_unacked()
                await asyncio.sleep(0.5)

    async def _send(self, events: Sequence[Event]) -> None:
        messages: list[Message] = []
        wanted = self.sink.wanted()
        routed_to = 0
        for event in events:
            routed = route(event, self.root, self.names.get)
            routed_to += len(routed.fixed) + len(routed.inboxes)
            messages.extend(encode(routed, wanted))
        cursor = events[-1].cursor
        if not self.sink.acks:
            if messages:
                await self.sink.publish(messages)
            self.acked_cursor = cursor
        elif messages:
            # Started now, so batches leave in order; acknowledged later, in the background.
            future = asyncio.ensure_future(self.sink.publish(messages))
            self._in_flight.append((cursor, future))
            future.add_done_callback(self._reap)
            if len(self._in_flight) > MAX_IN_FLIGHT:
                oldest = self._in_flight[0][1]
                await asyncio.wait([oldest])
                if oldest.cancelled() or oldest.exception() is not None:
                    raise SinkDown("publish failed")
        elif not self._in_flight:
            self.acked_cursor = cursor
        self.sent_cursor = cursor
        self.stats["events"] += len(events)
        self.stats["messages"] += routed_to
        self.last_published_at = time.time()

    def _reap(self, _: object = None) -> None:
        """Moves `acked_cursor` over the batches the broker confirmed, oldest first."""
        while self._in_flight and self._in_flight[0][1].done():
            cursor, future = self._in_flight.popleft()
            if future.cancelled() or future.exception() is not None:
                self._resend_unacked()
                self._wake.set()
                return
            # max: a bridge that stopped publishing meanwhile already follows a later position.
            self.acked_cursor = max(self.acked_cursor, cursor)

    def _resend_unacked(self) -> None:
        """The broker went away: forget the live queue and the unconfirmed batches; the log has them."""
        for _, future in self._in_flight:
            future.remove_done_callback(self._reap)
            future.cancel()
        self._in_flight.clear()
        self.sent_cursor = self.acked_cursor
        self._lagged = True
        self._queue.clear()

    async def _catch_up(self) -> None:
        """Republishes from the log everything after `sent_cursor`, then resumes from the live queue."""
        # Clear the flag first: events offered from now on are queued and deduplicated by cursor.
        self._lagged = False
        if self.publishes is not None and not self._may_publish():
            return  # another instance publishes now; the next offer moves our position on
        self.stats["catch_ups"] += 1
        latest = await eventlog.latest_cursor(self.store)
        if latest - self.sent_cursor > MAX_CATCH_UP:
            skipped = latest - MAX_CATCH_UP - self.sent_cursor
            self.stats["skipped_events"] += skipped
            log.warning("MQTT catch-up skips %d old events; subscribers resync with get_updates", skipped)
            self.sent_cursor = latest - MAX_CATCH_UP
        while True:
            page = await eventlog.read_after(self.store, self.sent_cursor, limit=MAX_BATCH)
            if not page:
                return
            await self._send(page)
            self.stats["caught_up_events"] += len(page)

    def info(self) -> dict[str, Any]:
        return {
            "sent_cursor": self.sent_cursor,
            "acked_cursor": self.acked_cursor,
            "queued": len(self._queue),
            "in_flight": len(self._in_flight),
            "resyncing": self._lagged,
            "publishing": self._publishing,
            **self.stats,
        }
