"""Code intelligence on real repositories built here: symbols, co-change, git operations, merges.

The analysis jobs are driven directly (`refresh_symbols`, `refresh_cochange`, `check_merges`),
exactly what the background loops run, so nothing waits for a period to pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from git_helpers import add_worktree, commit, driven_coordinator, git, init_repo
from huddle.analysis.git import GitError
from huddle.analysis.merges import merge_tree_supported
from huddle.service.coordinator import Coordinator

AUTH = """def login(user):
    check(user)
    return True


def logout(user):
    forget(user)
    return False
"""
LOGIN_LINES = [2, 3]
LOGOUT_LINES = [7, 8]
TEN_LINES = "".join(f"line {n}\n" for n in range(1, 11))


@pytest.fixture
async def coord(tmp_path: Path, repo: Path, backend: dict[str, str]) -> AsyncIterator[Coordinator]:
    """A coordinator on a real git repository, on each backend (the analysis jobs write symbols,
    co-change pairs and predicted conflicts); periods are long so only the test drives the jobs."""
    init_repo(repo)
    commit(repo, {"auth.py": AUTH, "notes.txt": TEN_LINES}, "initial")
    async with driven_coordinator(tmp_path, repo, **backend) as c:
        yield c


def impact_for(result: dict[str, Any], agent_id: str) -> dict[str, Any]:
    found = [i for i in result["impacts"] if i["agent_id"] == agent_id]
    assert found, f"no impact on {agent_id}: {result['impacts']}"
    return found[0]


async def test_same_file_different_announced_functions_scores_50_naming_both(coord: Coordinator) -> None:
    await coord.agents.register("alice")
    await coord.agents.register("bob")
    await coord.intents.announce("alice", "login flow", ["auth.py"], target_symbols=["login"])
    await coord.analysis.refresh_symbols()
    result = await coord.intents.announce("bob", "logout flow", ["auth.py"], target_symbols=["logout"])
    impact = impact_for(result, "alice")
    assert impact["score"] == 50
    top = impact["evidence"][0]
    assert top["symbols"] == ["login", "logout"]
    assert "disjoint" in top["reason"]


async def test_same_file_different_function_than_their_logged_edit_ranges_scores_50(coord: Coordinator) -> None:
    await coord.agents.register("alice")
    await coord.agents.register("bob")
    await coord.files.log_edit("alice", "auth.py", ranges=[LOGIN_LINES])
    await coord.analysis.refresh_symbols()
    result = await coord.intents.announce("bob", "logout flow", ["auth.py"], target_symbols=["logout"])
    impact = impact_for(result, "alice")
    assert impact["score"] == 50
    assert impact["category"] == "gray_zone"
    layer_1 = next(e for e in impact["evidence"] if e["layer"] == "1")
    assert layer_1["symbols"] == ["login", "logout"]
    assert "theirs login" in layer_1["reason"] and "yours logout" in layer_1["reason"]
    assert result["thread_id"] is None


async def test_same_function_as_their_logged_edit_keeps_100_and_names_it(coord: Coordinator) -> None:
    await coord.agents.register("alice")
    await coord.agents.register("bob")
    await coord.files.log_edit("alice", "auth.py", ranges=[LOGIN_LINES])
    await coord.analysis.refresh_symbols()
    result = await coord.intents.announce("bob", "login too", ["auth.py"], target_symbols=["login"])
    impact = impact_for(result, "alice")
    assert impact["score"] == 100
    assert impact["evidence"][0]["symbols"] == ["login"]
    assert result["verdict"] == "consult"


async def test_an_edit_logged_without_ranges_could_be_anywhere_so_it_stays_100(coord: Coordinator) -> None:
    await coord.agents.register("alice")
    await coord.agents.register("bob")
    await coord.files.log_edit("alice", "auth.py", ranges=[LOGIN_LINES])
    await coord.files.log_edit("alice", "auth.py")
    await coord.analysis.refresh_symbols()
    result = await coord.intents.announce("bob", "logout flow", ["auth.py"], target_symbols=["logout"])
    assert impact_for(result, "alice")["score"] == 100


async def test_co_change_fires_on_a_pair_committed_together_8_of_10_times_and_not_on_an_unrelated_pair(
    coord: Coordinator, repo: Path
) -> None:
    for n in range(10):
        files = {"api.py": f"v{n}\n"}
        if n < 8:
            files["client.py"] = f"v{n}\n"
        commit(repo, files, f"api change {n}")
    for n in range(5):
        commit(repo, {"docs.md": f"v{n}\n"}, f"docs {n}")
    state = await coord.analysis.refresh_cochange()
    assert state["commits_indexed"] == 16
    for agent in ("alice", "bob", "carol"):
        await coord.agents.register(agent)
    await coord.intents.announce("alice", "client work", ["client.py"])
    await coord.intents.announce("carol", "docs work", ["docs.md"])
    result = await coord.intents.announce("bob", "api work", ["api.py"])
    impact = impact_for(result, "alice")
    assert impact["score"] == 60
    evidence = impact["evidence"][0]
    assert evidence["layer"] == "4"
    assert evidence["files"] == ["client.py"]
    assert evidence["cochange"] == [{"file": "api.py", "with": "client.py", "together": 8, "commits": 10, "p": 0.8}]
    assert "8 of 10 commits" in evidence["reason"]
    assert "carol" not in {i["agent_id"] for i in result["impacts"]}
    ready = await coord.readiness()
    assert ready["analysis"]["cochange"]["commits_indexed"] == 16
    assert ready["analysis"]["cochange"]["error"] is None


async def test_co_change_skips_lock_files_and_commits_touching_too_many_files(tmp_path: Path, repo: Path) -> None:
    init_repo(repo)
    for n in range(5):
        commit(repo, {"app.py": f"v{n}\n", "poetry.lock": f"v{n}\n", "dist/app.js": f"v{n}\n"})
    for n in range(4):
        commit(repo, {f"f{k}.py": f"v{n}\n" for k in range(4)} | {"app.py": f"w{n}\n"})
    async with driven_coordinator(tmp_path, repo, cochange_max_files=3) as c:
        state = await c.analysis.refresh_cochange()
        assert state == {"commits_indexed": 5, "pairs": 0}


async def test_a_rebase_intent_on_a_branch_where_another_agent_edits_scores_90(coord: Coordinator) -> None:
    await coord.agents.register("alice", branch="feature")
    await coord.agents.register("bob", branch="feature")
    await coord.agents.register("carol", branch="other")
    await coord.files.log_edit("alice", "auth.py", ranges=[LOGIN_LINES])
    await coord.files.log_edit("carol", "notes.txt")
    result = await coord.intents.announce("bob", "rebase onto main", [], kind="git_rebase")
    impact = impact_for(result, "alice")
    assert impact["score"] == 90
    evidence = impact["evidence"][0]
    assert (evidence["layer"], evidence["branch"], evidence["files"]) == ("5", "feature", ["auth.py"])
    assert result["verdict"] == "consult" and result["thread_id"]
    assert "carol" not in {i["agent_id"] for i in result["impacts"]}


async def test_a_git_intent_may_name_its_branch_and_editing_against_it_scores_90(coord: Coordinator) -> None:
    await coord.agents.register("alice", branch="feature")
    await coord.agents.register("dave")
    await coord.intents.announce("dave", "push feature", None, kind="git_push", branch="feature")  # type: ignore[arg-type]
    result = await coord.intents.announce("alice", "keep editing", ["auth.py"])
    impact = impact_for(result, "dave")
    assert impact["score"] == 90
    assert impact["evidence"][0]["operation"] == "git_push"


async def test_a_git_intent_on_a_branch_nobody_else_works_on_proceeds(coord: Coordinator) -> None:
    await coord.agents.register("alice", branch="feature")
    await coord.agents.register("dave", branch="solo")
    await coord.files.log_edit("alice", "auth.py")
    result = await coord.intents.announce("dave", "commit", [], kind="git_commit")
    assert (result["verdict"], result["impacts"]) == ("proceed", [])


needs_merge_tree = pytest.mark.skipif(
    not merge_tree_supported(), reason="git older than 2.38 has no `merge-tree --write-tree`; install a newer git"
)


def _worktrees(repo: Path, tmp_path: Path) -> tuple[Path, Path]:
    return add_worktree(repo, tmp_path / "wt-one", "one"), add_worktree(repo, tmp_path / "wt-two", "two")


def _edit_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[number - 1] = text + "\n"
    path.write_text("".join(lines))


@needs_merge_tree
async def test_two_worktrees_editing_the_same_lines_are_reported_with_the_hunk_before_commit(
    coord: Coordinator, repo: Path, tmp_path: Path
) -> None:
    one, two = _worktrees(repo, tmp_path)
    _edit_line(one / "notes.txt", 3, "line 3 by one")
    _edit_line(two / "notes.txt", 3, "line 3 by two")
    status_before = git(one, "status", "--porcelain")
    await coord.agents.register("alice", branch="one", worktree=str(one))
    await coord.agents.register("bob", branch="two", worktree=str(two))
    state = await coord.analysis.check_merges()
    assert (state["conflicts"], state["threads_opened"]) == (1, 1)
    # The user's index and worktree are untouched: the change is still unstaged, nothing committed.
    assert git(one, "status", "--porcelain") == status_before == "M notes.txt"
    assert git(repo, "rev-parse", "one") == git(repo, "rev-parse", "main")
    updates = await coord.updates.get_updates("bob")
    predicted = [e for e in updates["events"] if e["event"] == "merge.conflict_predicted"]
    assert len(predicted) == 1
    hunk = predicted[0]["hunks"][0]
    assert (hunk["file"], hunk["ours"], hunk["theirs"]) == ("notes.txt", ["line 3 by one"], ["line 3 by two"])
    assert any(e["event"] == "thread.opened" for e in updates["events"])
    result = await coord.intents.announce("alice", "more notes", ["notes.txt"])
    impact = impact_for(result, "bob")
    evidence = impact["evidence"][0]
    assert (impact["score"], evidence["layer"], evidence["files"]) == (90, "M", ["notes.txt"])
    assert evidence["hunks"][0]["ours"] == ["line 3 by one"]
    again = await coord.analysis.check_merges()
    assert (again["conflicts"], again["threads_opened"]) == (1, 0)  # one thread per conflict, not per sweep


@needs_merge_tree
async def test_two_worktrees_editing_different_regions_are_not_reported(
    coord: Coordinator, repo: Path, tmp_path: Path
) -> None:
    one, two = _worktrees(repo, tmp_path)
    _edit_line(one / "notes.txt", 2, "line 2 by one")
    _edit_line(two / "notes.txt", 9, "line 9 by two")
    await coord.agents.register("alice", branch="one", worktree=str(one))
    await coord.agents.register("bob", branch="two", worktree=str(two))
    state = await coord.analysis.check_merges()
    assert (state["pairs_checked"], state["conflicts"]) == (1, 0)
    result = await coord.intents.announce("alice", "more notes", ["notes.txt"])
    assert result["impacts"] == []


@needs_merge_tree
async def test_committed_branches_without_worktrees_are_checked_by_their_heads(coord: Coordinator, repo: Path) -> None:
    git(repo, "branch", "one")
    git(repo, "branch", "two")
    git(repo, "checkout", "-q", "one")
    _edit_line(repo / "notes.txt", 5, "five on one")
    git(repo, "commit", "-qam", "one")
    git(repo, "checkout", "-q", "two")
    _edit_line(repo / "notes.txt", 5, "five on two")
    git(repo, "commit", "-qam", "two")
    await coord.agents.register("alice", branch="one")
    await coord.agents.register("bob", branch="two")
    state = await coord.analysis.check_merges()
    assert state["conflicts"] == 1


async def test_readyz_reports_the_analysis_error_when_the_repo_is_not_a_git_repository(
    tmp_path: Path, repo: Path
) -> None:
    async with driven_coordinator(tmp_path, repo) as c:
        with pytest.raises(GitError):
            await c.analysis.refresh_cochange()
        state = (await c.readiness())["analysis"]
        assert "not a git repository" in state["cochange"]["error"]
        assert state["ok"] is True  # the server still serves; only layer 4 has nothing to say


async def test_an_in_flight_edit_with_planned_ranges_in_another_function_scores_50(coord: Coordinator) -> None:
    await coord.agents.register("alice")
    await coord.agents.register("bob")
    await coord.files.start_editing("alice", "auth.py", ranges=[LOGIN_LINES])
    await coord.analysis.refresh_symbols()
    apart = await coord.intents.announce("bob", "logout flow", ["auth.py"], target_symbols=["logout"])
    assert impact_for(apart, "alice")["score"] == 50, apart
    same = await coord.intents.check_conflicts("bob", ["auth.py"], target_symbols=["login"])
    assert impact_for(same, "alice")["score"] == 100
