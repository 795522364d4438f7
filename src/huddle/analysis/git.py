"""Running git for the analysis loops: bounded, quiet, never touching the user's index or worktree."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

GIT_TIMEOUT_S = 60.0
# Fixed identity and no user config, so commit-tree works on any machine and hooks never run.
_ENV = {
    "GIT_AUTHOR_NAME": "huddle",
    "GIT_AUTHOR_EMAIL": "huddle@localhost",
    "GIT_COMMITTER_NAME": "huddle",
    "GIT_COMMITTER_EMAIL": "huddle@localhost",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_OPTIONAL_LOCKS": "0",  # status/add must not take the user's index.lock
}


class GitError(RuntimeError):
    """git failed, or the path is not a repository; the message is git's own."""


def git(
    cwd: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    ok_codes: tuple[int, ...] = (0,),
    timeout: float = GIT_TIMEOUT_S,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Runs `git args` in `cwd` and returns the process; raises GitError on other exit codes."""
    try:
        proc = subprocess.run(
            ["git", "-c", "core.quotepath=off", *args],
            cwd=cwd,
            env={**os.environ, **_ENV, **(env or {})},
            capture_output=True,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {args[0]} failed: {exc}") from None
    if proc.returncode not in ok_codes:
        message = proc.stderr.decode("utf-8", "replace").strip() or f"exit code {proc.returncode}"
        raise GitError(f"git {' '.join(args[:2])}: {message}")
    return proc


def names(output: bytes) -> list[str]:
    """File names from `-z` output: split on NUL, so tabs, quotes and newlines in names survive.

    A name that is not valid UTF-8 is skipped: it could not round-trip through JSON, paths
    validation or the database, and one such file must not break a whole scan.
    """
    found = []
    for raw in output.split(b"\0"):
        if not raw:
            continue
        try:
            found.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return found


def text(cwd: str, args: Sequence[str], **kwargs: object) -> str:
    return git(cwd, args, **kwargs).stdout.decode("utf-8", "replace").strip()  # type: ignore[arg-type]


def version() -> tuple[int, ...]:
    """git's version as numbers, e.g. (2, 39, 5)."""
    out = subprocess.run(["git", "--version"], capture_output=True, check=True).stdout.decode()
    return tuple(int(p) for p in out.split()[2].split(".")[:3] if p.isdigit())


def head_or_empty(cwd: str) -> str:
    """The commit HEAD points at, or "" outside a repository or before the first commit."""
    try:
        return text(cwd, ["rev-parse", "--verify", "--quiet", "HEAD"])
    except GitError:
        return ""
