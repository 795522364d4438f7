"""The one place Huddle corrects amqtt's routing (amqtt 0.11 – 0.12).

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
"""

from __future__ import annotations

from typing import Any

from amqtt.broker import Broker


class RoutedBroker(Broker):  # type: ignore[misc]  # amqtt ships no types
    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int], session: Any) -> None:
        topic_filter = subscription[0]
        holders = self._subscriptions.get(topic_filter, ())
        if not any(holder.client_id == session.client_id for holder, _ in holders):
            return
        await super()._publish_retained_messages_for_subscription(subscription, session)
