"""The MQTT bridge in team mode (push/bridge.py): a bridge told it does not lead only follows the
event log's position, and once it leads publishes from that position on — nothing it followed is
published late, nothing after the takeover is missed. Real broker (amqtt), real subscriber, both
storage backends."""

from __future__ import annotations

from huddle.push.bridge import MqttBridge
from huddle.push.broker import EmbeddedBroker
from huddle.push.ports import bind_tcp
from huddle.service.coordinator import Coordinator
from push_helpers import mqtt_subscriber


async def test_a_bridge_publishes_only_while_it_leads_and_takes_over_from_the_position_it_followed(
    coordinator: Coordinator,
):
    leads = False
    sock = bind_tcp("127.0.0.1", 0)
    port = sock.getsockname()[1]
    bridge = MqttBridge(EmbeddedBroker(sock), coordinator.store, "team", publishes=lambda: leads)
    coordinator.bus.add_listener(bridge.offer)
    await bridge.start()
    try:
        async with mqtt_subscriber(port, "team/#") as sub:
            await coordinator.agents.register("alice", "alice")
            followed = (await coordinator.updates.log_action_summary("alice", "while another leads"))["cursor"]
            leads = True
            first = (await coordinator.updates.log_action_summary("alice", "now I lead"))["cursor"]
            await sub.wait_for(lambda m: m.payload.get("cursor") == first)
            leads = False
            await coordinator.updates.log_action_summary("alice", "I lost the lead")
            leads = True
            last = (await coordinator.updates.log_action_summary("alice", "I lead again"))["cursor"]
            await sub.wait_for(lambda m: m.payload.get("cursor") == last)
            # Each message in order, and only those committed while this bridge led.
            assert [m.payload["cursor"] for m in sub.messages] == [first, last]
            assert all(m.payload["cursor"] > followed for m in sub.messages)
        info = bridge.info()
        assert info["publishing"] is True and info["takeovers"] == 2
        assert info["followed_events"] >= 3  # alice's registration, the first summary, the lost-lead one
        assert info["sent_cursor"] == info["acked_cursor"] == last
    finally:
        await bridge.stop()
