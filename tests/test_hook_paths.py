"""Hook file paths map to repo paths through linked worktrees, symlinks and a --repo below the git top."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from huddle.errors import InvalidInput
from huddle.service.hook_paths import HookPaths


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
