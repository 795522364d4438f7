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

from huddle.analysis.git import GitError, git, names, text, version

MERGE_TREE_SINCE = (2, 38)
MAX_HUNK_LINES = 20
MAX_HUNKS = 50
MAX_UNTRACKED_BYTES = 1_000_000  # bigger untracked files stay out of snapshots (and the object store)


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
    """A commit holding the working tree as it is now: tracked changes, plus untracked files that
    are not ignored and at most MAX_UNTRACKED_BYTES (a stray dump or build artifact is not copied
    into the object store on every sweep).

    Returns HEAD itself when nothing changed. The real index is copied (read only) so git reuses
    its stat cache instead of hashing every file again. `worktree` may be a subdirectory of it.
    """
    top = text(worktree, ["rev-parse", "--show-toplevel"])
    head = text(top, ["rev-parse", "--verify", "HEAD^{commit}"])
    index = Path(top) / text(top, ["rev-parse", "--git-path", "index"])
    with tempfile.TemporaryDirectory(prefix="huddle-index-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        if index.is_file():
            shutil.copyfile(index, env["GIT_INDEX_FILE"])
        else:
            git(top, ["read-tree", head], env=env)
        git(top, ["add", "--update", "--", "."], env=env)
        untracked = names(git(top, ["ls-files", "-z", "--others", "--exclude-standard"], env=env).stdout)
        small = [p for p in untracked if _small_enough(os.path.join(top, p))]
        if small:
            git(
                top,
                ["add", "--pathspec-from-file=-", "--pathspec-file-nul"],
                env={**env, "GIT_LITERAL_PATHSPECS": "1"},  # names are names, not patterns
                input="\0".join(small).encode(),
            )
        tree = text(top, ["write-tree"], env=env)
    if tree == text(top, ["rev-parse", f"{head}^{{tree}}"]):
        return head
    return text(top, ["commit-tree", tree, "-p", head, "-m", "huddle: working tree snapshot"])


def _small_enough(path: str) -> bool:
    try:
        return os.lstat(path).st_size <= MAX_UNTRACKED_BYTES  # a symlink is stored as its target's name
    except OSError:
        return False


def predict(repo: str, ours: str, theirs: str) -> Prediction | None:
    """The textual conflicts of merging commit `theirs` into `ours`, or None when it merges cleanly."""
    proc = git(repo, ["merge-tree", "--write-tree", "--name-only", "--messages", "-z", ours, theirs], ok_codes=(0, 1))
    if proc.returncode == 0:
        return None
    tree, files, messages = _parse_merge_tree(proc.stdout)
    hunks: list[dict[str, Any]] = []
    for path in files:
        try:
            merged = git(repo, ["cat-file", "blob", f"{tree}:{path}"]).stdout.decode("utf-8", "replace")
        except GitError:
            continue  # deleted on one side: the messages say so
        hunks += conflict_hunks(path, merged)
    return Prediction(files, hunks[:MAX_HUNKS], messages)


def _parse_merge_tree(out: bytes) -> tuple[str, list[str], list[str]]:
    """`merge-tree -z` output: tree NUL, conflicted names NUL-terminated, NUL, then per message
    `<n> NUL <n paths NUL> <type> NUL <text> NUL` (names unquoted, whatever they contain)."""
    tokens = out.split(b"\0")
    tree = tokens[0].decode()
    end = tokens.index(b"", 1) if b"" in tokens[1:] else len(tokens)
    files = sorted(set(names(b"\0".join(tokens[1:end]))))
    messages, i = [], end + 1
    while i < len(tokens) and tokens[i].isdigit():
        n = int(tokens[i])
        if i + n + 2 < len(tokens):
            messages.append(tokens[i + n + 2].decode("utf-8", "replace").strip())
        i += n + 3
    return tree, files, [m for m in messages if m]


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
