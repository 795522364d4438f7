"""`huddle backup PATH` and `huddle restore PATH`: the SQLite database as one self-contained file.

Backup uses SQLite's online backup API in a single step: it reads one consistent snapshot while
the server keeps writing (WAL lets the writer go on), so the copy holds every write acknowledged
before it began and never half a transaction. The copy is switched out of WAL mode so it is one
file, then checked with `PRAGMA integrity_check`.

Restore refuses while a server runs on the data dir (it holds the data dir's lock), checks the file
is an intact Huddle database, and keeps the database it replaces beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

from huddle.cli.runtime import data_dir_of, running_server
from huddle.errors import HuddleError

DB_NAME = "huddle.db"


def add_backup_parsers(commands: Any) -> None:
    data_help = "data dir of the database [env HUDDLE_DATA_DIR; default ~/.huddle]"
    backup = commands.add_parser("backup", help="copy the database to PATH, consistent while the server writes")
    backup.add_argument("path", help="file to write (refused if it exists, unless --force)")
    backup.add_argument("--data-dir", help=data_help)
    backup.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    restore = commands.add_parser("restore", help="replace the database with a backup (server must be stopped)")
    restore.add_argument("path", help="a file written by huddle backup")
    restore.add_argument("--data-dir", help=data_help)


def run_backup(args: argparse.Namespace) -> int:
    source = data_dir_of(args) / DB_NAME
    target = Path(args.path).expanduser()
    if not source.is_file():
        raise HuddleError(f"no database at {source}; pass the --data-dir your server uses")
    if target.exists() and not args.force:
        raise HuddleError(f"{target} already exists; pass another path or --force")
    if not target.parent.is_dir():
        raise HuddleError(f"{target.parent} is not a directory; create it first")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        with (
            contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)) as src,
            contextlib.closing(sqlite3.connect(partial)) as dst,
        ):
            src.backup(dst)  # pages=-1: one step, one snapshot
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            summary = _verify(dst, partial)
        partial.replace(target)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise HuddleError(f"backup of {source} failed ({exc}); retry, or check the disk") from None
    print(
        f"backed up {source} to {target}: {target.stat().st_size} bytes, schema {summary['schema']},"
        f" {summary['events']} events, in {time.monotonic() - started:.2f}s"
    )
    return 0


def run_restore(args: argparse.Namespace) -> int:
    data_dir = data_dir_of(args)
    source = Path(args.path).expanduser()
    server = running_server(data_dir)
    if server is not None:
        raise HuddleError(
            f"a server is running on {data_dir} (pid {server.pid} at {server.url}); "
            f"stop it first: huddle server stop --data-dir {data_dir}"
        )
    if not source.is_file():
        raise HuddleError(f"{source} is not a file; pass a file written by huddle backup")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as conn:
            summary = _verify(conn, source)
    except sqlite3.Error as exc:
        raise HuddleError(f"{source} is not a SQLite database ({exc}); pass a file written by huddle backup") from None
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / DB_NAME
    kept = _set_aside(target) if target.exists() else None
    partial = data_dir / f".{DB_NAME}.restoring"
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(partial)) as dst:
        src.backup(dst)
    partial.replace(target)
    print(
        f"restored {source} into {target}: schema {summary['schema']}, {summary['events']} events"
        + (f"; the previous database is kept as {kept}" if kept else "")
    )
    return 0


def _set_aside(target: Path) -> Path:
    """Moves the database being replaced aside; returns where it went.

    A healthy database gets its WAL folded in, so the kept copy is one whole file. A corrupted one
    (the usual reason to restore) cannot be checkpointed: it is kept exactly as found, with its
    -wal/-shm beside it under the same new name, for whoever wants to look at it later.
    """
    kept = target.with_name(f"{DB_NAME}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        with contextlib.closing(sqlite3.connect(target)) as old:
            old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        print(f"huddle: the database being replaced is damaged ({exc}); keeping it unchanged as {kept}")
        for suffix in ("-wal", "-shm"):
            side = Path(f"{target}{suffix}")
            if side.exists():
                side.replace(Path(f"{kept}{suffix}"))
    target.replace(kept)
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    return kept


def _verify(conn: sqlite3.Connection, path: Path) -> dict[str, Any]:
    """Integrity check and a Huddle schema, or a HuddleError saying what is wrong with the file."""
    result = conn.execute("PRAGMA integrity_check").fetchone()
    if not result or result[0] != "ok":
        raise HuddleError(f"{path} fails SQLite's integrity check ({result[0] if result else 'no answer'})")
    try:
        schema = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
        events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    except sqlite3.Error:
        raise HuddleError(f"{path} is a SQLite file but not a Huddle database") from None
    return {"schema": schema, "events": events}
