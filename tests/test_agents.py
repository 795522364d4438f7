"""Agents: idempotent registration with a briefing, liveness, derived activity (SPEC F-01 … F-05)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from helpers import make_coordinator
from huddle.errors import InvalidInput, NotFound
from huddle.service.coordinator import Coordinator
from huddle.service.overseers import acting_as_dashboard


async def test_registering_twice_is_the_same_agent_and_announces_it_once(coordinator: Coordinator) -> None:
    first = await coordinator.agents.register("Alice (laptop)", modules=["src/auth"])
    again = await coordinator.agents.register("Alice (laptop)", modules=["src/auth", "src/db"])
    assert first["agent_id"] == again["agent_id"] == "alice-laptop"
    agents = (await coordinator.agents.list_agents())["agents"]
    assert [(a["agent_id"], a["modules"]) for a in agents] == [("alice-laptop", ["src/auth", "src/db"])]
    events = (await coordinator.updates.get_updates("alice-laptop"))["events"]
    assert [e["event"] for e in events] == ["agent.online"]


async def test_the_briefing_names_peers_and_active_work_in_my_modules(coordinator: Coordinator) -> None:
    await coordinator.agents.register("bob", modules=["src/auth"])
    await coordinator.intents.announce("bob", "jwt refresh", ["src/auth/jwt.py"], target_modules=["src/auth/jwt"])
    briefing = (await coordinator.agents.register("alice", modules=["src/auth"]))["briefing"]
    assert [a["agent_id"] for a in briefing["online_agents"]] == ["bob"]
    assert [i["subject"] for i in briefing["intents_touching_your_modules"]] == ["jwt refresh"]


async def test_activity_is_derived_working_waiting_idle(coordinator: Coordinator) -> None:
    for name in ("alice", "bob", "carol"):
        await coordinator.agents.register(name)
    await coordinator.files.log_edit("alice", "src/x.py")
    await coordinator.intents.announce("bob", "b", ["a.py"])
    thread = await coordinator.intents.announce("carol", "c", ["a.py"])
    activity = {a["agent_id"]: a for a in (await coordinator.agents.activity())["agents"]}
    assert activity["alice"]["activity"] == "working"
    assert activity["bob"]["activity"] == "waiting"
    assert activity["bob"]["waiting_on"] == [thread["thread_id"]]
    assert activity["carol"]["activity"] == "idle"


async def test_a_silent_agent_goes_offline_and_comes_back_on_its_next_call(tmp_path: Path, repo: Path) -> None:
    c = make_coordinator(tmp_path, repo, agent_ttl_s=0.3)
    await c.start()
    try:
        await c.agents.register("alice")
        with c.bus.subscribe(lambda e: e.kind == "agent.offline") as offline, anyio.fail_after(5):
            assert await offline.next_event() is not None
        assert (await c.agents.list_agents())["agents"][0]["activity"] == "offline"
        await c.agents.heartbeat("alice", current_file="src/a.py")
        [agent] = (await c.agents.list_agents(online_only=True))["agents"]
        assert (agent["online"], agent["current_file"]) == (True, "src/a.py")
    finally:
        await c.stop()


async def test_wait_for_peers_returns_as_soon_as_enough_agents_are_online(coordinator: Coordinator) -> None:
    await coordinator.agents.register("alice")
    async with anyio.create_task_group() as tg:
        outcome: dict = {}

        async def wait() -> None:
            outcome.update(await coordinator.agents.wait_for_peers(2, timeout_s=10))

        tg.start_soon(wait)
        await anyio.sleep(0.05)
        with anyio.fail_after(2):
            await coordinator.agents.register("bob")
    assert outcome == {"ready": True, "online": 2, "wanted": 2}
    timed_out = await coordinator.agents.wait_for_peers(5, timeout_s=0.1)
    assert timed_out["ready"] is False


async def test_deregistering_withdraws_intents_and_forgets_the_agent(coordinator: Coordinator) -> None:
    await coordinator.agents.register("alice")
    await coordinator.intents.announce("alice", "x", ["a.py"])
    await coordinator.agents.deregister("alice")
    assert (await coordinator.intents.list_intents())["intents"] == []
    with pytest.raises(NotFound, match="register_agent first"):
        await coordinator.agents.heartbeat("alice")


async def test_get_updates_pages_with_next_cursor_and_has_more(coordinator: Coordinator) -> None:
    await coordinator.agents.register("alice")
    for i in range(5):
        await coordinator.updates.log_action_summary("alice", f"step {i}")
    page = await coordinator.updates.get_updates("alice", cursor=0, limit=4)
    assert page["has_more"] is True and len(page["events"]) == 4
    rest = await coordinator.updates.get_updates("alice", cursor=page["next_cursor"], limit=4)
    assert rest["has_more"] is False
    assert [e["summary"] for e in rest["events"]] == ["step 3", "step 4"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"agent_id": "has space"}, "agent_id"),
        ({"modules": [""]}, "modules[0]"),
        ({"name": "n" * 500}, "name"),
    ],
)
async def test_bad_registrations_name_the_field(coordinator: Coordinator, kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await coordinator.agents.register(**{"name": "alice", **kwargs})
    assert caught.value.field == field
    assert (await coordinator.agents.list_agents())["agents"] == []


async def test_an_agent_that_only_polls_get_updates_stays_online(tmp_path: Path, repo: Path) -> None:
    c = make_coordinator(tmp_path, repo, agent_ttl_s=0.5)
    await c.start()
    try:
        await c.agents.register("poller")
        with anyio.fail_after(5):
            for _ in range(15):  # 1.5 s of polling: three times the TTL
                await c.updates.get_updates("poller")
                await anyio.sleep(0.1)
        [agent] = (await c.agents.list_agents())["agents"]
        assert agent["online"] is True
    finally:
        await c.stop()


@pytest.mark.parametrize("bad", [" alice", "alice\n", "alice ", "al\u00a0ice"])
async def test_an_id_with_stray_whitespace_is_refused_not_read_as_another_agent(
    coordinator: Coordinator, bad: str
) -> None:
    await coordinator.agents.register("alice")
    with pytest.raises(InvalidInput) as caught:
        await coordinator.files.log_edit(bad, "a.py")
    assert caught.value.field == "agent_id"
    assert (await coordinator.files.hot_files())["files"] == []


async def test_text_with_an_unpaired_surrogate_is_refused_with_the_field_named(coordinator: Coordinator) -> None:
    await coordinator.agents.register("alice")
    with pytest.raises(InvalidInput) as caught:
        await coordinator.intents.announce("alice", "subject \ud800", ["a.py"])
    assert caught.value.field == "subject"
    with pytest.raises(InvalidInput) as caught:
        await coordinator.intents.announce("alice", "subject", ["a\udfff.py"])
    assert caught.value.field == "target_files[0]"


async def test_a_person_at_the_dashboard_is_not_a_peer_for_wait_for_peers_or_status(coordinator: Coordinator) -> None:
    await coordinator.agents.register("alice")
    with acting_as_dashboard():
        await coordinator.agents.register("lead", "human:lead")
    assert await coordinator.agents.wait_for_peers(2, timeout_s=0) == {"ready": False, "online": 1, "wanted": 2}
    agents = (await coordinator.status.status())["agents"]
    assert (agents["online"], agents["overseers_online"], agents["total"]) == (1, 1, 2)
    briefing = await coordinator.agents.register("bob")
    assert [a["agent_id"] for a in briefing["briefing"]["online_agents"]] == ["alice"]
