"""One name per file: paths that reach a file through a symlink inside the repository are rewritten
to the file's real path, so `liblink/x.py` and `lib/x.py` are one file for locks, intents and edits.

A symlink that leads out of the repository is left as named (Huddle coordinates the repository
only). A path that does not exist yet is resolved as far as it exists: `liblink/new.py` is
`lib/new.py`. Glob segments are never resolved, only the literal directories before them.
Answers are remembered for a few seconds: `realpath` costs a stat per segment, and links rarely move.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from huddle.domain.locks import is_glob

CACHE_S = 5.0
CACHE_SIZE = 10_000


class RepoAliases:
    def __init__(self, root: str, clock: Callable[[], float] = time.monotonic):
        self.root = os.path.realpath(root)
        self.clock = clock
        self._cache: dict[str, tuple[str, float]] = {}

    def canonical(self, relative: str) -> str:
        """`relative` (normalised, repo-relative) with symlinks inside the repository resolved."""
        directory = relative.endswith("/")
        segments = relative.rstrip("/").split("/")
        literal = 0
        while literal < len(segments) and not is_glob(segments[literal]):
            literal += 1
        if literal == 0:
            return relative
        head = self._resolve("/".join(segments[:literal]))
        out = "/".join([head, *segments[literal:]])
        return out + "/" if directory else out

    def _resolve(self, head: str) -> str:
        now = self.clock()
        cached = self._cache.get(head)
        if cached is not None and now - cached[1] < CACHE_S:
            return cached[0]
        real = os.path.realpath(os.path.join(self.root, head))
        resolved = real[len(self.root) + 1 :] if real.startswith(self.root + os.sep) else head
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[head] = (resolved, now)
        return resolved
