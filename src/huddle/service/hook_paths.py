"""Where a Claude Code hook's file path lies in the coordinated repository.

Agents often work in linked git worktrees of the repository (one checkout per agent) or reach it
through a symlinked path. Their hooks send absolute paths under *their* checkout, which is not
under the server's `--repo`. The path is mapped through the session's `cwd`: its git top level,
when that checkout shares the repository's common git directory, is the root the path is relative
to. Symlinks are resolved on both sides: a path is taken by its real path first. The git answers
are cached per directory, so only the first hook call of a session pays for a `git rev-parse`.
"""

from __future__ import annotations

import asyncio
import os
import posixpath

from huddle.domain import paths
from huddle.domain.validate import encodable
from huddle.errors import InvalidInput

GIT_TIMEOUT_S = 1.0
CACHE_LIMIT = 512


class HookPaths:
    """Maps hook paths to repo-relative paths; one per server (holds the per-directory git cache)."""

    def __init__(self, repo_root: str):
        self.repo_root = repo_root
        self.real_root = os.path.realpath(repo_root)
        self._checkouts: dict[str, tuple[str, str] | None] = {}
        self._repo: tuple[str, str] | bool | None = False  # False: not looked up yet

    async def relative(self, raw: str, cwd: str | None, field: str = "tool_input.file_path") -> str:
        """The repo-relative path of `raw`; InvalidInput when it is outside the repository and its checkouts.

        The file a hook names is the one the operating system opens, so an absolute path is taken
        by its real path first: `sublink/../z.py` is where the kernel goes (the parent of the link's
        target), not what the spelling suggests. Only a file whose real path is outside the
        repository — reached through a symlink that leads out of it — keeps its name through the
        link, which the services then resolve (service/repo_aliases.py).
        """
        if not isinstance(raw, str):
            raise InvalidInput(f"{field} must be a string path, got {type(raw).__name__}", field=field)
        text = self.absolute(raw, cwd)
        if text is None:
            return paths.normalize_path(raw, self.repo_root, field=field, is_link=self._is_link)
        encodable(text, field)  # a NUL byte would make realpath raise
        checkout = await self._checkout(cwd) if cwd else None
        real = os.path.realpath(text)
        repo = await self._repo_checkout()
        if checkout is not None and repo is not None and checkout[1] == repo[1]:
            top = checkout[0]
            # --repo may be a subdirectory of its git work tree (a monorepo's service): keep that part.
            inner = os.path.relpath(self.real_root, repo[0])
            rel = real[len(top) :].lstrip("/") if real.startswith(top + "/") else None
            if rel is not None and inner != ".":
                rel = rel[len(inner) + 1 :] if rel.startswith(inner + "/") else None
            if rel:
                return paths.normalize_path(rel, self.repo_root, field=field)
        if real.startswith(self.real_root + "/"):
            return paths.normalize_path(real, self.real_root, field=field)
        # Through a symlink that leads out of the repository (the repository named directly or
        # through a symlinked root); a `..` after such a link is refused, as for every tool.
        try:
            return paths.normalize_path(text, self.repo_root, field=field, is_link=self._is_link)
        except InvalidInput:
            return paths.normalize_path(text, self.real_root, field=field, is_link=self._is_link)

    def absolute(self, raw: str, cwd: str | None) -> str | None:
        """`raw` as an absolute POSIX path: relative ones are relative to the session's directory, else
        to the repository. None for what cannot be one (empty, a Windows path)."""
        text = raw.strip() if isinstance(raw, str) else ""
        if text and not text.startswith("/") and "\\" not in text:
            text = posixpath.join(cwd or self.repo_root, text)
        return text if text.startswith("/") else None

    def _is_link(self, relative: str) -> bool:
        return os.path.islink(os.path.join(self.real_root, relative))

    async def _checkout(self, cwd: str) -> tuple[str, str] | None:
        if cwd not in self._checkouts:
            if len(self._checkouts) >= CACHE_LIMIT:
                self._checkouts.clear()
            self._checkouts[cwd] = await _rev_parse(cwd)
        return self._checkouts[cwd]

    async def _repo_checkout(self) -> tuple[str, str] | None:
        if self._repo is False:
            self._repo = await _rev_parse(self.repo_root)
        return self._repo if isinstance(self._repo, tuple) else None


async def git_output(directory: str, *args: str) -> str | None:
    """What `git -C directory ARGS` prints, within GIT_TIMEOUT_S; None when git fails or is slow."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "git", "-C", directory, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), GIT_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        return None
    return out.decode(errors="replace") if proc.returncode == 0 else None


async def _rev_parse(directory: str) -> tuple[str, str] | None:
    """(real top level, real common git dir) of the checkout holding `directory`; None if not a git checkout."""
    if not os.path.isdir(directory):
        return None
    out = await git_output(directory, "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir")
    lines = (out or "").splitlines()
    if len(lines) != 2:
        return None
    return os.path.realpath(lines[0]), os.path.realpath(lines[1])
