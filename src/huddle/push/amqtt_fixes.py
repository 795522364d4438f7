"""The one place Huddle corrects amqtt's routing and its cost (amqtt 0.11 – 0.12).

Cause: when a client connects, `Broker._client_connected` replays retained messages "to a
pre-existing session's subscriptions" by looping over `self._subscriptions` — the broker-wide
table of *every* client's filters — and calling `_publish_retained_messages_for_subscription` for
each one with the connecting session. So while any client holds `x/#`, every client that connects
receives every retained message under `x/` (at QoS 0) before it has subscribed to anything, and
then again, as a duplicate, the ones matching the filter it does subscribe to
(`x/agents/+/status`).

Fix: a retained message is only ever sent for a filter the receiving session itself holds. At
SUBSCRIBE time the filter has just been added, so nothing changes there; at connect time the
other clients' filters are skipped, and a resumed persistent session still gets its own.

Cost: amqtt handles every published message in its broadcast loop (two tasks, a queue hop, a walk
over every filter) even when no session subscribes to its topic, and formats each one into a debug
f-string before the logger drops it, payload repr included. An announce into a crowd of 1,000 is
1,000 inbox messages per event: about 150 ms of that per event on this machine. So the bridge asks
`subscribed` first (nobody subscribed: amqtt would do nothing with it either) and hands payloads over
as `Payload`, whose repr is a few characters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amqtt.broker import Broker


class Payload(bytes):
    """Bytes whose repr is their length: amqtt's eager debug f-strings stay cheap."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} bytes>"


class RoutedBroker(Broker):  # type: ignore[misc]  # amqtt ships no types
    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int], session: Any) -> None:
        topic_filter = subscription[0]
        holders = self._subscriptions.get(topic_filter, ())
        if not any(holder.client_id == session.client_id for holder, _ in holders):
            return
        await super()._publish_retained_messages_for_subscription(subscription, session)

    def subscribed(self) -> Callable[[str], bool]:
        """Whether some session holds a filter matching a topic, as of now (one test per publish batch).

        Exact filters are one set lookup; only wildcard filters are matched one by one, with
        amqtt's own matcher. Sessions that are away but persistent still hold their filters, so
        what they are owed is never skipped.
        """
        filters = [f for f, holders in self._subscriptions.items() if holders]
        exact = {f for f in filters if "+" not in f and "#" not in f}
        wild = [f for f in filters if f not in exact]
        matches = self._matches
        return lambda topic: topic in exact or any(matches(topic, f) for f in wild)
