"""Claude Code hooks for agents that reach the repository through a linked git worktree or a symlink.

One checkout per agent is the usual way to run several agents on one repository; their hooks send
absolute paths under their own checkout, which must count as the same repository's files.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import ServerProcess
from huddle.domain.claude_hooks import derived_agent_id


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def checkouts(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path, Path, Path]]:
    """A server on a git repository, a linked worktree of it and a symlink to it."""
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "m.py").write_text("x = 1\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "add", "-A")
    git(repo, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "base")
    worktree = tmp_path / "wt-bob"
    git(repo, "worktree", "add", "-q", str(worktree), "-b", "bob")
    link = tmp_path / "repolink"
    link.symlink_to(repo)
    server = ServerProcess(tmp_path / "data", repo).start()
    try:
        yield server, repo, worktree, link
    finally:
        server.stop()


def hook(server: ServerProcess, event: str, session: str, cwd: Path, **fields: Any) -> dict[str, Any]:
    body = {"session_id": session, "cwd": str(cwd), "hook_event_name": event, **fields}
    response = httpx.post(f"{server.url}/hooks/claude/{event}", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def edit(server: ServerProcess, session: str, cwd: Path, file: Path) -> str:
    tool = {"tool_name": "Edit", "tool_input": {"file_path": str(file), "old_string": "x", "new_string": "y"}}
    out = hook(server, "PreToolUse", session, cwd, **tool)
    return str(out.get("hookSpecificOutput", {}).get("permissionDecision", "allow"))


def test_a_lease_is_enforced_in_a_linked_worktree_and_through_a_symlink(checkouts) -> None:
    server, repo, worktree, link = checkouts
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    hook(server, "SessionStart", alice, repo, source="startup")
    hook(server, "SessionStart", bob, worktree, source="startup")
    lease = {"agent_id": derived_agent_id(alice), "path": "src/", "mode": "exclusive"}
    assert httpx.post(f"{server.url}/api/v1/tools/acquire_lock", json=lease).json()["result"]["granted"]
    assert edit(server, bob, worktree, worktree / "src" / "m.py") == "deny"
    assert edit(server, bob, link, link / "src" / "m.py") == "deny"
    assert edit(server, bob, worktree, worktree / "README.md") == "allow"
    # The in-flight mark and the edit log name the repository path, whatever checkout it came from.
    tool = {"tool_name": "Edit", "tool_input": {"file_path": str(worktree / "README.md")}}
    hook(server, "PostToolUse", bob, worktree, **tool)
    events = httpx.post(f"{server.url}/api/v1/tools/get_updates", json={"agent_id": derived_agent_id(bob), "cursor": 0})
    edited = [e for e in events.json()["result"]["events"] if e["event"] == "file.edited"]
    assert [e["path"] for e in edited] == ["README.md"]
    # A directory outside every checkout of the repository is still none of Huddle's business.
    assert edit(server, bob, repo.parent, repo.parent / "elsewhere.py") == "allow"
