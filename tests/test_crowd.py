"""A crowd on one module (issue 9): an announce into 1,000 agents answers small, writes one awareness
event, and still reaches every one of them — through get_updates, update_intent, and the push channels."""

from __future__ import annotations

import json
from typing import Any

import httpx

from helpers import ServerProcess
from huddle.domain.impact_report import TOP_IMPACTS
from huddle.service.coordinator import Coordinator
from huddle.service.hooks import collisions
from push_helpers import mqtt_subscriber, runtime, sse, tool

MODULE = "src/crowd"


def member(i: int) -> str:
    return f"agent-{i:04d}"


async def crowd_of(c: Coordinator, size: int) -> None:
    for i in range(size):
        await c.agents.register(member(i), modules=[MODULE])
    await c.agents.register("announcer", modules=[MODULE])


async def announce(c: Coordinator, subject: str = "crowd work") -> dict[str, Any]:
    return await c.intents.announce("announcer", subject, [f"{MODULE}/new.py"], target_modules=[MODULE])


async def awareness_of(c: Coordinator, agent: str, intent_id: str, after: int) -> list[dict[str, Any]]:
    """The agent's awareness events of `intent_id`, read from `after` (past the crowd's agent.online news)."""
    events = (await c.updates.get_updates(agent, cursor=after))["events"]
    return [e for e in events if e["event"] == "impact.awareness" and e["intent_id"] == intent_id]


async def test_an_announce_into_a_crowd_of_1000_answers_under_4_kb_and_each_agent_gets_its_awareness(
    coordinator: Coordinator,
) -> None:
    await crowd_of(coordinator, 1000)
    before = await coordinator.updates.latest_cursor()
    result = await announce(coordinator)
    assert len(json.dumps(result, separators=(",", ":")).encode()) < 4096
    assert result["verdict"] == "caution"
    assert [i["agent_id"] for i in result["impacts"]] == [member(i) for i in range(TOP_IMPACTS)]
    assert result["impact_summary"] == {
        "total": 1000,
        "shown": 10,
        "omitted": 990,
        "by_category": {"concerned": 0, "gray_zone": 1000, "pass": 0},
        "by_layer": {"3": 1000},
    }
    # One intent.announced and one impact.awareness for the whole crowd, not one per agent.
    assert await coordinator.updates.latest_cursor() == before + 2
    # Agents in and far outside the shown ten (every 50th, and the edges), each reading its own inbox.
    for i in sorted({*range(0, 1000, 50), 9, 10, 11, 998, 999}):
        [event] = await awareness_of(coordinator, member(i), result["intent_id"], before)
        assert (event["score"], event["category"], event["affected"]) == (30, "gray_zone", 1000)
        assert event["other_agent"] is None and event["evidence"][0]["modules"] == [MODULE]
    assert sorted(event["audience"]) == sorted(["announcer", *(member(i) for i in range(1000))])
    [own] = await awareness_of(coordinator, "announcer", result["intent_id"], before)
    assert own["cursor"] == event["cursor"]


async def test_a_crowd_member_outside_the_shown_ten_reads_only_the_evidence_about_itself(
    coordinator: Coordinator,
) -> None:
    await crowd_of(coordinator, 30)
    await coordinator.agents.register("deep", modules=[f"{MODULE}/deep"])
    await coordinator.intents.announce("agent-0029", "private plan", ["src/crowd/secret.py"], target_modules=[MODULE])
    before = await coordinator.updates.latest_cursor()
    result = await announce(coordinator)
    assert "agent-0029" not in {i["agent_id"] for i in result["impacts"]}
    [theirs] = await awareness_of(coordinator, "agent-0029", result["intent_id"], before)
    [deep] = await awareness_of(coordinator, "deep", result["intent_id"], before)
    assert theirs["affected"] == 30 and deep["affected"] == 1 and deep["other_agent"] == "deep"
    assert [e["modules"] for e in deep["evidence"]] == [[f"{MODULE}/deep"]]
    assert "deep" not in theirs["audience"] and "agent-0029" not in deep["audience"]
    assert "secret" not in json.dumps(theirs) + json.dumps(deep)  # another agent's intent never shows


async def test_update_intent_after_a_crowd_announce_tells_every_agent_that_collided_before(
    coordinator: Coordinator,
) -> None:
    await crowd_of(coordinator, 40)
    result = await announce(coordinator)
    before = await coordinator.updates.latest_cursor()
    updated = await coordinator.intents.update(
        "announcer", result["intent_id"], target_files=["docs/elsewhere.md"], target_modules=["docs"]
    )
    assert updated["impact_summary"]["total"] == 0 and updated["verdict"] == "proceed"
    for i in (0, 25, 39):
        events = (await coordinator.updates.get_updates(member(i), cursor=before))["events"]
        assert any(e["event"] == "intent.updated" and e["intent_id"] == result["intent_id"] for e in events)


async def test_check_conflicts_answers_a_crowd_like_announce_and_the_hook_lists_ten_and_a_count(
    coordinator: Coordinator,
) -> None:
    await crowd_of(coordinator, 40)
    dry = await coordinator.intents.check_conflicts("announcer", [f"{MODULE}/new.py"], target_modules=[MODULE])
    assert len(dry["impacts"]) == 10 and dry["impact_summary"]["total"] == 40
    every = await coordinator.intents.check_conflicts("announcer", [f"{MODULE}/new.py"], limit=None)
    ask, warn = collisions(every["impacts"])
    assert ask is None and warn is not None
    assert warn.count("agent-") == 10 and warn.endswith("; and 30 more")


async def test_the_conflict_signal_chart_counts_the_layers_of_impacts_not_shown(
    coordinator: Coordinator,
) -> None:
    await crowd_of(coordinator, 15)
    await coordinator.files.log_edit("agent-0014", f"{MODULE}/new.py")  # layer 1 on an agent past the ten
    result = await announce(coordinator)
    assert result["impacts"][0]["agent_id"] == "agent-0014"  # the strongest comes first whatever its id
    assert result["impact_summary"]["by_layer"] == {"1": 1, "3": 15}
    signals = await coordinator.insights.conflict_signals(hours=1)
    assert signals["layer_totals"] == {"1": 1, "3": 1}


async def test_a_consultation_carries_the_impacts_of_its_respondents_not_the_gray_zone_around_them(
    coordinator: Coordinator,
) -> None:
    await crowd_of(coordinator, 20)
    await coordinator.intents.announce("agent-0003", "same file", [f"{MODULE}/new.py"])
    result = await announce(coordinator)
    assert result["verdict"] == "consult"
    events = (await coordinator.updates.get_updates("agent-0003"))["events"]
    [opened] = [e for e in events if e["event"] == "thread.opened"]
    assert [i["agent_id"] for i in opened["impacts"]] == ["agent-0003"]
    assert opened["expected_respondents"] == ["agent-0003"]


async def test_an_agent_outside_the_shown_ten_gets_its_awareness_on_mqtt_and_sse(
    huddle_server: ServerProcess,
) -> None:
    info = runtime(huddle_server)
    root = info["mqtt_topic_root"]
    watcher = member(24)
    async with httpx.AsyncClient(base_url=huddle_server.url) as http:
        for i in range(25):
            await tool(http, "register_agent", name=member(i), agent_id=member(i), modules=[MODULE])
        await tool(http, "register_agent", name="announcer", agent_id="announcer", modules=[MODULE])
        async with (
            mqtt_subscriber(info["mqtt_port"], f"{root}/agents/{watcher}/inbox") as mine,
            mqtt_subscriber(info["mqtt_port"], f"{root}/agents/+/inbox") as every_inbox,
            sse(http, agent=watcher, kinds="impact.awareness") as stream,
        ):
            await stream.until_live()
            result = await tool(
                http, "announce_work", agent_id="announcer", subject="crowd", target_files=[f"{MODULE}/x.py"]
            )
            assert watcher not in {i["agent_id"] for i in result["impacts"]}

            def is_awareness(m: Any) -> bool:
                return m.payload["event"] == "impact.awareness" and m.payload["intent_id"] == result["intent_id"]

            message = await mine.wait_for(is_awareness)
            assert message.topic == f"{root}/agents/{watcher}/inbox" and message.payload["affected"] == 25
            pushed = await stream.until(lambda e: e.data["intent_id"] == result["intent_id"])
            assert pushed.data["score"] == 30
            for i in range(25):
                await every_inbox.wait_for(lambda m, i=i: is_awareness(m) and m.topic.endswith(f"/{member(i)}/inbox"))
