"""Several projects in one database (one SQLite file, or one PostgreSQL database in team mode).

On PostgreSQL event cursors are numbered per project, so every read by cursor must also say whose.
"""

from __future__ import annotations

from pathlib import Path

from helpers import make_coordinator


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
