"""Announcing work and impact scoring through the service API (SPEC F-10 … F-14)."""

from __future__ import annotations

import anyio
import pytest

from helpers import make_coordinator
from huddle.errors import Forbidden, InvalidInput, NotFound
from huddle.service.coordinator import Coordinator


async def register(c: Coordinator, *names: str, modules: list[str] | None = None) -> None:
    for name in names:
        await c.agents.register(name, modules=modules)


async def test_same_module_different_files_is_a_gray_zone_with_awareness_for_both(coordinator: Coordinator) -> None:
    await register(coordinator, "alice", "bob")
    await coordinator.intents.announce("alice", "login form", ["src/auth/login.py"], target_modules=["src/auth"])
    result = await coordinator.intents.announce(
        "bob", "session store", ["src/auth/session.py"], target_modules=["src/auth"]
    )
    assert result["verdict"] == "caution"
    assert result["thread_id"] is None
    [impact] = result["impacts"]
    assert (impact["agent_id"], impact["score"], impact["category"]) == ("alice", 30, "gray_zone")
    assert impact["evidence"][0]["layer"] == "3"
    for agent in ("alice", "bob"):
        events = (await coordinator.updates.get_updates(agent))["events"]
        awareness = [e for e in events if e["event"] == "impact.awareness" and e["intent_id"] == result["intent_id"]]
        assert len(awareness) == 1, agent


async def test_depending_on_a_file_another_agent_targets_scores_80_layer_0b(coordinator: Coordinator) -> None:
    await register(coordinator, "alice", "bob")
    await coordinator.intents.announce("alice", "change user model", ["src/models/user.py"])
    result = await coordinator.intents.announce(
        "bob", "profile page", ["src/pages/profile.py"], depends_on_files=["src/models/user.py"]
    )
    [impact] = result["impacts"]
    assert (impact["score"], impact["category"], impact["evidence"][0]["layer"]) == (80, "gray_zone", "0b")
    assert result["verdict"] == "caution"


async def test_targeting_a_file_another_agent_depends_on_scores_80_layer_0c(coordinator: Coordinator) -> None:
    await register(coordinator, "alice", "bob")
    await coordinator.intents.announce(
        "alice", "profile page", ["src/pages/profile.py"], depends_on_files=["src/models/user.py"]
    )
    result = await coordinator.intents.announce("bob", "change user model", ["src/models/user.py"])
    [impact] = result["impacts"]
    assert (impact["score"], impact["evidence"][0]["layer"]) == (80, "0c")


async def test_unrelated_work_passes_with_verdict_proceed(coordinator: Coordinator) -> None:
    await register(coordinator, "alice", "bob")
    await coordinator.intents.announce("alice", "docs", ["docs/index.md"], target_modules=["docs"])
    result = await coordinator.intents.announce("bob", "api", ["src/api.py"], target_modules=["src/api"])
    assert result == {**result, "verdict": "proceed", "thread_id": None, "impacts": []}


async def test_a_file_edited_recently_by_another_agent_scores_100_layer_1(coordinator: Coordinator) -> None:
    await register(coordinator, "alice", "bob")
    await coordinator.files.log_edit("alice", "src/app.py", ranges=[[3, 9]])
    result = await coordinator.intents.announce("bob", "tweak app", ["src/app.py"])
    [impact] = result["impacts"]
    assert (impact["score"], impact["evidence"][0]["layer"]) == (100, "1")
    assert result["verdict"] == "consult"


async def test_a_file_being_edited_right_now_scores_100_layer_1_in_flight(coordinator: Coordinator) -> None:
    await register(coordinator, "alice", "bob")
    await coordinator.files.start_editing("alice", "src/app.py")
    result = await coordinator.intents.announce("bob", "tweak app", ["src/app.py"])
    evidence = result["impacts"][0]["evidence"][0]
    assert (evidence["layer"], evidence["in_flight"]) == ("1", True)
    await coordinator.files.stop_editing("alice", "src/app.py")
    dry = await coordinator.intents.check_conflicts("bob", ["src/other.py"])
    assert dry["impacts"] == []


async def test_a_dependency_edited_recently_scores_80_layer_2(coordinator: Coordinator) -> None:
    await register(coordinator, "alice", "bob")
    await coordinator.files.log_edit("alice", "src/config.py")
    result = await coordinator.intents.announce(
        "bob", "use config", ["src/main.py"], depends_on_files=["src/config.py"]
    )
    assert [(i["score"], i["evidence"][0]["layer"]) for i in result["impacts"]] == [(80, "2")]


async def test_disjoint_symbols_on_one_file_lower_the_score_to_50(coordinator: Coordinator) -> None:
    await register(coordinator, "alice", "bob")
    await coordinator.intents.announce("alice", "login", ["src/auth.py"], target_symbols=["login"])
    result = await coordinator.intents.announce("bob", "logout", ["src/auth.py"], target_symbols=["logout"])
    [impact] = result["impacts"]
    assert (impact["score"], impact["category"]) == (50, "gray_zone")
    assert impact["evidence"][0]["symbols"] == ["login", "logout"]


async def test_offline_agents_are_not_scored(tmp_path, repo) -> None:
    c = make_coordinator(tmp_path, repo, agent_ttl_s=0.2)
    await c.start()
    try:
        await register(c, "alice")
        await c.intents.announce("alice", "x", ["a.py"])
        while (await c.agents.list_agents(online_only=True))["agents"]:
            await c.sweep()
        await register(c, "bob")
        result = await c.intents.announce("bob", "y", ["a.py"])
        assert result["verdict"] == "proceed"
    finally:
        await c.stop()


async def test_check_conflicts_scores_like_announce_but_writes_nothing(coordinator: Coordinator) -> None:
    await register(coordinator, "alice", "bob")
    await coordinator.intents.announce("alice", "x", ["a.py"])
    before = await coordinator.updates.latest_cursor()
    dry = await coordinator.intents.check_conflicts("bob", ["a.py"])
    assert (dry["verdict"], dry["safe_to_proceed"], dry["impacts"][0]["score"]) == ("consult", False, 100)
    assert await coordinator.updates.latest_cursor() == before
    assert (await coordinator.intents.list_intents(agent_id="bob"))["intents"] == []


async def test_completed_work_no_longer_collides(coordinator: Coordinator) -> None:
    await register(coordinator, "alice", "bob")
    first = await coordinator.intents.announce("alice", "x", ["a.py"])
    done = await coordinator.intents.complete("alice", first["intent_id"])
    assert done["status"] == "completed"
    assert (await coordinator.intents.announce("bob", "y", ["a.py"]))["verdict"] == "proceed"


async def test_only_the_owner_can_complete_an_intent(coordinator: Coordinator) -> None:
    await register(coordinator, "alice", "bob")
    first = await coordinator.intents.announce("alice", "x", ["a.py"])
    with pytest.raises(Forbidden, match="belongs to alice"):
        await coordinator.intents.complete("bob", first["intent_id"])


async def test_an_intent_expires_after_its_ttl(coordinator: Coordinator) -> None:
    await register(coordinator, "alice", "bob")
    first = await coordinator.intents.announce("alice", "x", ["a.py"], ttl_s=1)
    await coordinator.sweep()
    assert (await coordinator.intents.list_intents(agent_id="alice"))["intents"][0]["intent_id"] == first["intent_id"]
    with anyio.fail_after(5):
        while (await coordinator.intents.list_intents(agent_id="alice"))["intents"]:
            await anyio.sleep(0.05)
    assert (await coordinator.intents.announce("bob", "y", ["a.py"]))["verdict"] == "proceed"


async def test_announcing_for_an_unknown_agent_says_to_register_first(coordinator: Coordinator) -> None:
    with pytest.raises(NotFound, match="call register_agent first"):
        await coordinator.intents.announce("ghost", "x", ["a.py"])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"target_files": ["../outside.py"]}, "target_files[0]"),
        ({"target_files": ["a\x00.py"]}, "target_files[0]"),
        ({"target_files": []}, "target_files"),
        ({"subject": ""}, "subject"),
        ({"subject": "s" * 600}, "subject"),
        ({"kind": "delete_everything"}, "kind"),
        ({"ttl_s": -5}, "ttl_s"),
        ({"ttl_s": 10**9}, "ttl_s"),
        ({"target_files": [f"f{i}.py" for i in range(600)]}, "target_files"),
    ],
)
async def test_bad_announcements_name_the_field_and_write_nothing(coordinator: Coordinator, kwargs, field) -> None:
    await register(coordinator, "alice")
    before = await coordinator.updates.latest_cursor()
    args = {"agent_id": "alice", "subject": "work", "target_files": ["a.py"], **kwargs}
    with pytest.raises(InvalidInput) as caught:
        await coordinator.intents.announce(**args)
    assert caught.value.field == field
    assert await coordinator.updates.latest_cursor() == before


async def test_an_expired_intent_stops_counting_even_before_the_sweeper_ends_it(tmp_path, repo) -> None:
    c = make_coordinator(tmp_path, repo, sweep_interval_s=3600)  # the sweeper will not run in time
    await c.start()
    try:
        await register(c, "alice", "bob")
        await c.intents.announce("alice", "x", ["a.py"], target_modules=["src/auth"], ttl_s=1)
        await anyio.sleep(1.1)  # let the 1 s TTL pass
        result = await c.intents.announce("bob", "y", ["a.py"], target_modules=["src/auth"])
        assert (result["verdict"], result["impacts"]) == ("proceed", [])
    finally:
        await c.stop()
