"""One name per file: paths that reach a file through a symlink inside the repository are rewritten
to the file's real path, so `liblink/x.py` and `lib/x.py` are one file for locks, intents and edits.

The rules (docs/coordination.md):
- A symlink that leads out of the repository is left as named (Huddle coordinates the repository
  only). A path that does not exist yet is resolved as far as it exists: `liblink/new.py` is
  `lib/new.py`.
- A name that resolves to the repository root, or to a directory that contains it
  (`rootlink/` → `.`), is refused: it would be the whole repository under another name.
- A `..` right after a symlink is refused by the path normaliser (domain/paths.py), which asks
  `is_link` here.
- A glob is resolved in its literal directories before the first wildcard; a glob that could match
  a symlink (or anything below one) at or after its first wildcard is refused, because the lease
  would then cover a file under a name other than its real one. Name the real directory instead.
Answers are remembered for a few seconds: `realpath` costs a stat per segment, and links rarely move.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from huddle.domain.locks import PatternError, compile_pattern, is_glob, overlaps
from huddle.errors import InvalidInput

CACHE_S = 5.0
CACHE_SIZE = 10_000
# Walking below a glob's anchor for symlinks stops after this many entries; past it the glob is
# refused (narrow it), since an unchecked symlink could alias a leased file.
MAX_GLOB_SCAN = 50_000


class RepoAliases:
    def __init__(self, root: str, clock: Callable[[], float] = time.monotonic):
        self.root = os.path.realpath(root)
        self.clock = clock
        self._cache: dict[str, tuple[str, float]] = {}
        self._links: dict[str, tuple[tuple[str, ...] | None, float]] = {}

    def is_link(self, relative: str) -> bool:
        """True when the repo-relative name is a symlink (the name itself, not its parents)."""
        return os.path.islink(os.path.join(self.root, relative))

    def canonical(self, relative: str, field: str = "path") -> str:
        """`relative` (normalised, repo-relative) with symlinks inside the repository resolved."""
        directory = relative.endswith("/")
        segments = relative.rstrip("/").split("/")
        literal = 0
        while literal < len(segments) and not is_glob(segments[literal]):
            literal += 1
        if literal == 0:
            out = relative
        else:
            head = self._resolve("/".join(segments[:literal]), relative, field)
            out = "/".join([head, *segments[literal:]])
            out = out + "/" if directory else out
        if literal < len(segments):
            self._refuse_glob_through_links(out, relative, field)
        return out

    def _resolve(self, head: str, raw: str, field: str) -> str:
        now = self.clock()
        cached = self._cache.get(head)
        if cached is not None and now - cached[1] < CACHE_S:
            resolved = cached[0]
        else:
            real = os.path.realpath(os.path.join(self.root, head))
            if real == self.root or self.root.startswith(real.rstrip(os.sep) + os.sep):
                resolved = ""  # the repository itself, or a directory holding it
            elif real.startswith(self.root + os.sep):
                resolved = real[len(self.root) + 1 :]
            else:
                resolved = head
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[head] = (resolved, now)
        if not resolved:
            raise InvalidInput(
                f"{field} {raw!r} leads through a symlink to the repository root or above it, so it "
                "would name the whole repository under another name; name the files or directories "
                "inside the repository by their real paths",
                field=field,
            )
        return resolved

    def _refuse_glob_through_links(self, glob: str, raw: str, field: str) -> None:
        try:
            pattern = compile_pattern(glob)
        except PatternError:
            return  # the lock service reports the bad glob itself
        links = self._links_below(pattern.anchor)
        if links is None:
            raise InvalidInput(
                f"{field} {raw!r}: the directory {pattern.anchor or './'} holds more than {MAX_GLOB_SCAN} "
                "entries to check for symlinks; start the glob deeper (e.g. src/auth/*.py)",
                field=field,
            )
        for link in links:
            if overlaps(pattern, compile_pattern(link, literal=True)) or overlaps(
                pattern, compile_pattern(link + "/", literal=True)
            ):
                raise InvalidInput(
                    f"{field} {raw!r} can match through the symlink {link!r}, so it would lease files "
                    "under names other than their real ones; name the real directory instead, or a "
                    "glob that does not match the link",
                    field=field,
                )

    def _links_below(self, anchor: str) -> tuple[str, ...] | None:
        """Every symlink below `anchor` (repo-relative names), None when there are too many entries."""
        now = self.clock()
        cached = self._links.get(anchor)
        if cached is not None and now - cached[1] < CACHE_S:
            return cached[0]
        found: list[str] | None = []
        seen = 0
        start = os.path.join(self.root, anchor)
        for directory, dirnames, filenames in os.walk(start):
            # .git is never a coordination target and holds no repository-file symlinks.
            dirnames[:] = [d for d in dirnames if not (directory == self.root and d == ".git")]
            seen += len(dirnames) + len(filenames)
            if seen > MAX_GLOB_SCAN:
                found = None
                break
            base = os.path.relpath(directory, self.root)
            for name in (*dirnames, *filenames):
                full = os.path.join(directory, name)
                if os.path.islink(full):
                    assert found is not None
                    found.append(name if base == "." else f"{base}/{name}")
        result = None if found is None else tuple(found)
        if len(self._links) >= CACHE_SIZE:
            self._links.clear()
        self._links[anchor] = (result, now)
        return result
