"""Real git repositories for tests: init, scripted commits, worktrees."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from helpers import make_coordinator
from huddle.service.coordinator import Coordinator

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=repo, env=ENV, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def init_repo(repo: Path) -> Path:
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    return repo


def commit(repo: Path, files: dict[str, str], message: str = "change") -> str:
    """Writes `files` (path → content) and commits them; returns the commit id."""
    for path, content in files.items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    git(repo, "add", "--", *files)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def add_worktree(repo: Path, path: Path, branch: str) -> Path:
    git(repo, "worktree", "add", "-q", "-b", branch, str(path))
    return path


@contextlib.asynccontextmanager
async def driven_coordinator(tmp_path: Path, repo: Path, **overrides: Any) -> AsyncIterator[Coordinator]:
    """A started coordinator whose analysis periods are long: only the test drives the jobs."""
    settings = {"analysis_interval_s": 3600, "cochange_refresh_s": 3600, "merge_check_interval_s": 3600}
    c = make_coordinator(tmp_path, repo, **(settings | overrides))
    await c.start()
    try:
        yield c
    finally:
        await c.stop()
