"""The dashboard's reads and the overseer's release, through the service layer and over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import make_coordinator
from huddle.errors import Forbidden, InvalidInput, NotFound
from huddle.service.coordinator import Coordinator
from huddle.service.insights import outcome_of
from huddle.service.overseers import acting_as_dashboard


class Clock:
    """Time the test moves forward by hand, so expiry is exercised without waiting."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def coord(tmp_path: Path, repo: Path, clock: Clock, backend: dict[str, str]) -> AsyncIterator[Coordinator]:
    """On each backend: the dashboard's queries (windows, pages, counts) are plain SQL that must agree."""
    coordinator = make_coordinator(tmp_path, repo, clock=clock, sweep_interval_s=3600, agent_ttl_s=7200, **backend)
    await coordinator.start()
    try:
        yield coordinator
    finally:
        await coordinator.stop()


async def consultation(c: Coordinator, first: str, second: str, path: str) -> str:
    await c.agents.register(first, first)
    await c.agents.register(second, second)
    await c.intents.announce(first, f"{first} work", [path])
    opened = await c.intents.announce(second, f"{second} work", [path])
    thread_id: str = opened["thread_id"]
    return thread_id


async def test_list_events_pages_back_newest_first_and_catches_up_oldest_first(coord: Coordinator) -> None:
    await coord.agents.register("alice", "alice")
    for index in range(7):
        await coord.updates.log_action_summary("alice", f"step {index}")
    first = await coord.insights.list_events(limit=3, kinds="action.*")
    assert [e["summary"] for e in first["events"]] == ["step 6", "step 5", "step 4"]
    assert first["has_more"] is True
    second = await coord.insights.list_events(before=first["next_before"], limit=3, kinds="action.*")
    assert [e["summary"] for e in second["events"]] == ["step 3", "step 2", "step 1"]
    last = await coord.insights.list_events(before=second["next_before"], limit=3, kinds="action.*")
    assert [e["summary"] for e in last["events"]] == ["step 0"]
    assert (last["has_more"], last["next_before"]) == (False, None)

    everything = await coord.insights.list_events(limit=500)
    cursor = everything["events"][3]["cursor"]
    catch_up = await coord.insights.list_events(after=cursor, limit=2)
    assert [e["cursor"] for e in catch_up["events"]] == [cursor + 1, cursor + 2]
    assert catch_up["next_after"] == cursor + 2 and catch_up["has_more"] is True
    assert everything["latest_cursor"] == everything["events"][0]["cursor"]


async def test_list_events_refuses_before_and_after_together_and_bad_kinds_by_field(coord: Coordinator) -> None:
    with pytest.raises(InvalidInput) as both:
        await coord.insights.list_events(before=5, after=1)
    assert both.value.field == "after"
    with pytest.raises(InvalidInput) as kinds:
        await coord.insights.list_events(kinds="thread.*;drop")
    assert kinds.value.field == "kinds"
    with pytest.raises(InvalidInput) as limit:
        await coord.insights.list_events(limit=0)
    assert limit.value.field == "limit"


async def test_list_events_of_one_thread_starts_with_its_opening_and_scores(coord: Coordinator) -> None:
    thread_id = await consultation(coord, "alice", "bob", "src/a.py")
    page = await coord.insights.list_events(thread_id=thread_id, kinds="thread.opened")
    [opened] = page["events"]
    assert opened["impacts"][0]["evidence"][0]["layer"] == "0a"


async def test_conflict_signals_count_layers_verdicts_and_each_kind_of_outcome(
    coord: Coordinator, clock: Clock
) -> None:
    agreed = await consultation(coord, "alice", "bob", "src/a.py")
    await coord.threads.propose(agreed, "bob", "alice first")
    await coord.threads.approve(agreed, "alice")
    left = await consultation(coord, "carol", "dave", "src/b.py")
    await coord.agents.deregister("carol")  # the only respondent goes: Huddle settles it
    timed_out = await consultation(coord, "erin", "frank", "src/c.py")
    clock.now += coord.settings.thread_timeout_s + 1
    await coord.sweep()

    signals = await coord.insights.conflict_signals(hours=24)
    assert len(signals["bucket_starts"]) == 24 and signals["bucket_s"] == 3600
    assert signals["layer_totals"]["0a"] == 3
    assert sum(signals["verdicts"]["consult"]) == 3 and sum(signals["verdicts"]["proceed"]) == 3
    totals = signals["outcome_totals"]
    assert (totals["agreed"], totals["auto_resolved"], totals["timed_out"]) == (1, 1, 1)
    assert {agreed, left, timed_out} == {"T-1", "T-2", "T-3"}
    # Older than the window: nothing counts.
    clock.now += 25 * 3600
    later = await coord.insights.conflict_signals(hours=24)
    assert later["layer_totals"] == {} and sum(later["outcome_totals"].values()) == 0


def test_outcomes_are_named_from_the_final_status_and_its_reason() -> None:
    assert outcome_of("resolved", "consensus") == "agreed"
    assert outcome_of("resolved", "last respondent bob went offline") == "auto_resolved"
    assert outcome_of("max_rounds", "contested after 4 rounds") == "auto_resolved"
    assert outcome_of("timeout", "no agreement") == "timed_out"
    assert outcome_of("resolving", "proposal") is None


async def test_conflict_signals_refuse_a_window_beyond_a_week(coord: Coordinator) -> None:
    with pytest.raises(InvalidInput) as error:
        await coord.insights.conflict_signals(hours=1000)
    assert error.value.field == "hours"


async def test_an_overseer_releases_another_agents_lease_and_the_queue_moves_on(coord: Coordinator) -> None:
    for agent in ("alice", "bob"):
        await coord.agents.register(agent, agent)
    await coord.locks.acquire("alice", "src/db.py")
    with acting_as_dashboard():
        await coord.agents.register("lead", "human:lead")
        out = await coord.oversight.force_release_lock("human:lead", "alice", "src/db.py", "alice is stuck")
    assert (out["released"], out["holder"], out["forced_by"]) == (True, "alice", "human:lead")
    updates = await coord.updates.get_updates("alice")
    [released] = [e for e in updates["events"] if e["event"] == "lock.released"]
    assert released["forced_by"] == "human:lead"
    assert released["reason"] == "released by human:lead: alice is stuck"
    assert (await coord.locks.acquire("bob", "src/db.py"))["granted"] is True


async def test_only_a_registered_human_overseer_may_force_a_release(coord: Coordinator) -> None:
    await coord.agents.register("alice", "alice")
    await coord.agents.register("bob", "bob")
    await coord.locks.acquire("alice", "src/db.py")
    with pytest.raises(InvalidInput) as not_human:
        await coord.oversight.force_release_lock("bob", "alice", "src/db.py")
    assert not_human.value.field == "overseer_id" and "human:<name>" in str(not_human.value)
    with pytest.raises(Forbidden) as without_the_page:
        await coord.agents.register("lead", "human:lead")
    assert without_the_page.value.field == "agent_id"
    with acting_as_dashboard(), pytest.raises(NotFound) as unregistered:
        await coord.oversight.force_release_lock("human:ghost", "alice", "src/db.py")
    assert unregistered.value.field == "overseer_id"
    with acting_as_dashboard():
        await coord.agents.register("lead", "human:lead")
    with pytest.raises(Forbidden) as outside_the_page:
        await coord.oversight.force_release_lock("human:lead", "alice", "src/db.py")
    assert outside_the_page.value.field == "overseer_id"
    with acting_as_dashboard(), pytest.raises(NotFound) as no_lease:
        await coord.oversight.force_release_lock("human:lead", "bob", "src/db.py")
    assert no_lease.value.field == "path"
    assert (await coord.locks.list_locks())["locks"][0]["agent_id"] == "alice"  # nothing changed


def test_root_redirects_to_the_dashboard_which_ships_its_own_files(huddle_server: Any) -> None:
    root = httpx.get(huddle_server.url + "/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/dashboard"
    page = httpx.get(huddle_server.url + "/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/dashboard/static/js/app.js">' in page.text
    script = httpx.get(huddle_server.url + "/dashboard/static/js/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.headers["x-content-type-options"] == "nosniff"
    assert "http://" not in script.text and "https://" not in script.text  # nothing from elsewhere
    missing = httpx.get(huddle_server.url + "/dashboard/static/js/nope.js")
    assert missing.status_code == 404


def test_the_dashboard_obeys_the_loopback_origin_rules(huddle_server: Any) -> None:
    foreign = httpx.get(huddle_server.url + "/dashboard", headers={"Host": "evil.example"})
    assert foreign.status_code == 403
    cross = httpx.post(
        huddle_server.url + "/api/v1/tools/list_events", json={}, headers={"Origin": "http://evil.example"}
    )
    assert cross.status_code == 403
    same = httpx.post(huddle_server.url + "/api/v1/tools/list_events", json={}, headers={"Origin": huddle_server.url})
    assert same.status_code == 200 and same.json()["ok"] is True


@pytest.mark.both_backends
def test_force_release_over_rest_names_the_field_on_bad_input(huddle_server: Any) -> None:
    reply = httpx.post(
        huddle_server.url + "/api/v1/tools/force_release_lock",
        json={"overseer_id": "alice", "holder": "bob", "path": "a.py"},
    )
    assert reply.status_code == 422
    assert reply.json()["field"] == "overseer_id"
