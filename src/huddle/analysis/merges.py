"""Predicted merge conflicts (SPEC F-17) with `git merge-tree --write-tree` (git ≥ 2.38).

A working tree is snapshotted into a dangling commit (its HEAD as parent) through a temporary
index file: the user's index, worktree and refs are never written, only the object store gains
blobs and a commit that `git gc` prunes later. Two such commits merged in memory tell whether the
two agents' work, as it is now, would conflict — and where — before either side commits.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huddle.analysis.git import GitError, git, text, version

MERGE_TREE_SINCE = (2, 38)
MAX_HUNK_LINES = 20
MAX_HUNKS = 50


def merge_tree_supported() -> bool:
    try:
        return version()[:2] >= MERGE_TREE_SINCE
    except (OSError, ValueError, IndexError):
        return False


@dataclass(frozen=True)
class Prediction:
    files: list[str]
    hunks: list[dict[str, Any]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        """The conflicted files: a thread opens when they change, not on every keystroke in a hunk."""
        return "\n".join(self.files)


def same_repository(repo: str, worktree: str) -> bool:
    """Whether `worktree` is a checkout of the repository at `repo` (sharing its object store)."""
    try:
        mine = Path(text(repo, ["rev-parse", "--git-common-dir"]))
        theirs = Path(text(worktree, ["rev-parse", "--git-common-dir"]))
    except (GitError, OSError):
        return False
    return (Path(repo) / mine).resolve() == (Path(worktree) / theirs).resolve()


def branch_head(repo: str, branch: str) -> str | None:
    try:
        return text(repo, ["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"])
    except GitError:
        return None


def snapshot(worktree: str) -> str:
    """A commit holding the working tree as it is now (tracked and untracked, minus ignored files).

    Returns HEAD itself when nothing changed. The real index is copied (read only) so git reuses
    its stat cache instead of hashing every file again.
    """
    head = text(worktree, ["rev-parse", "--verify", "HEAD^{commit}"])
    index = Path(worktree) / text(worktree, ["rev-parse", "--git-path", "index"])
    with tempfile.TemporaryDirectory(prefix="huddle-index-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        if index.is_file():
            shutil.copyfile(index, env["GIT_INDEX_FILE"])
        else:
            git(worktree, ["read-tree", head], env=env)
        git(worktree, ["add", "--all", "--", ":/"], env=env)
        tree = text(worktree, ["write-tree"], env=env)
    if tree == text(worktree, ["rev-parse", f"{head}^{{tree}}"]):
        return head
    return text(worktree, ["commit-tree", tree, "-p", head, "-m", "huddle: working tree snapshot"])


def predict(repo: str, ours: str, theirs: str) -> Prediction | None:
    """The textual conflicts of merging commit `theirs` into `ours`, or None when it merges cleanly."""
    proc = git(repo, ["merge-tree", "--write-tree", "--name-only", "--messages", ours, theirs], ok_codes=(0, 1))
    if proc.returncode == 0:
        return None
    out = proc.stdout.decode("utf-8", "replace")
    head, _, messages = out.partition("\n\n")
    lines = head.splitlines()
    tree, files = lines[0], sorted(set(lines[1:]))
    hunks: list[dict[str, Any]] = []
    for path in files:
        try:
            merged = git(repo, ["cat-file", "blob", f"{tree}:{path}"]).stdout.decode("utf-8", "replace")
        except GitError:
            continue  # deleted on one side: the messages say so
        hunks += conflict_hunks(path, merged)
    return Prediction(files, hunks[:MAX_HUNKS], [m for m in messages.splitlines() if m.strip()])


def conflict_hunks(path: str, merged: str) -> list[dict[str, Any]]:
    """The conflict-marker blocks of a merged file: where each starts and both sides' lines."""
    hunks: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    side = ""
    for number, line in enumerate(merged.splitlines(), start=1):
        if line.startswith("<<<<<<< "):
            current, side = {"file": path, "line": number, "ours": [], "theirs": []}, "ours"
        elif current is not None and line.startswith("||||||| "):
            side = "base"
        elif current is not None and line == "=======":
            side = "theirs"
        elif current is not None and line.startswith(">>>>>>> "):
            hunks.append(current)
            current = None
        elif current is not None and side in ("ours", "theirs") and len(current[side]) < MAX_HUNK_LINES:
            current[side].append(line)
    return hunks
