"""File activity (F-33, F-34) and the dependency map with blast radius (F-35)."""

from __future__ import annotations

import pytest

from huddle.errors import InvalidInput, NotFound
from huddle.service.coordinator import Coordinator


async def test_hot_files_rank_files_by_how_many_agents_edit_them(coordinator: Coordinator) -> None:
    for name in ("alice", "bob"):
        await coordinator.agents.register(name)
    await coordinator.files.log_edit("alice", "src/shared.py", ranges=[[1, 5]])
    await coordinator.files.log_edit("bob", "./src/shared.py")
    await coordinator.files.log_edit("alice", "src/solo.py")
    hot = (await coordinator.files.hot_files())["files"]
    assert [(f["path"], f["agents"], f["contested"]) for f in hot] == [
        ("src/shared.py", ["alice", "bob"], True),
        ("src/solo.py", ["alice"], False),
    ]


async def test_session_files_list_what_the_agent_edited_since_it_registered(coordinator: Coordinator) -> None:
    await coordinator.agents.register("alice")
    await coordinator.files.log_edit("alice", "a.py")
    await coordinator.files.log_edit("alice", "b.py")
    await coordinator.files.log_edit("alice", "a.py")
    files = (await coordinator.files.session_files("alice"))["files"]
    assert sorted((f["path"], f["edits"]) for f in files) == [("a.py", 2), ("b.py", 1)]


async def test_check_file_conflict_reports_recent_and_in_flight_edits_by_others(coordinator: Coordinator) -> None:
    for name in ("alice", "bob", "carol"):
        await coordinator.agents.register(name)
    await coordinator.files.log_edit("bob", "a.py")
    await coordinator.files.start_editing("carol", "a.py")
    report = await coordinator.files.check_file_conflict("a.py", "alice")
    assert report["conflict"] is True
    assert {(a["agent_id"], a["editing_now"]) for a in report["agents"]} == {("bob", False), ("carol", True)}
    assert (await coordinator.files.check_file_conflict("a.py", "bob"))["agents"][0]["agent_id"] == "carol"


async def test_bad_edit_ranges_are_refused_with_the_expected_shape(coordinator: Coordinator) -> None:
    await coordinator.agents.register("alice")
    for ranges in ([[5, 2]], [[0, 3]], [[1]], [["a", "b"]]):
        with pytest.raises(InvalidInput, match=r"ranges\[0\]"):
            await coordinator.files.log_edit("alice", "a.py", ranges=ranges)
    assert (await coordinator.files.hot_files())["files"] == []


MAP = {
    "db": {"depends_on": [], "paths": ["src/db/"]},
    "auth": {"depends_on": ["db"], "paths": ["src/auth/"]},
    "api": {"depends_on": ["auth"], "paths": ["src/api/*.py"]},
    "billing": {"depends_on": ["db"], "paths": ["src/billing/"]},
}


async def test_blast_radius_follows_dependents_transitively_nearest_first(coordinator: Coordinator) -> None:
    assert await coordinator.depmap.set_map(MAP) == {"modules": 4, "edges": 3}
    radius = await coordinator.depmap.blast_radius(module="db")
    assert radius["affected"] == [
        {"module": "auth", "distance": 1},
        {"module": "billing", "distance": 1},
        {"module": "api", "distance": 2},
    ]
    by_path = await coordinator.depmap.blast_radius(path="src/auth/jwt.py")
    assert (by_path["modules"], [a["module"] for a in by_path["affected"]]) == (["auth"], ["api"])
    assert (await coordinator.depmap.blast_radius(path="src/api/v1.py"))["modules"] == ["api"]


async def test_module_info_lists_paths_dependencies_and_dependents(coordinator: Coordinator) -> None:
    await coordinator.depmap.set_map(MAP)
    info = await coordinator.depmap.module_info("auth")
    assert info == {"module": "auth", "depends_on": ["db"], "paths": ["src/auth/"], "dependents": ["api"]}
    with pytest.raises(NotFound, match="set_dependency_map first"):
        await coordinator.depmap.module_info("nope")


async def test_a_map_with_unknown_dependencies_or_paths_outside_the_repo_is_refused(coordinator: Coordinator) -> None:
    with pytest.raises(InvalidInput, match="does not define"):
        await coordinator.depmap.set_map({"a": {"depends_on": ["ghost"], "paths": []}})
    with pytest.raises(InvalidInput, match="outside the repository"):
        await coordinator.depmap.set_map({"a": {"depends_on": [], "paths": ["/etc/"]}})
    with pytest.raises(InvalidInput, match="unknown keys"):
        await coordinator.depmap.set_map({"a": {"depends": []}})
    with pytest.raises(NotFound):
        await coordinator.depmap.blast_radius(module="a")
