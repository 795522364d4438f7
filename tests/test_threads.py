"""Consultation threads through the service API: rounds, permissions, timeouts (SPEC F-20 … F-24)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from helpers import make_coordinator
from huddle.errors import Conflict, Forbidden, InvalidInput, NotFound
from huddle.service.coordinator import Coordinator
from huddle.service.threads import MAX_MESSAGES_RETURNED


async def collide(c: Coordinator, *respondents: str) -> str:
    """alice announces a.py after every respondent did: returns the consultation thread id."""
    await c.agents.register("alice")
    for name in respondents:
        await c.agents.register(name)
        await c.intents.announce(name, f"{name}'s work", ["a.py"])
    result = await c.intents.announce("alice", "alice's work", ["a.py"])
    assert result["verdict"] == "consult"
    return str(result["thread_id"])


async def test_the_thread_expects_every_concerned_agent_as_respondent(coordinator: Coordinator) -> None:
    thread_id = await collide(coordinator, "bob", "carol")
    thread = await coordinator.threads.get(thread_id)
    assert (thread["status"], thread["round"], thread["initiator"]) == ("open", 1, "alice")
    assert thread["expected_respondents"] == ["bob", "carol"]


async def test_consensus_needs_every_participant_but_the_proposer(coordinator: Coordinator) -> None:
    thread_id = await collide(coordinator, "bob", "carol")
    proposed = await coordinator.threads.propose(thread_id, "alice", "bob first, then carol")
    assert proposed["waiting_for"] == ["bob", "carol"]
    assert (await coordinator.threads.approve(thread_id, "bob"))["waiting_for"] == ["carol"]
    resolved = await coordinator.threads.approve(thread_id, "carol")
    assert resolved == {"thread_id": thread_id, "status": "resolved", "resolution": "bob first, then carol"}


async def test_a_contest_reopens_the_thread_for_the_next_round(coordinator: Coordinator) -> None:
    thread_id = await collide(coordinator, "bob")
    await coordinator.threads.propose(thread_id, "alice", "me first")
    contested = await coordinator.threads.contest(thread_id, "bob", "my migration must land first")
    assert contested == {"thread_id": thread_id, "status": "open", "round": 2}
    thread = await coordinator.threads.get(thread_id)
    assert thread["proposal"] is None
    assert thread["messages"][-1]["type"] == "contest"


async def test_max_rounds_forces_the_last_proposal(tmp_path: Path, repo: Path) -> None:
    c = make_coordinator(tmp_path, repo, max_rounds=2)
    await c.start()
    try:
        thread_id = await collide(c, "bob")
        await c.threads.propose(thread_id, "alice", "plan A")
        await c.threads.contest(thread_id, "bob", "no")
        await c.threads.propose(thread_id, "alice", "plan B")
        forced = await c.threads.contest(thread_id, "bob", "still no")
        assert forced == {"thread_id": thread_id, "status": "max_rounds", "resolution": "plan B"}
        with pytest.raises(Conflict, match="max_rounds"):
            await c.threads.post(thread_id, "bob", "context", "late")
    finally:
        await c.stop()


async def test_an_unanswered_thread_times_out(tmp_path: Path, repo: Path) -> None:
    c = make_coordinator(tmp_path, repo, thread_timeout_s=0.3)
    await c.start()
    try:
        thread_id = await collide(c, "bob")
        with c.bus.subscribe(lambda e: e.kind == "thread.status") as statuses, anyio.fail_after(5):
            event = await statuses.next_event()
        assert event is not None
        assert (event.thread_id, event.data["status"]) == (thread_id, "timeout")
        assert (await c.threads.get(thread_id))["status"] == "timeout"
    finally:
        await c.stop()


@pytest.mark.parametrize("action", ["propose", "approve", "contest", "close", "cancel"])
async def test_a_non_participant_is_refused_and_nothing_changes(coordinator: Coordinator, action: str) -> None:
    thread_id = await collide(coordinator, "bob")
    await coordinator.agents.register("mallory")
    if action in ("approve", "contest"):
        await coordinator.threads.propose(thread_id, "alice", "plan")
    before = await coordinator.threads.get(thread_id)
    cursor = await coordinator.updates.latest_cursor()
    calls = {
        "propose": lambda: coordinator.threads.propose(thread_id, "mallory", "mine"),
        "approve": lambda: coordinator.threads.approve(thread_id, "mallory"),
        "contest": lambda: coordinator.threads.contest(thread_id, "mallory", "no"),
        "close": lambda: coordinator.threads.close(thread_id, "mallory"),
        "cancel": lambda: coordinator.threads.cancel(thread_id, "mallory"),
    }
    with pytest.raises(Forbidden) as caught:
        await calls[action]()
    assert "mallory" in caught.value.message
    after = await coordinator.threads.get(thread_id)
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }
    assert await coordinator.updates.latest_cursor() == cursor


async def test_the_proposer_cannot_approve_their_own_proposal(coordinator: Coordinator) -> None:
    thread_id = await collide(coordinator, "bob")
    await coordinator.threads.propose(thread_id, "bob", "bob first")
    with pytest.raises(Forbidden, match="made the current proposal"):
        await coordinator.threads.approve(thread_id, "bob")
    assert (await coordinator.threads.approve(thread_id, "alice"))["status"] == "resolved"


async def test_approving_without_a_proposal_says_what_to_do(coordinator: Coordinator) -> None:
    thread_id = await collide(coordinator, "bob")
    with pytest.raises(Conflict, match="no proposal"):
        await coordinator.threads.approve(thread_id, "bob")


async def test_anyone_registered_may_post_and_the_post_reaches_the_members(coordinator: Coordinator) -> None:
    thread_id = await collide(coordinator, "bob")
    await coordinator.agents.register("observer")
    await coordinator.threads.post(thread_id, "observer", "warning", "the schema is shared with billing")
    updates = (await coordinator.updates.get_updates("bob"))["events"]
    assert updates[-1]["content"] == "the schema is shared with billing"


async def test_cancelling_withdraws_the_intent_so_the_file_is_free_again(coordinator: Coordinator) -> None:
    thread_id = await collide(coordinator, "bob")
    await coordinator.threads.cancel(thread_id, "alice", "not needed")
    assert (await coordinator.threads.get(thread_id))["status"] == "cancelled"
    assert (await coordinator.intents.list_intents(agent_id="alice"))["intents"] == []


async def test_a_respondent_going_away_leaves_the_thread_and_the_last_one_resolves_it(
    coordinator: Coordinator,
) -> None:
    thread_id = await collide(coordinator, "bob", "carol")
    await coordinator.threads.propose(thread_id, "alice", "plan")
    await coordinator.threads.approve(thread_id, "bob")
    await coordinator.agents.deregister("carol")
    thread = await coordinator.threads.get(thread_id)
    assert thread["expected_respondents"] == ["bob"]
    assert (thread["status"], thread["resolution"]) == ("resolved", "plan")


async def test_claim_thread_has_exactly_one_winner_among_20_concurrent_claimers(coordinator: Coordinator) -> None:
    thread_id = await collide(coordinator, "bob")
    workers = [f"worker-{i}" for i in range(20)]
    for name in workers:
        await coordinator.agents.register(name)
    results: list[dict] = []

    async def claim(name: str) -> None:
        results.append(await coordinator.threads.claim(thread_id, name))

    async with anyio.create_task_group() as tg:
        for name in workers:
            tg.start_soon(claim, name)
    winners = [r["claimed_by"] for r in results if r["claimed"]]
    assert len(winners) == 1
    assert all(r["claimed_by"] == winners[0] for r in results)
    with pytest.raises(Forbidden, match="only the claimer"):
        await coordinator.threads.complete(thread_id, "bob", "done")
    done = await coordinator.threads.complete(thread_id, winners[0], "migrated")
    assert (done["status"], done["completed"]) == ("resolved", True)


async def test_unknown_threads_and_bad_fields_are_clear_errors(coordinator: Coordinator) -> None:
    await coordinator.agents.register("alice")
    with pytest.raises(NotFound, match="T-999 does not exist"):
        await coordinator.threads.get("T-999")
    with pytest.raises(InvalidInput, match="not an id like T-12"):
        await coordinator.threads.get("thread-abc")
    thread_id = await collide(coordinator, "bob")
    with pytest.raises(InvalidInput) as caught:
        await coordinator.threads.post(thread_id, "bob", "shout", "x")
    assert caught.value.field == "type"


async def test_a_thread_is_cancelled_when_its_initiator_deregisters(coordinator: Coordinator) -> None:
    thread_id = await collide(coordinator, "bob")
    await coordinator.agents.deregister("alice")
    assert (await coordinator.threads.get(thread_id))["status"] == "cancelled"
    activity = {a["agent_id"]: a["activity"] for a in (await coordinator.agents.activity())["agents"]}
    assert activity["bob"] == "idle"


async def test_claimed_work_cannot_be_completed_once_the_thread_is_cancelled_or_completed(
    coordinator: Coordinator,
) -> None:
    thread_id = await collide(coordinator, "bob")
    await coordinator.agents.register("carol")
    await coordinator.threads.claim(thread_id, "carol")
    await coordinator.threads.cancel(thread_id, "alice", "not needed")
    with pytest.raises(Conflict, match="cancelled"):
        await coordinator.threads.complete(thread_id, "carol", "did it anyway")
    assert (await coordinator.threads.get(thread_id))["resolution"] == "not needed"

    other = (await coordinator.intents.announce("carol", "again", ["a.py"]))["thread_id"]
    await coordinator.threads.claim(other, "carol")
    await coordinator.threads.complete(other, "carol", "done")
    with pytest.raises(Conflict, match="already completed"):
        await coordinator.threads.complete(other, "carol", "done twice")


async def test_a_reply_to_an_absurd_message_id_is_a_clear_error(coordinator: Coordinator) -> None:
    thread_id = await collide(coordinator, "bob")
    with pytest.raises(InvalidInput) as caught:
        await coordinator.threads.post(thread_id, "bob", "context", "x", in_reply_to=10**20)
    assert caught.value.field == "in_reply_to"
    with pytest.raises(InvalidInput, match="not an id like T-12"):
        await coordinator.threads.get("T-²")


async def test_a_long_thread_returns_its_newest_messages_and_says_how_many_were_left_out(
    coordinator: Coordinator,
) -> None:
    thread_id = await collide(coordinator, "bob")
    for i in range(MAX_MESSAGES_RETURNED + 5):
        await coordinator.threads.post(thread_id, "bob" if i % 2 else "alice", "context", f"msg {i}")
    thread = await coordinator.threads.get(thread_id)
    contents = [m["content"] for m in thread["messages"]]
    assert contents[0] == "msg 5" and contents[-1] == f"msg {MAX_MESSAGES_RETURNED + 4}"
    assert (len(contents), thread["total_messages"], thread["truncated"]) == (
        MAX_MESSAGES_RETURNED,
        MAX_MESSAGES_RETURNED + 5,
        True,
    )
    # A reader catching up asks only for what came after the last message it has.
    last = thread["messages"][-1]["message_id"]
    await coordinator.threads.post(thread_id, "alice", "warning", "the newest")
    newer = await coordinator.threads.get(thread_id, after_message_id=last)
    assert [m["content"] for m in newer["messages"]] == ["the newest"]
    assert (newer["total_messages"], newer["truncated"]) == (MAX_MESSAGES_RETURNED + 6, False)
    with pytest.raises(InvalidInput) as bad:
        await coordinator.threads.get(thread_id, after_message_id=-1)
    assert bad.value.field == "after_message_id"
