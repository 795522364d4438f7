"""Numbered schema migrations, one set per dialect, applied in order and recorded once.

`schema/NNN_name.sql` is SQLite's; `schema/postgresql/NNN_name.sql` is its PostgreSQL twin with the
same number, so one version number means the same tables on both and `huddle migrate`, the
schema-version guard and `huddle export`/`import` speak one language. Each file runs in its own
transaction; a database that a newer Huddle migrated is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from importlib import resources
from importlib.abc import Traversable
from typing import Any

from huddle.errors import Unavailable

PACKAGES = {"sqlite": "huddle.storage.schema", "postgresql": "huddle.storage.schema.postgresql"}
CREATE_TABLE = "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"


def migration_files(dialect: str) -> list[Traversable]:
    files = (f for f in resources.files(PACKAGES[dialect]).iterdir() if f.name.endswith(".sql"))
    return sorted(files, key=lambda f: f.name)


def version_of(f: Traversable) -> int:
    return int(f.name.split("_", 1)[0])


def known_versions(dialect: str) -> set[int]:
    return {version_of(f) for f in migration_files(dialect)}


def refuse_newer(applied: Iterable[int], known: set[int]) -> None:
    newer = sorted(v for v in applied if v not in known)
    if newer:
        raise Unavailable(
            f"the database has schema version(s) {newer} that this Huddle does not know; "
            "upgrade Huddle, or point --data-dir / --db-url at another database"
        )


def split_sql(script: str) -> list[str]:
    """Splits a migration into statements (sqlite3's executescript would commit behind our back).

    Statements end with `;` at the end of a line; SQLite's own parser confirms each is complete,
    so a `;` inside a string or a trigger body does not cut a statement short.
    """
    statements: list[str] = []
    buffer: list[str] = []
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        buffer.append(line)
        candidate = "\n".join(buffer).strip()
        if candidate.endswith(";") and sqlite3.complete_statement(candidate):
            statements.append(candidate)
            buffer = []
    rest = "\n".join(buffer).strip()
    if rest:
        statements.append(rest)
    return statements


Execute = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


def migrate(
    dialect: str,
    execute: Execute,
    begin: Callable[[], object],
    commit: Callable[[], object],
    *,
    up_to: int | None = None,
) -> tuple[int, list[int]]:
    """Applies the migrations of `dialect` not applied yet; returns (schema version, versions applied now).

    `execute(sql, params)` runs one statement with qmark parameters and returns its rows; `begin`
    and `commit` bracket each file (no-ops when the caller runs them all in its own transaction, as
    `huddle import` does). The caller holds whatever lock keeps two processes from migrating at once
    (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock). `up_to` stops after that version: the
    schema as the Huddle that had it created it (`huddle import` of an older export).
    """
    execute(CREATE_TABLE, ())
    applied = {int(row[0]) for row in execute("SELECT version FROM schema_migrations", ())}
    files = migration_files(dialect)
    known = {version_of(f) for f in files}
    refuse_newer(applied, known)
    now_applied: list[int] = []
    for f in files:
        version = version_of(f)
        if version in applied or (up_to is not None and version > up_to):
            continue
        begin()
        for statement in split_sql(f.read_text()):
            execute(statement, ())
        execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, f.name))
        commit()
        now_applied.append(version)
    return max(applied.union(now_applied), default=0), now_applied
