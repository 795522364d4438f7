"""Several projects in one database (one SQLite file, or one PostgreSQL database in team mode).

On PostgreSQL event cursors are numbered per project, so every read by cursor must also say whose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import make_coordinator
from huddle.push.log import EventFilter, latest_for, read_after
from huddle.service.hooks import ClaudeHookService


async def test_two_projects_in_one_database_never_see_each_others_events(
    tmp_path: Path, backend: dict[str, str]
) -> None:
    repos = [tmp_path / "alpha", tmp_path / "beta"]
    coordinators = []
    for repo in repos:
        repo.mkdir()
        # One data dir (so one SQLite file) or one db_url for both: only the project key differs.
        coordinators.append(make_coordinator(tmp_path, repo, project=repo.name, **backend))
    for coord in coordinators:
        await coord.start()
    try:
        alpha, beta = coordinators
        for coord, (me, peer) in ((alpha, ("a1", "a2")), (beta, ("b1", "b2"))):
            await coord.agents.register(me, agent_id=me)
            await coord.agents.register(peer, agent_id=peer)
            await coord.messages.send(me, f"hello from {me}", to_agent=peer)

        for coord, own in ((alpha, {"a1", "a2"}), (beta, {"b1", "b2"})):
            for agent in own:
                updates = await coord.updates.get_updates(agent, cursor=0)
                assert updates["events"] and {e["agent_id"] for e in updates["events"]} <= own, updates["events"]
            listed = await coord.insights.list_events(after=0)
            assert {e["agent_id"] for e in listed["events"]} == own
    finally:
        for coord in coordinators:
            await coord.stop()


async def test_every_read_of_an_agents_slice_of_the_log_stays_in_its_project(
    tmp_path: Path, backend: dict[str, str]
) -> None:
    """get_updates, SSE/MQTT replay (read_after), the inbox view (latest_for) and hook delivery."""
    alpha = make_coordinator(tmp_path, tmp_path, project="alpha", **backend)
    beta = make_coordinator(tmp_path, tmp_path, project="beta", **backend)
    await alpha.start()
    await beta.start()
    try:
        for coord in (alpha, beta):
            for agent in ("alice", "bob"):
                await coord.agents.register(agent, agent_id=agent)
        await alpha.messages.send("alice", "alpha news", None)
        for n in range(3):
            await beta.updates.log_action_summary("alice", f"beta step {n}")
        await beta.messages.send("alice", "beta news", "bob")

        for coord in (alpha, beta):
            own = {e.cursor: e.to_dict() for e in await read_after(coord.store, 0)}  # the project's whole log
            mine = await coord.updates.get_updates("bob")
            cursors = [e["cursor"] for e in mine["events"]]
            assert cursors == sorted(set(cursors))  # each event once
            assert mine["events"] == [own[cursor] for cursor in cursors]  # and its own project's
            replayed = await read_after(coord.store, 0, EventFilter.parse(agent="bob"))
            assert [e.cursor for e in replayed] == cursors
            assert [e.cursor for e in await latest_for(coord.store, "bob", 100)] == cursors
        news = await ClaudeHookService(beta).deliver("bob")
        assert news is not None and "beta news" in news and "alpha news" not in news
    finally:
        await beta.stop()
        await alpha.stop()


async def test_another_projects_notes_can_neither_crowd_out_nor_reveal_mine_in_a_keyword_search(
    tmp_path: Path, backend: dict[str, str], monkeypatch: Any
) -> None:
    """SQLite's one full-text index holds every project's notes: the project is filtered before the
    candidate limit, so a flood of another project's matches changes nothing of my results."""
    from huddle.service import shared_context

    monkeypatch.setattr(shared_context, "SEARCH_CANDIDATES", 3)
    alpha = make_coordinator(tmp_path, tmp_path, project="alpha", **backend)
    beta = make_coordinator(tmp_path, tmp_path, project="beta", **backend)
    await alpha.start()
    await beta.start()
    try:
        for coord, agent in ((alpha, "a1"), (beta, "b1")):
            await coord.agents.register(agent, agent_id=agent)
        await alpha.shared_context.share("a1", "decision", "deploy on fridays is banned")
        for n in range(10):
            await beta.shared_context.share("b1", "note", f"deploy note {n}")
        mine = await alpha.shared_context.query(keyword="deploy")
        assert [e["content"] for e in mine["entries"]] == ["deploy on fridays is banned"]
        theirs = await beta.shared_context.query(keyword="fridays")
        assert theirs["entries"] == []
    finally:
        await alpha.stop()
        await beta.stop()
