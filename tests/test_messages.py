"""Messages (SPEC F-40, F-41): inboxes, broadcasts, read state, blocking waits."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from coordination_helpers import event_count, register
from helpers import call
from huddle.errors import InvalidInput, NotFound

# Service tests take `coordinator` (both backends); server tests start theirs on both too.
pytestmark = pytest.mark.both_backends

# Far longer than a wake-up needs: the call returns the message because the send woke it, not
# because this passed (how fast it wakes is measured by benchmarks/locks.py, not asserted here).
LONG_WAIT_S = 120


async def test_a_direct_message_lands_unread_in_the_recipients_inbox_only(coordinator):
    await register(coordinator, "alice", "bob", "carol")
    sent = await coordinator.messages.send(
        "alice", "Can you add a bio field?", "bob", channel="coordination", priority="high"
    )
    assert sent["sent"] and sent["message_id"].startswith("M-") and sent["recipients"] == 1
    inbox = await coordinator.messages.list_messages("bob")
    assert inbox["unread"] == 1
    [message] = inbox["messages"]
    assert message["from_agent"] == "alice" and message["channel"] == "coordination"
    assert message["priority"] == "high" and message["read"] is False
    assert (await coordinator.messages.list_messages("carol"))["messages"] == []


async def test_a_broadcast_reaches_every_other_registered_agent(coordinator):
    await register(coordinator, "alice", "bob", "carol")
    sent = await coordinator.messages.send("alice", "rebasing main in 5 min", None, channel="git")
    assert sent["broadcast"] and sent["recipients"] == 2
    for agent in ("bob", "carol"):
        [message] = (await coordinator.messages.list_messages(agent, channel="git"))["messages"]
        assert message["broadcast"] and message["to_agent"] is None
    assert (await coordinator.messages.list_messages("alice"))["messages"] == []
    await register(coordinator, "dave")  # joined later: old broadcasts are not its unread mail
    assert (await coordinator.messages.list_messages("dave"))["messages"] == []


async def test_message_events_are_addressed_to_the_recipient_or_to_everyone(coordinator):
    await register(coordinator, "alice", "bob", "carol")
    cursor = await event_count(coordinator)
    await coordinator.messages.send("alice", "direct", "bob")
    await coordinator.messages.send("alice", "to all", None)
    bob = [e for e in (await coordinator.updates.get_updates("bob", cursor))["events"] if e["event"] == "message.sent"]
    carol = [
        e for e in (await coordinator.updates.get_updates("carol", cursor))["events"] if e["event"] == "message.sent"
    ]
    assert [e["content"] for e in bob] == ["direct", "to all"]
    assert [e["content"] for e in carol] == ["to all"]
    assert bob[0]["audience"] == ["bob"] and bob[1]["audience"] == ["*"]


async def test_mark_read_marks_inbox_messages_and_refuses_unknown_ids_writing_nothing(coordinator):
    await register(coordinator, "alice", "bob")
    first = await coordinator.messages.send("alice", "one", "bob")
    second = await coordinator.messages.send("alice", "two", "bob")
    with pytest.raises(NotFound, match="M-999"):
        await coordinator.messages.mark_read("bob", [first["message_id"], "M-999"])
    assert (await coordinator.messages.list_messages("bob"))["unread"] == 2  # nothing was marked
    own = await coordinator.messages.send("bob", "not yours", "alice")
    with pytest.raises(NotFound):
        await coordinator.messages.mark_read("bob", [own["message_id"]])
    marked = await coordinator.messages.mark_read("bob", [first["message_id"]])
    assert marked == {"marked": 1, "already_read": 0}
    unread = await coordinator.messages.list_messages("bob", unread_only=True)
    assert [m["message_id"] for m in unread["messages"]] == [second["message_id"]]


async def test_get_queued_messages_drains_most_urgent_first_and_marks_them_read(coordinator):
    await register(coordinator, "alice", "bob")
    for priority in ("low", "urgent", "normal", "high"):
        await coordinator.messages.send("alice", priority, "bob", priority=priority)
    drained = await coordinator.messages.get_queued("bob")
    assert [m["content"] for m in drained["messages"]] == ["urgent", "high", "normal", "low"]
    assert all(m["read"] for m in drained["messages"])
    assert (await coordinator.messages.get_queued("bob"))["messages"] == []


async def test_wait_for_message_returns_at_once_when_mail_is_waiting(coordinator):
    await register(coordinator, "alice", "bob")
    await coordinator.messages.send("alice", "already here", "bob")
    result = await coordinator.messages.wait_for_message("bob", timeout_s=30)
    assert [m["content"] for m in result["messages"]] == ["already here"]
    assert result["timed_out"] is False and result["waited_s"] < 1


async def test_wait_for_message_times_out_empty(coordinator):
    await register(coordinator, "bob")
    result = await coordinator.messages.wait_for_message("bob", timeout_s=0.1)
    assert result["timed_out"] is True and result["messages"] == []


async def _blocked(coordinator, agent):
    with anyio.fail_after(10):
        while agent not in coordinator.messages.waiting_agents()["waiting"]:
            await anyio.sleep(0.001)


async def test_wait_for_message_is_woken_by_the_send_with_that_message(coordinator):
    await register(coordinator, "alice", "bob")
    woke: dict = {}

    async def wait():
        woke["result"] = await coordinator.messages.wait_for_message("bob", timeout_s=LONG_WAIT_S)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await _blocked(coordinator, "bob")
        await coordinator.messages.send("alice", "wake up", "bob")
    assert woke["result"]["timed_out"] is False
    assert [m["content"] for m in woke["result"]["messages"]] == ["wake up"]


async def test_a_broadcast_wakes_waiters_but_never_its_sender(coordinator):
    await register(coordinator, "alice", "bob")
    results: dict = {}

    async def wait(agent, timeout):
        results[agent] = await coordinator.messages.wait_for_message(agent, timeout_s=timeout)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, "alice", 0.3)
        tg.start_soon(wait, "bob", 30)
        await _blocked(coordinator, "alice")
        await _blocked(coordinator, "bob")
        await coordinator.messages.send("alice", "everyone", None)
    assert [m["content"] for m in results["bob"]["messages"]] == ["everyone"]
    assert results["alice"]["timed_out"] is True


async def test_wait_for_message_over_mcp_is_woken_by_the_send_with_that_message(huddle_server):
    async with Client(huddle_server.mcp_url) as alice, Client(huddle_server.mcp_url) as bob:
        await call(alice, "register_agent", name="alice")
        await call(bob, "register_agent", name="bob")
        woke: dict = {}

        async def wait():
            woke["result"] = await call(bob, "wait_for_message", agent_id="bob", timeout_s=LONG_WAIT_S)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            with anyio.fail_after(10):  # bob's call is blocked server-side once status lists him
                while "bob" not in (await call(alice, "coordinator_status"))["messages"]["waiting"]:
                    await anyio.sleep(0.005)
            await call(alice, "send_message", from_agent="alice", to_agent="bob", content="ping")
        assert woke["result"]["timed_out"] is False
        assert [m["content"] for m in woke["result"]["messages"]] == ["ping"]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"to_agent": "alice"}, "to_agent"),
        ({"channel": "random"}, "channel"),
        ({"priority": "critical"}, "priority"),
        ({"content": "   "}, "content"),
        ({"content": "x" * 10_001}, "content"),
        ({"thread_id": "nonsense"}, "thread_id"),
        ({"from_agent": "bad id!"}, "from_agent"),
    ],
)
async def test_bad_message_input_is_refused_naming_the_field_and_writes_nothing(coordinator, args, field):
    await register(coordinator, "alice", "bob")
    before = await event_count(coordinator)
    with pytest.raises(InvalidInput) as error:
        await coordinator.messages.send(**{"from_agent": "alice", "to_agent": "bob", "content": "hi", **args})
    assert error.value.field == field
    assert await event_count(coordinator) == before


async def test_unknown_recipient_or_thread_is_not_found_and_writes_nothing(coordinator):
    await register(coordinator, "alice")
    before = await event_count(coordinator)
    with pytest.raises(NotFound, match="register_agent"):
        await coordinator.messages.send("alice", "hi", "nobody")
    with pytest.raises(NotFound, match="T-42"):
        await coordinator.messages.send("alice", "hi", None, thread_id="T-42")
    assert await event_count(coordinator) == before


@pytest.mark.parametrize("timeout", [-1, 301])
async def test_wait_for_message_refuses_absurd_timeouts(coordinator, timeout):
    await register(coordinator, "bob")
    with pytest.raises(InvalidInput) as error:
        await coordinator.messages.wait_for_message("bob", timeout_s=timeout)
    assert error.value.field == "timeout_s"


async def test_mark_read_refuses_huge_id_lists(coordinator):
    await register(coordinator, "bob")
    with pytest.raises(InvalidInput) as error:
        await coordinator.messages.mark_read("bob", [f"M-{i}" for i in range(1, 600)])
    assert error.value.field == "message_ids"
