"""Git co-change (layer 4, SPEC F-16): P(B | A) = commits touching A and B / commits touching A.

History comes from one bounded `git log --name-only`; huge commits (mass renames, formatting) and
lock files or generated directories are left out, since they say nothing about coupling.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import PurePosixPath

from huddle.analysis.git import GitError, git, names

COMMIT_MARK = b"huddle-commit\x01"  # starts each commit in the log output; no real file name
MIN_SUPPORT = 3
KEEP_ABOVE = 0.2  # layer 4 fires above 0.2, so weaker pairs are not stored
LOCK_FILES = frozenset(
    {
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lockb",
        "Cargo.lock",
        "poetry.lock",
        "uv.lock",
        "Pipfile.lock",
        "Gemfile.lock",
        "composer.lock",
        "go.sum",
        "mix.lock",
        "pubspec.lock",
        "Podfile.lock",
        "flake.lock",
    }
)
GENERATED_DIRS = frozenset(
    {"node_modules", "dist", "build", "vendor", "target", ".venv", "venv", "__pycache__", "generated", ".next", "out"}
)


def denied(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return not parts or parts[-1] in LOCK_FILES or any(p in GENERATED_DIRS for p in parts[:-1])


def read_history(repo: str, *, max_commits: int, days: float, max_files: int) -> list[list[str]]:
    """Files per commit, newest first, within the bounds; merges and oversized commits skipped."""
    proc = git(
        repo,
        [
            "log",
            "--no-merges",
            "--no-renames",
            "--name-only",
            "-z",  # names NUL-terminated and unquoted: tabs, quotes and newlines in names survive
            "--format=tformat:huddle-commit%x01",
            f"--max-count={max_commits}",
            f"--since={int(days * 86400)}.seconds.ago",
            "--relative",  # paths relative to the coordinated directory, even inside a larger repo
            "--",
            ".",
        ],
        ok_codes=(0, 128),
    )
    if proc.returncode == 128:
        message = proc.stderr.decode("utf-8", "replace").strip()
        if "does not have any commits" in message:
            return []  # a fresh repository: no history yet is not an error
        raise GitError(f"git log: {message}")
    # -z output: MARK NUL, then "\n" and each changed file NUL-terminated, then the next MARK.
    per_commit: list[list[bytes]] = []
    for token in proc.stdout.split(b"\0"):
        if token == COMMIT_MARK:
            per_commit.append([])
        elif per_commit and token:
            per_commit[-1].append(token.removeprefix(b"\n") if not per_commit[-1] else token)
    commits = []
    for raw in per_commit:
        files = sorted({f for f in names(b"\0".join(raw)) if not denied(f)})
        if 0 < len(files) <= max_files:
            commits.append(files)
    return commits


@dataclass(frozen=True)
class Pair:
    path_a: str
    path_b: str
    together: int
    commits: int  # commits touching path_a

    @property
    def probability(self) -> float:
        return self.together / self.commits


def build_index(commits: Iterable[Sequence[str]], *, min_support: int = MIN_SUPPORT) -> list[Pair]:
    """Both directions of every pair seen together at least `min_support` times with P > 0.2."""
    per_file: Counter[str] = Counter()
    together: Counter[tuple[str, str]] = Counter()
    for files in commits:
        per_file.update(files)
        together.update(combinations(files, 2))  # files are sorted, so (a, b) has a < b
    pairs = []
    for (a, b), n in together.items():
        if n < min_support:
            continue
        for x, y in ((a, b), (b, a)):
            if n / per_file[x] > KEEP_ABOVE:
                pairs.append(Pair(x, y, n, per_file[x]))
    return pairs
