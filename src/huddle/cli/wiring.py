"""Reversible edits of a user's files, for `huddle init` / `huddle uninstall`.

Each edit is a pair of pure functions over the file's text: `merge` adds Huddle's part (a JSON key,
hook entries, a sentinel-delimited block) and `unmerge` takes it out again, leaving everything the
user wrote alone. A manifest (`.huddle/init-manifest.json` in the repository) remembers, per file,
whether init created it, its original bytes, and a hash of what init last wrote. Uninstall puts
the original bytes back when the file is still exactly what init wrote (byte-identical restore),
removes files init created, and otherwise takes only Huddle's part out, keeping later user edits.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = Path(".huddle") / "init-manifest.json"

Edit = Callable[[str], str]


@dataclass(frozen=True)
class FileEdit:
    """One file and how to add / remove Huddle's part of it."""

    path: Path
    merge: Edit
    unmerge: Edit
    executable: bool = False


# -- JSON ------------------------------------------------------------------------------------------


def _indent_of(text: str) -> int | str:
    match = re.search(r"\n([ \t]+)\S", text)
    if not match:
        return 2
    ws = match.group(1)
    return "\t" if ws.startswith("\t") else len(ws)


def _load_json(text: str, path: Path) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if _has_comments(text):
            # JSONC (VS Code allows comments): rewriting it as JSON would drop them, so refuse.
            raise WiringError(
                f"{path} has comments (JSONC); Huddle will not rewrite it and lose them. Remove the comments, "
                "or add Huddle's server entry yourself, then run init again (nothing was changed)"
            ) from None
        raise WiringError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); fix it, then run init again"
        ) from None
    if not isinstance(data, dict):
        raise WiringError(f"{path} must hold a JSON object at the top level; fix it, then run init again")
    return data


def _has_comments(text: str) -> bool:
    """True when `text` parses as JSON once its // and /* */ comments (outside strings) are taken out."""
    out, i, quoted = [], 0, False
    while i < len(text):
        ch = text[i]
        if quoted:
            out.append(ch)
            if ch == "\\":
                out.append(text[i + 1 : i + 2])
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
            out.append(ch)
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = len(text) if end < 0 else end + 2
            continue
        else:
            out.append(ch)
        i += 1
    stripped = "".join(out)
    if stripped == text:
        return False
    try:
        json.loads(re.sub(r",(\s*[}\]])", r"\1", stripped))  # JSONC also allows trailing commas
    except ValueError:
        return False
    return True


def _dump_json(data: dict[str, Any], like: str) -> str:
    return json.dumps(data, indent=_indent_of(like), ensure_ascii=False) + "\n"


def json_edit(path: Path, change: Callable[[dict[str, Any]], None], undo: Callable[[dict[str, Any]], None]) -> FileEdit:
    """A JSON file edited as data; `change`/`undo` mutate the parsed object in place."""

    def apply(fn: Callable[[dict[str, Any]], None]) -> Edit:
        def edit(text: str) -> str:
            data = _load_json(text, path)
            before = json.dumps(data, sort_keys=True)
            fn(data)
            if json.dumps(data, sort_keys=True) == before and text.strip():
                return text  # nothing to do: keep the user's bytes as they are
            return _dump_json(data, text) if data or text.strip() else ""

        return edit

    return FileEdit(path, apply(change), apply(undo))


def server_entry_edit(path: Path, container: str, entry: dict[str, Any], name: str = "huddle") -> FileEdit:
    """`{container: {name: entry}}` merged into a client's MCP config; a user's own `name` entry is kept."""

    def change(data: dict[str, Any]) -> None:
        servers = data.setdefault(container, {})
        if not isinstance(servers, dict):
            raise WiringError(f"{path}: {container!r} must be an object; fix it, then run init again")
        servers[name] = entry

    def undo(data: dict[str, Any]) -> None:
        # Only files init recorded are undone, and init never records a user's own `name` entry.
        servers = data.get(container)
        if isinstance(servers, dict) and name in servers:
            del servers[name]
            if not servers:
                del data[container]

    return json_edit(path, change, undo)


# -- sentinel-delimited text blocks ----------------------------------------------------------------


def block_edit(
    path: Path, begin: str, end: str, body: str, *, after_first_line: bool = False, executable: bool = False
) -> FileEdit:
    """A block between `begin` and `end` lines: replaced in place if present, else added.

    Added at the end (Markdown, TOML) or right after the first line (a shell hook's shebang, so the
    block runs even when the user's hook ends with `exit 0`).
    """
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    pattern = re.compile(rf"(?:\n)?^{re.escape(begin)}\n.*?^{re.escape(end)}\n?", re.S | re.M)

    def merge(text: str) -> str:
        if pattern.search(text):
            return pattern.sub(lambda m: ("\n" if m.group(0).startswith("\n") else "") + block, text, count=1)
        if after_first_line and text:
            first, _, rest = text.partition("\n")
            return f"{first}\n{block}{rest}"
        if not text:
            return block
        return text + ("\n" if text.endswith("\n") else "\n\n") + block

    def unmerge(text: str) -> str:
        if after_first_line:
            return pattern.sub(lambda m: "\n" if m.group(0).startswith("\n") else "", text, count=1)
        return pattern.sub("", text, count=1)

    return FileEdit(path, merge, unmerge, executable)


def toml_table_edit(path: Path, table: str, values: dict[str, str]) -> FileEdit:
    """`[table]` with string values as a sentinel block at the end of a TOML file.

    Written by hand (a table appended at the end is valid TOML whatever precedes it) and checked
    with `tomllib`; a table the user already defined is left alone.
    """
    lines = [f"[{table}]", *(f"{key} = {json.dumps(value)}" for key, value in values.items())]
    block = block_edit(
        path, "# >>> huddle (added by `huddle init`; `huddle uninstall` removes it)", "# <<< huddle", "\n".join(lines)
    )

    def defined(text: str) -> bool:
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise WiringError(f"{path} is not valid TOML ({exc}); fix it, then run init again") from None
        for part in table.split("."):
            if not isinstance(data, dict) or part not in data:
                return False
            data = data[part]
        return True

    def merge(text: str) -> str:
        if defined(block.unmerge(text)):
            return text  # the user configured it themselves
        merged = block.merge(text)
        tomllib.loads(merged)  # never write a file the client cannot read
        return merged

    return FileEdit(path, merge, block.unmerge)


class WiringError(Exception):
    """A file cannot be edited safely; the message says which and what to do."""


# -- applying edits, with a manifest ---------------------------------------------------------------


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Planned:
    """An edit with the file's current bytes and the text it will have."""

    edit: FileEdit
    existed: bool
    original: bytes
    merged: str


def plan(edit: FileEdit) -> Planned:
    """Reads the file and computes the merge; raises WiringError (and writes nothing) when it cannot."""
    path = edit.path
    try:
        existed = path.exists()
        original = path.read_bytes() if existed else b""
    except OSError as exc:
        raise WiringError(f"{path} cannot be read ({exc.strerror}); fix it, then run init again") from None
    try:
        text = original.decode("utf-8")
    except UnicodeDecodeError:
        raise WiringError(
            f"{path} is not UTF-8 text; convert it to UTF-8 (or leave it out, e.g. --no-instructions), "
            "then run init again"
        ) from None
    return Planned(edit, existed, original, edit.merge(text))


class Manifest:
    """What init changed under `root` (the repository), so uninstall can undo exactly that."""

    def __init__(self, root: Path):
        self.root = root
        self.path = root / MANIFEST
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {"version": 1, "files": {}, "dirs": []}
        self._before = json.dumps(self.data, sort_keys=True)

    def key(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path.resolve())

    def resolve(self, key: str) -> Path:
        return Path(key) if os.path.isabs(key) else self.root / key

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.data["files"]  # type: ignore[no-any-return]

    def apply(self, edit: FileEdit) -> str:
        """Applies one edit; returns 'created', 'updated' or 'unchanged'."""
        return self.commit(plan(edit))

    def apply_all(self, edits: list[FileEdit]) -> list[tuple[Path, str]]:
        """Plans every edit first (reading, parsing, merging), then writes: a file init cannot handle
        stops it before anything is written, so the repository is never left half wired."""
        plans = [plan(edit) for edit in edits]
        return [(p.edit.path, self.commit(p)) for p in plans]

    def commit(self, planned: Planned) -> str:
        """Writes one planned edit and records it; returns 'created', 'updated' or 'unchanged'."""
        edit, existed, original, merged = planned.edit, planned.existed, planned.original, planned.merged
        path = edit.path
        key = self.key(path)
        record = self.files.get(key)
        if record is not None and (not existed or _sha(original) != record.get("written")):
            # The user changed the file since our last write: its recorded original is stale, so
            # uninstall must only take Huddle's part out (never restore or delete the file).
            record["edited"] = True
        if merged.encode() == original and existed:
            return "unchanged"
        if key not in self.files:
            self.files[key] = {
                "created": not existed,
                "original": None if not existed else base64.b64encode(original).decode(),
                "mode": None if not existed else stat.S_IMODE(path.stat().st_mode),
            }
            for parent in reversed(path.relative_to(self.root).parents if path.is_relative_to(self.root) else []):
                target = self.root / parent
                if str(parent) != "." and not target.exists():
                    self.data["dirs"].append(str(parent))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(merged, encoding="utf-8")
        if edit.executable:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.files[key]["written"] = _sha(merged.encode())
        self.files[key]["kind"] = "executable" if edit.executable else "text"
        return "created" if not existed else "updated"

    def revert(self, edits: dict[str, FileEdit], only: set[str] | None = None) -> list[str]:
        """Undoes every recorded file (or those in `only`); `edits` gives the unmerge for best effort."""
        done = []
        for key, record in sorted(self.files.items()):
            if only is not None and key not in only:
                continue
            path = self.resolve(key)
            if not path.exists():
                done.append(f"{key}: already gone")
                continue
            current = path.read_bytes()
            pristine = _sha(current) == record.get("written") and not record.get("edited")
            if pristine and record["created"]:
                path.unlink()
                done.append(f"{key}: removed (init created it)")
            elif pristine:
                path.write_bytes(base64.b64decode(record["original"]))
                if record.get("mode") is not None:
                    path.chmod(record["mode"])
                done.append(f"{key}: restored byte for byte")
            elif key in edits and _is_utf8(current):
                rest = edits[key].unmerge(current.decode("utf-8"))
                if record["created"] and not rest.strip():
                    path.unlink()
                    done.append(f"{key}: removed (only Huddle's part was left)")
                else:
                    path.write_text(rest, encoding="utf-8")
                    done.append(f"{key}: Huddle's part removed, your later edits kept")
            else:
                done.append(f"{key}: changed since init and not recognised; left as is")
        for directory in sorted(self.data["dirs"], key=len, reverse=True):
            target = self.root / directory
            if target.is_dir() and not any(target.iterdir()):
                target.rmdir()
        for key in list(self.files):
            if only is None or key in only:
                del self.files[key]
        if not self.files:
            self.data["dirs"] = []
        return done

    def save(self) -> None:
        if json.dumps(self.data, sort_keys=True) == self._before:
            return
        if not self.files:
            self.path.unlink(missing_ok=True)
            if self.path.parent.is_dir() and not any(self.path.parent.iterdir()):
                self.path.parent.rmdir()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n")
