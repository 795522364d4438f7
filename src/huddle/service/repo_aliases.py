"""One name per file: a path that reaches a file through a symlink is rewritten to the file's real
path, so `liblink/x.py` and `lib/x.py` are one file for locks, intents and edits.

The rules (docs/coordination.md, "Symlinks"):
- Inside the repository a name becomes the real repo-relative path. A path that does not exist yet
  is resolved as far as it exists: `liblink/new.py` is `lib/new.py`.
- A name that leads out of the repository becomes the real path *relative to the repository root*
  (`ext/f.py` with `ext → /tmp/x` and the repository at /work/repo is `../../tmp/x/f.py`). Two links
  to one outside directory (or one inside the other's target) then give one name per file, and
  their leases meet like any others. Sent back as input (or as the absolute real path), such a
  name is accepted while a symlink in the repository leads to it or above it (`outside`); any other
  path that leaves the repository is still refused.
- A name that resolves to the repository root, or to a directory that contains it
  (`rootlink/` → `.`), is refused: it would be the whole repository under another name.
- A name that runs into a symlink loop (`a → b → a`, `a → a/..`, or more links in a row than the
  kernel follows) names no file; it is refused with the link at fault, and never followed.
- A `..` right after a symlink is refused by the path normaliser (domain/paths.py), which asks
  `is_link` here.
- A glob is resolved in its literal directories before the first wildcard; a glob that could match
  a symlink (or anything below one) at or after its first wildcard is refused, because the lease
  would then cover a file under a name other than its real one. Name the real directory instead.
- A directory lease covers the files whose real names lie below it; `links_leaving` finds the
  symlinks below a directory that lead out of it, which the lock service refuses (locks.py says why).
Answers are remembered for a few seconds: `realpath` costs a stat per segment, and links rarely move.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable

from huddle.domain.locks import PatternError, compile_pattern, is_glob, overlaps
from huddle.errors import InvalidInput

CACHE_S = 5.0
CACHE_SIZE = 10_000
# Walking a directory for symlinks stops after this many entries; past it the glob or directory
# lease is refused (narrow it), since an unchecked symlink could alias a leased file.
MAX_LINK_SCAN = 50_000
ROOT = "."  # `_resolve`'s answer for the repository itself or a directory holding it


class SymlinkLoop(InvalidInput):
    """A name that runs into a symlink loop: it names no file (callers that only look may skip it)."""


class RepoAliases:
    def __init__(self, root: str, clock: Callable[[], float] = time.monotonic):
        self.root = os.path.realpath(root)
        self.clock = clock
        # name → (canonical name, or ROOT; the looping link, or None; when)
        self._cache: dict[str, tuple[str, str | None, float]] = {}
        self._links: dict[str, tuple[tuple[str, ...] | None, float]] = {}

    def is_link(self, relative: str) -> bool:
        """True when the repo-relative name is a symlink (the name itself, not its parents)."""
        return os.path.islink(os.path.join(self.root, relative))

    def canonical(self, relative: str, field: str = "path") -> str:
        """`relative` (normalised, repo-relative) with every symlink resolved (see the module rules)."""
        directory = relative.endswith("/")
        segments = relative.rstrip("/").split("/")
        literal = 0
        while literal < len(segments) and not is_glob(segments[literal]):
            literal += 1
        if literal == 0:
            out = relative
        else:
            head = self._resolve_or_refuse("/".join(segments[:literal]), relative, field)
            out = "/".join([head, *segments[literal:]])
            out = out + "/" if directory else out
        if literal < len(segments):
            self._refuse_glob_through_links(out, relative, field)
        return out

    def walked(self, directory: str) -> bool:
        """True when the links below `directory` are remembered: `links_leaving` then does no walk."""
        cached = self._links.get(directory)
        return cached is not None and self.clock() - cached[1] < CACHE_S

    def links_leaving(self, directory: str) -> tuple[tuple[str, str], ...] | None:
        """(link, where it leads) for each symlink below the canonical `directory` (ending in '/')
        whose real target lies outside it; None when the directory holds too many entries to check.

        A link that loops is not listed: no file is reachable through it. A target that is the
        repository root or above it is reported as '.'.
        """
        links = self._links_below(directory)
        if links is None:
            return None
        leaving = []
        for link in links:
            target, loop = self._resolve(link)
            if loop is not None:
                continue
            if target == ROOT or not (target + "/").startswith(directory):
                leaving.append((link, target))
        return tuple(leaving)

    def outside(self, raw: str, field: str = "path") -> str | None:
        """The name of `raw` — a path that leaves the repository (`../x/f.py`, `/tmp/x/f.py`) —
        when a symlink in the repository leads to it or to a directory above it; else None.

        Finding those links walks the repository (remembered a few seconds); only a path that would
        otherwise be refused pays for it. Past MAX_LINK_SCAN entries the answer is None.
        """
        if not isinstance(raw, str) or "\x00" in raw:
            return None
        text = raw.strip()
        real = os.path.realpath(text if text.startswith("/") else os.path.join(self.root, text))
        if real == self.root or real.startswith(self.root + os.sep) or self.root.startswith(real + os.sep):
            return None  # not outside after all (or above the root): the normaliser's refusal stands
        name = os.path.relpath(real, self.root) + ("/" if text.endswith("/") else "")
        targets = self._outside_targets()
        if not any(name == t or name.startswith(t.rstrip("/") + "/") for t in targets):
            return None
        return self.canonical(name, field)

    def _outside_targets(self) -> tuple[str, ...]:
        """Where the repository's symlinks that lead out of it point (real paths spelled from the root)."""
        links = self._links_below("") or ()
        out = []
        for link in links:
            target, loop = self._resolve(link)
            if loop is None and target.startswith("../"):
                out.append(target)
        return tuple(out)

    # -- resolution ---------------------------------------------------------------------------

    def _resolve_or_refuse(self, head: str, raw: str, field: str) -> str:
        resolved, loop = self._resolve(head)
        if loop is not None:
            raise SymlinkLoop(
                f"{field} {raw!r} runs into a symlink loop at {loop!r} (a link that leads back to itself, "
                "directly or through other links, or more links in a row than the system follows), so it "
                f"names no file; fix or remove the link {loop!r}, or name the file by its real path",
                field=field,
            )
        if resolved == ROOT:
            raise InvalidInput(
                f"{field} {raw!r} leads through a symlink to the repository root or above it, so it "
                "would name the whole repository under another name; name the files or directories "
                "inside the repository by their real paths",
                field=field,
            )
        return resolved

    def _resolve(self, head: str) -> tuple[str, str | None]:
        """(canonical name of the literal `head`, the link it loops at or None), cached."""
        now = self.clock()
        cached = self._cache.get(head)
        if cached is not None and now - cached[2] < CACHE_S:
            return cached[0], cached[1]
        loop = self._loop_at(head)
        if loop is not None:
            resolved = head
        else:
            real = os.path.realpath(os.path.join(self.root, head))
            if real == self.root or self.root.startswith(real.rstrip(os.sep) + os.sep):
                resolved = ROOT  # the repository itself, or a directory holding it
            elif real.startswith(self.root + os.sep):
                resolved = real[len(self.root) + 1 :]
            else:
                # Outside: the real path, spelled from the root, so every link to it agrees.
                resolved = os.path.relpath(real, self.root)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[head] = (resolved, loop, now)
        return resolved, loop

    def _loop_at(self, head: str) -> str | None:
        """The shortest prefix of `head` the kernel refuses with ELOOP, or None.

        `realpath` never fails on a loop: it returns a guess (a → a/.. even comes out as the root),
        so the kernel is asked instead. One stat when there is no loop; a path that does not exist
        is ENOENT, not a loop.
        """
        try:
            os.stat(os.path.join(self.root, head))
            return None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                return None
        parts = head.split("/")
        for end in range(1, len(parts) + 1):
            prefix = "/".join(parts[:end])
            try:
                os.stat(os.path.join(self.root, prefix))
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    return prefix
        return head

    # -- links below a directory ----------------------------------------------------------------

    def _refuse_glob_through_links(self, glob: str, raw: str, field: str) -> None:
        try:
            pattern = compile_pattern(glob)
        except PatternError:
            return  # the lock service reports the bad glob itself
        links = self._links_below(pattern.anchor)
        if links is None:
            raise InvalidInput(
                f"{field} {raw!r}: the directory {pattern.anchor or './'} holds more than {MAX_LINK_SCAN} "
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
        """Every symlink below `anchor` (names spelled like `anchor`), None past MAX_LINK_SCAN entries.

        Links are not followed, so a loop cannot make the walk go round.
        """
        now = self.clock()
        cached = self._links.get(anchor)
        if cached is not None and now - cached[1] < CACHE_S:
            return cached[0]
        found: list[str] = []
        seen = 0
        result: tuple[str, ...] | None = None
        pending = [anchor.rstrip("/")]
        while pending:
            directory = pending.pop()
            try:
                with os.scandir(os.path.join(self.root, directory) if directory else self.root) as entries:
                    for entry in entries:
                        seen += 1
                        name = f"{directory}/{entry.name}" if directory else entry.name
                        if entry.is_symlink():
                            found.append(name)
                        elif entry.is_dir(follow_symlinks=False) and name != ".git":
                            # .git is never a coordination target and holds no repository-file symlinks.
                            pending.append(name)
            except OSError:
                continue  # vanished or unreadable meanwhile: nothing reachable below it
            if seen > MAX_LINK_SCAN:
                break
        else:
            result = tuple(found)
        if len(self._links) >= CACHE_SIZE:
            self._links.clear()
        self._links[anchor] = (result, now)
        return result
