"""Path normalisation: every file path an agent sends becomes a repo-relative POSIX path, once.

Agents send paths in every shape: `./src/a.py`, `/abs/repo/src/a.py`, `src\\a.py`. Comparing them
only works if they are normalised in one place. A path that leaves the repository is refused:
coordinating on files outside the repo is meaningless and a `..` is usually a mistake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import PureWindowsPath

from huddle.domain.validate import encodable
from huddle.errors import InvalidInput

MAX_PATH_CHARS = 1024
MAX_PATHS_PER_REQUEST = 500
MODULE_SEPARATORS = "/.:"


class OutsideRepository(InvalidInput):
    """A path that leaves the repository: refused here; the services accept it only when a symlink
    in the repository leads there (service/repo_aliases.py)."""


def normalize_path(
    raw: str, repo_root: str, *, field: str = "path", is_link: Callable[[str], bool] | None = None
) -> str:
    """Returns `raw` as a repo-relative POSIX path, or raises InvalidInput naming `field`.

    `is_link(relative)` says whether a repo-relative name is a symlink; with it, a `..` that
    would step back out of a symlink is refused (see `_collapse`).
    """
    if not isinstance(raw, str):
        raise InvalidInput(f"{field} must be a string path, got {type(raw).__name__}", field=field)
    text = raw.strip()
    if not text:
        raise InvalidInput(f"{field} is empty; give a path relative to the repository root", field=field)
    encodable(text, field)
    if len(text) > MAX_PATH_CHARS:
        raise InvalidInput(f"{field} is longer than {MAX_PATH_CHARS} characters", field=field)
    if "\\" in text and "/" not in text:
        # A Windows client: `src\\a.py` or `C:\\repo\\src\\a.py`.
        text = PureWindowsPath(text).as_posix()
    root = repo_root.rstrip("/") or "/"
    if text.startswith("/"):
        # Strip the root by segments first; any `..` is applied below the root, link-aware.
        parts = [segment for segment in text.split("/") if segment not in ("", ".")]
        root_parts = [segment for segment in root.split("/") if segment]
        if parts[: len(root_parts)] != root_parts:
            raise OutsideRepository(
                f"{field} {raw!r} is outside the repository {root}; send a path inside it, "
                "relative to the repository root (e.g. src/app.py)",
                field=field,
            )
        relative = _collapse("/".join(parts[len(root_parts) :]), raw, field, is_link)
    else:
        relative = _collapse(text, raw, field, is_link)
    if relative in ("", "."):
        raise InvalidInput(f"{field} {raw!r} names the repository root itself; name a file or directory", field=field)
    if relative == ".." or relative.startswith("../"):
        raise OutsideRepository(
            f"{field} {raw!r} leaves the repository (..); send a path inside the repository", field=field
        )
    # Keep a trailing slash: it marks a directory (`src/auth/`) for locks and modules.
    return relative + "/" if text.endswith("/") else relative


def _collapse(text: str, raw: str, field: str, is_link: Callable[[str], bool] | None) -> str:
    """Drops `.` and empty segments and applies `..`, one segment at a time.

    `a/..` is `.` only when `a` is not a symlink: the kernel resolves `sublink/..` to the parent
    of the link's *target*, so collapsing it by spelling (as posixpath.normpath does) would make
    `sublink/../z.py` a different name for `deep/z.py`, or `ext/../x` a file outside the
    repository. Such a `..` is refused rather than guessed; send the path without it.
    """
    out: list[str] = []
    for segment in text.split("/"):
        if segment in ("", "."):
            continue
        if segment == ".." and out and out[-1] != "..":
            if is_link is not None and is_link("/".join(out)):
                raise InvalidInput(
                    f"{field} {raw!r} steps back (..) out of the symlink {'/'.join(out)!r}, which would "
                    "lead past the link's target; send the path without '..' (e.g. the file's real path)",
                    field=field,
                )
            out.pop()
            continue
        out.append(segment)
    return "/".join(out) or "."


def normalize_paths(
    raws: Iterable[str] | None,
    repo_root: str,
    *,
    field: str,
    is_link: Callable[[str], bool] | None = None,
) -> tuple[str, ...]:
    """Normalises a list of paths, dropping duplicates but keeping the caller's order."""
    return tuple(dict.fromkeys(normalize_each(raws, repo_root, field=field, is_link=is_link)))


def normalize_each(
    raws: Iterable[str] | None,
    repo_root: str,
    *,
    field: str,
    is_link: Callable[[str], bool] | None = None,
) -> list[str]:
    """Normalises a list of paths entry by entry (duplicates kept: the i-th answer is `raws[i]`'s)."""
    if raws is None:
        return []
    if isinstance(raws, str):
        raise InvalidInput(f"{field} must be a list of paths, not a single string", field=field)
    items = list(raws)
    if len(items) > MAX_PATHS_PER_REQUEST:
        raise InvalidInput(
            f"{field} has {len(items)} entries; at most {MAX_PATHS_PER_REQUEST} are allowed, "
            "so name directories or modules instead of every file",
            field=field,
        )
    return [
        normalize_path(raw, repo_root, field=f"{field}[{index}]", is_link=is_link) for index, raw in enumerate(items)
    ]


def normalize_module(raw: str, *, field: str = "module") -> str:
    """Modules are names like `auth`, `src/auth` or `api.users`; compared by segments."""
    if not isinstance(raw, str):
        raise InvalidInput(f"{field} must be a string, got {type(raw).__name__}", field=field)
    text = raw.strip().strip("/")
    if not text:
        raise InvalidInput(f"{field} is empty; give a module name such as 'auth' or 'src/auth'", field=field)
    encodable(text, field)
    if len(text) > 256:
        raise InvalidInput(f"{field} must be a plain name of at most 256 characters", field=field)
    return text


def module_prefixes(module: str) -> list[str]:
    """Every segment-aligned prefix of `module`, itself included: `a/b.c` → `a`, `a/b`, `a/b.c`."""
    prefixes = [module[:i] for i, ch in enumerate(module) if ch in MODULE_SEPARATORS and i > 0]
    prefixes.append(module)
    return prefixes


def modules_related(a: str, b: str) -> bool:
    """True when the modules are equal or one is a segment-aligned prefix of the other."""
    if a == b:
        return True
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return long.startswith(short) and long[len(short)] in MODULE_SEPARATORS
