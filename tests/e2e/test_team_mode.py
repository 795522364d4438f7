"""Issue 9's behaviour, proved on three real `huddle server start` processes sharing the machine's
PostgreSQL and Mosquitto: S1 across instances on every push channel, claims and leases that have
exactly one winner whichever instance each caller uses, a queue that spans instances, kill -9 of
the leader under load, and a cursor tail that sees every event once and in order.

The many-round version is `python benchmarks/proof/cluster_team.py` (docs/proofs.md).
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import httpx
from _team import (
    clients,
    close,
    expected_publications,
    kill_under_load,
    latest_cursor,
    leaders,
    log_between,
    mqtt_publishers,
    mqtt_tally,
    queued_grant,
    race_lock,
    race_task,
    race_thread,
    register,
    tail_while_writing,
    tool,
)
from mcp import Client

from helpers import S1_EXCHANGE, call, s1_consultation
from huddle.push.mcp_push import inbox_uri
from push_helpers import Notifications, read_json, sse, subscribe, wait_until
from team_helpers import MOSQUITTO_PORT, Team, require_mosquitto, three_instances

__all__ = ["three_instances"]  # the fixture, used by name below

RACERS = 50


def tag() -> str:
    """A prefix for names: the module's tests share one database."""
    return uuid.uuid4().hex[:8]


class Inbox:
    """One agent's MCP session on its own instance: subscribed to its inbox resource."""

    def __init__(self, client: Client, notes: Notifications, agent: str):
        self.client, self.notes, self.uri = client, notes, inbox_uri(agent)
        self.used = 0  # notifications already acted on

    async def shows(self, cursor: int) -> None:
        """Waits for a notification after which reading the inbox shows the event at `cursor`."""
        with anyio.fail_after(20):
            while True:
                await self.notes.wait_for(self.uri, count=self.used + 1, timeout=20)
                self.used = self.notes.uris.count(self.uri)
                inbox = await read_json(self.client, self.uri)
                if cursor in [e["cursor"] for e in inbox["events"]]:  # type: ignore[union-attr]
                    return


async def test_s1_across_instances_reaches_both_agents_on_every_channel_exactly_once(three_instances: Team):
    require_mosquitto()
    team, t = three_instances, tag()
    alice, bob = f"alice-{t}", f"bob-{t}"
    one, two = team.servers[0], team.servers[1]
    alice_notes, bob_notes = Notifications(), Notifications()
    async with (
        mqtt_tally(MOSQUITTO_PORT, team.topic_root) as mqtt,
        httpx.AsyncClient(base_url=one.url) as http1,
        httpx.AsyncClient(base_url=two.url) as http2,
        Client(one.mcp_url, mode="legacy", message_handler=alice_notes) as alice_mcp,
        Client(two.mcp_url, mode="legacy", message_handler=bob_notes) as bob_mcp,
    ):
        start = await latest_cursor(http1)
        async with sse(http1, last_event_id=start) as stream1, sse(http2, last_event_id=start) as stream2:
            await stream1.until_live()
            await stream2.until_live()
            inboxes = {alice: Inbox(alice_mcp, alice_notes, alice), bob: Inbox(bob_mcp, bob_notes, bob)}
            seen = {alice: start, bob: start}
            http_of = {alice: http1, bob: http2}

            async def other_is_notified(actor: str) -> None:
                """What `actor` just did for the other agent reaches the other's MCP session."""
                other = bob if actor == alice else alice
                news = await tool(http_of[actor], "get_updates", agent_id=other, cursor=seen[other])
                mine = [e for e in news["events"] if e["agent_id"] == actor]
                assert mine, f"{actor}'s step addressed nothing to {other}"
                await inboxes[other].shows(mine[-1]["cursor"])
                seen[other] = news["next_cursor"]

            # Registered first, so that their inbox resources exist to subscribe to.
            await call(alice_mcp, "register_agent", name=alice)
            await call(bob_mcp, "register_agent", name=bob)
            await subscribe(alice_mcp, inboxes[alice].uri)
            await subscribe(bob_mcp, inboxes[bob].uri)
            thread_id = await s1_consultation(
                alice_mcp, bob_mcp, names=(alice, bob), path=f"src/{t}/user.ts", after_step=other_is_notified
            )
            end = await latest_cursor(http2)
            log = await log_between(http1, start, end)
            assert [e["cursor"] for e in log] == list(range(start + 1, end + 1))

            # get_updates on each agent's own instance: the whole exchange, once, in order.
            for agent, client in ((alice, alice_mcp), (bob, bob_mcp)):
                updates = await call(client, "get_updates", agent_id=agent, cursor=start)
                exchange = [e["event"] for e in updates["events"] if e["thread_id"] == thread_id]
                assert [e for e in exchange if e != "intent.announced"] == S1_EXCHANGE, agent
                cursors = [e["cursor"] for e in updates["events"]]
                assert cursors == sorted(set(cursors))

            # SSE on both instances: every event of the log, once each, in cursor order.
            for stream in (stream1, stream2):
                while not stream.events or stream.events[-1].id < end:
                    await stream.until(lambda e: True)
                assert [e.id for e in stream.events] == [e["cursor"] for e in log]

        # MQTT: each publication of each event exactly once, whichever instance committed it.
        expected = expected_publications(log, team.topic_root)
        assert any(topic.endswith("/consultations/new") for topic, _ in expected)
        await wait_until(lambda: mqtt.after(start) >= expected, timeout=20)
        assert mqtt.after(start) == expected
    # ...because exactly one instance publishes to the shared broker: the leader.
    http = clients(team.urls)
    try:
        bridges, flags = await mqtt_publishers(http), await leaders(http)
    finally:
        await close(http)
    assert [b["publishing"] for b in bridges] == flags and flags.count(True) == 1
    assert [b["events"] for b, leads in zip(bridges, flags, strict=True) if not leads] == [0, 0]


async def test_lock_task_and_thread_claim_races_over_three_instances_have_exactly_one_winner(
    three_instances: Team,
):
    http = clients(three_instances.urls)
    try:
        t = tag()
        racers = [f"racer-{t}-{i}" for i in range(RACERS)]
        await register(http, [*racers, f"a-{t}", f"b-{t}"])
        races = []
        for round_ in range(3):
            races.append(await race_lock(http, racers, f"src/{t}/contended-{round_}.py"))
            races.append(await race_task(http, racers, f"{t}-task-{round_}"))
            races.append(await race_thread(http, racers, (f"a-{t}", f"b-{t}"), f"src/{t}/thread-{round_}.py"))
        assert [r.report() for r in races if not r.ok] == []
        assert all(r.calls == RACERS for r in races)
    finally:
        await close(http)


async def test_a_lock_waiter_on_one_instance_is_granted_when_the_holder_releases_on_another(
    three_instances: Team,
):
    http = clients(three_instances.urls)
    try:
        t = tag()
        holder, waiter = f"holder-{t}", f"waiter-{t}"
        await tool(http[2], "register_agent", name=holder, agent_id=holder)
        await tool(http[1], "register_agent", name=waiter, agent_id=waiter)
        outcome = await queued_grant(http[2], http[1], holder, waiter, f"src/{t}/shared.py")
        assert outcome["released"]["released"] is True
        granted = outcome["waiter"]
        assert granted["granted"] is True and granted["queued"] is True
        assert granted["fencing_token"] > outcome["holder_token"]
        # A blocking wait_for_message on instance 1 is woken by a message sent on instance 3 too.
        reader, writer = f"reader-{t}", f"writer-{t}"
        await register(http, [reader, writer])
        waiting = anyio.Event()
        answer: dict[str, Any] = {}

        async def wait() -> None:
            waiting.set()
            answer.update(await tool(http[0], "wait_for_message", agent_id=reader, timeout_s=60))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await waiting.wait()
            await wait_until(lambda: _waiting_on(http[0], reader))
            await tool(http[2], "send_message", from_agent=writer, to_agent=reader, content="across instances")
        assert answer["timed_out"] is False
        assert [m["content"] for m in answer["messages"]] == ["across instances"]
    finally:
        await close(http)


async def _waiting_on(http: httpx.AsyncClient, agent: str) -> bool:
    """coordinator_status lists the agents blocked in wait_for_message on that instance."""
    status = await tool(http, "coordinator_status")
    return agent in status["messages"]["waiting"]


async def test_a_cursor_tail_sees_every_event_once_in_order_while_three_instances_write(three_instances: Team):
    http = clients(three_instances.urls)
    try:
        tail = await tail_while_writing(http, f"tail-{tag()}", writers_per_instance=3, messages_each=15)
    finally:
        await close(http)
    report = tail.report()
    assert report["acknowledged_messages"] == 3 * 3 * 15
    assert tail.ok, report


# Last in the module: it leaves the shared team with two instances.
async def test_kill_9_of_the_leader_under_load_loses_no_acknowledged_write_and_moves_its_jobs(three_instances: Team):
    require_mosquitto()
    team = three_instances
    crash = await kill_under_load(team.urls, team.kill, "k", clients_per_instance=3, seed=9)
    report = crash.report()
    assert crash.acknowledged_writes > 0
    assert crash.lost == [], report
    assert crash.new_leader is not None and crash.new_leader != crash.victim
    assert crash.swept_s is not None and crash.lease_swept, report
    # The new leader's bridge publishes to the shared broker now, and alone: an event committed on
    # the other survivor reaches a subscriber exactly once.
    survivors = [i for i in range(3) if i != crash.victim]
    http = clients([team.urls[i] for i in survivors])
    try:
        async with mqtt_tally(MOSQUITTO_PORT, team.topic_root) as mqtt:
            follower = http[survivors.index(next(i for i in survivors if i != crash.new_leader))]
            start = await latest_cursor(follower)
            await tool(follower, "register_agent", name="after-the-crash", agent_id="after-the-crash")
            await tool(follower, "log_action_summary", agent_id="after-the-crash", summary="still here")
            end = await latest_cursor(follower)
            expected = expected_publications(await log_between(follower, start, end), team.topic_root)
            assert expected
            await wait_until(lambda: mqtt.after(start) >= expected, timeout=20)
            assert mqtt.after(start) == expected
        bridges = await mqtt_publishers(http)
        assert [b["publishing"] for b in bridges] == [i == crash.new_leader for i in survivors]
    finally:
        await close(http)
