"""Hook file paths map to repo paths through linked worktrees, symlinks and a --repo below the git top,
as the file the operating system opens."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from huddle.errors import InvalidInput
from huddle.service.coordinator import Coordinator
from huddle.service.hook_paths import HookPaths
from huddle.service.hooks import ClaudeHookService


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a", *args], check=True)


async def test_paths_in_a_worktree_of_a_monorepo_service_map_to_the_service_root(tmp_path: Path) -> None:
    mono = tmp_path / "mono"
    (mono / "svc" / "src").mkdir(parents=True)
    (mono / "svc" / "src" / "a.py").write_text("x\n")
    (mono / "other.py").write_text("y\n")
    git(mono, "init", "-q", "-b", "main")
    git(mono, "add", "-A")
    git(mono, "commit", "-qm", "base")
    nested = mono / ".claude" / "worktrees" / "bob"  # where Claude Code puts its own worktrees
    git(mono, "worktree", "add", "-q", str(nested), "-b", "bob")
    (tmp_path / "link").symlink_to(mono / "svc")
    mapper = HookPaths(str(mono / "svc"))

    assert await mapper.relative(str(nested / "svc" / "src" / "a.py"), str(nested)) == "src/a.py"
    assert await mapper.relative(str(mono / "svc" / "src" / "a.py"), str(nested)) == "src/a.py"
    assert await mapper.relative(str(tmp_path / "link" / "src" / "a.py"), str(tmp_path / "link")) == "src/a.py"
    assert await mapper.relative("src/a.py", str(mono / "svc")) == "src/a.py"
    for outside in (nested / "other.py", mono / "other.py", tmp_path / "elsewhere.py"):
        with pytest.raises(InvalidInput):
            await mapper.relative(str(outside), str(nested))


async def test_a_dot_dot_after_a_symlink_is_the_file_the_system_opens(tmp_path: Path) -> None:
    """`sublink/../z.py` is the parent of the link's target, not `z.py` as the spelling suggests."""
    repo = tmp_path / "repo"
    (repo / "deep" / "sub").mkdir(parents=True)
    (repo / "deep" / "z.py").write_text("")
    (repo / "sublink").symlink_to("deep/sub")
    mapper = HookPaths(str(repo))
    assert await mapper.relative(f"{repo}/sublink/../z.py", str(repo)) == "deep/z.py"
    assert await mapper.relative("sublink/../z.py", str(repo)) == "deep/z.py"
    assert await mapper.relative("sublink/../z.py", None) == "deep/z.py"


async def test_a_file_reached_through_a_link_out_of_the_repository_keeps_its_name_through_the_link(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f.py").write_text("")
    (repo / "ext").symlink_to(tmp_path / "outside")
    (tmp_path / "repolink").symlink_to(repo)
    mapper = HookPaths(str(tmp_path / "repolink"))
    for raw in (f"{repo}/ext/f.py", f"{tmp_path}/repolink/ext/f.py", "ext/f.py"):
        assert await mapper.relative(raw, None) == "ext/f.py", raw
    # `..` right after that link leaves the repository: refused, not collapsed into it.
    with pytest.raises(InvalidInput, match="symlink 'ext'"):
        await mapper.relative(f"{repo}/ext/../x.py", None)
    with pytest.raises(InvalidInput, match="outside the repository"):
        await mapper.relative(str(tmp_path / "outside" / "f.py"), None)


def edit(path: str, cwd: str) -> dict[str, Any]:
    return {"tool_name": "Edit", "tool_input": {"file_path": path}, "cwd": cwd}


async def test_the_edit_guard_sees_one_file_through_two_links_out_of_the_repository_and_passes_loops(
    coordinator: Coordinator, repo: Path
) -> None:
    outside = repo.parent / "outside"
    outside.mkdir()
    (outside / "f.py").write_text("")
    (repo / "a").symlink_to(outside)
    (repo / "b").symlink_to(outside)
    (repo / "loop").symlink_to("loop")
    hooks = ClaudeHookService(coordinator)
    assert await hooks.repo_path(f"{repo}/b/f.py", edit("", str(repo))) == "../outside/f.py"
    assert await hooks.repo_path(f"{repo}/loop/f.py", edit("", str(repo))) is None  # names no file
    for name in ("alice", "bob"):
        await coordinator.agents.register(name)
    assert (await coordinator.locks.acquire("alice", "a/"))["granted"]
    # Through the other link, or by the file's real path outside the repository: alice's file.
    for raw, cwd in ((f"{repo}/b/f.py", repo), (str(outside / "f.py"), repo), ("f.py", outside)):
        answer = await hooks.pre_tool_use("bob", edit(raw, str(cwd)), news_waiting=False)
        decision = answer["hookSpecificOutput"]
        assert decision["permissionDecision"] == "deny" and "alice" in decision["permissionDecisionReason"], raw
    # A file outside that no link leads to is none of Huddle's business.
    (repo.parent / "elsewhere.py").write_text("")
    assert await hooks.repo_path(str(repo.parent / "elsewhere.py"), edit("", str(repo))) is None
