"""`huddle export` / `huddle import`: every row of a project, moved between SQLite and PostgreSQL.

The file is JSON lines:

    {"format": "huddle-export", "format_version": 1, "schema_version": 9, "dialect": "sqlite",
     "projects": ["app"], "exported_at": "…", "high_water": {"intents": 42, …}, "cursors": {"app": 1234}}
    {"table": "agents", "columns": ["project", "agent_id", …], "rows": 3}
    ["app", "alice", …]                       ← one JSON array per row, `rows` of them
    {"table": "events", …}
    …
    {"end": true, "tables": 28, "rows": 5120}

Why it is safe:
- Export reads one snapshot (one read transaction), so it can run while the server writes and
  still never holds half a transaction. Tables and columns come from the database itself, so a
  table a later migration adds is carried without anyone remembering to list it; only the
  migrator's bookkeeping and derived indexes (SQLite FTS, PostgreSQL's generated tsvector) are
  left out, and rebuilt on import — and `instances`, the heartbeats of running server processes
  (NOT_CARRIED): they describe processes, not the project, and would make the target look in use.
  Queued lock requests of those processes are then dropped by the target's first sweep, as for any
  stopped process; held leases are project state and are carried with their expiry times as they are.
- Import writes everything in one transaction: a damaged or truncated file, a clash or any
  error leaves the target as it was. Rows keep their ids and event cursors, so every cursor a
  client holds stays valid; then each counter is raised past the highest id (and past ids the
  source handed out to rows deleted since), so new rows get fresh numbers.
- The schema migrations run in that transaction too (SQLite and PostgreSQL both roll DDL back):
  the target is migrated up to the file's schema version, the rows go in and are checked as the
  file's Huddle wrote them, then the migrations that Huddle lacked run over them, exactly as
  `huddle migrate` would have run them on the source. So an export of an older Huddle imports into
  an empty database and ends at this Huddle's schema ("imported schema 12, upgraded to 13"); a
  failure anywhere, in a later migration too, leaves no half-upgraded target. A target whose schema
  is newer than the file's is refused, rows or not: the later migrations can only run over the
  file's rows while the schema is still at the file's version, and a schema is never taken back. A
  file newer than this Huddle is refused too.
- The audit log (audit_log, schema 011) is a table like the others, carried row for row: its hash
  chain covers each row's project, seq, event cursor and a digest of the event's stored data — all
  carried verbatim — so a moved database verifies (`huddle audit verify`) exactly as the source did.
  The header also records each project's audit head (newest seq and hash) and the import checks it
  arrived unchanged, as it checks the newest event cursor.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import psycopg

from huddle import __version__
from huddle.errors import HuddleError
from huddle.storage import migrations
from huddle.storage.admin import Database, Table, jsonable, quote

FORMAT = "huddle-export"
FORMAT_VERSION = 1
# Tables that describe running processes, not the project: never exported, skipped if a file has them.
NOT_CARRIED = frozenset({"instances"})


# A row is a tuple of None, int, float and str; anything else (no BLOB column exists) is refused.
_ROW = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _current_schema(db: Database) -> int:
    """The database's schema version, refused unless it is exactly this Huddle's."""
    applied = db.applied_versions()
    if not applied:
        raise HuddleError(f"{db.label} holds no Huddle schema; there is nothing to export")
    known = migrations.known_versions(db.dialect)
    migrations.refuse_newer(applied, known)
    version, current = max(applied), max(known)
    if version != current:
        raise HuddleError(
            f"{db.label} has schema version {version} and this Huddle's is {current}: bring it up to date"
            " first with `huddle migrate` (starting its server with this Huddle does it too)"
        )
    return version


def _projects_in(db: Database, tables: Sequence[Table]) -> list[str]:
    found: set[str] = set()
    for t in tables:
        if t.scope == "project":
            found.update(str(r[0]) for r in db.rows(f"SELECT DISTINCT project FROM {quote(t.name)}"))
    return sorted(found)


def _tables(db: Database) -> list[Table]:
    return [t for t in db.tables() if t.name not in NOT_CARRIED]


def _cursors(db: Database, projects: Sequence[str]) -> dict[str, int]:
    """The newest event cursor of each project: the import checks it arrived unchanged."""
    return {p: int(db.scalar("SELECT MAX(cursor) FROM events WHERE project = ?", (p,)) or 0) for p in projects}


def _audit_heads(db: Database, projects: Sequence[str]) -> dict[str, list[Any]]:
    """Each project's newest audit row as [seq, hash] (projects without one left out)."""
    heads: dict[str, list[Any]] = {}
    for p in projects:
        for seq, hash_ in db.rows("SELECT seq, hash FROM audit_log WHERE project = ? ORDER BY seq DESC LIMIT 1", (p,)):
            heads[p] = [int(seq), str(hash_)]
    return heads


def export(db: Database, out: TextIO, only: Sequence[str] = ()) -> dict[str, Any]:
    """Writes every row of the projects `only` (default: every project) to `out`; returns a summary."""
    db.begin_snapshot()
    try:
        version = _current_schema(db)
        tables = _tables(db)
        present = _projects_in(db, tables)
        if only:
            missing = sorted(set(only) - set(present))
            if missing:
                raise HuddleError(
                    f"{db.label} has no rows of project(s) {', '.join(missing)}; the projects there are"
                    f" {', '.join(present) or '(none)'}"
                )
        projects = sorted(only) if only else present
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "schema_version": version,
            "dialect": db.dialect,
            "source": db.label,
            "projects": projects,
            "all_projects": not only,
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "huddle_version": __version__,
            "high_water": db.high_water(tables),
            "cursors": _cursors(db, projects),
            "audit_heads": _audit_heads(db, projects),
        }
        out.write(_dumps(header) + "\n")
        counts: dict[str, int] = {}
        for t in tables:
            where, params = t.where(projects) if only else ("1 = 1", ())
            count = int(db.scalar(f"SELECT COUNT(*) FROM {quote(t.name)} WHERE {where}", params))
            out.write(_dumps({"table": t.name, "columns": list(t.columns), "rows": count}) + "\n")
            order = f" ORDER BY {quote(t.identity)}" if t.identity else ""
            columns = ", ".join(map(quote, t.columns))
            written = 0
            for row in db.rows(f"SELECT {columns} FROM {quote(t.name)} WHERE {where}{order}", params):
                try:
                    out.write(_ROW.encode(row) + "\n")  # the hot loop: one C-encoded line per row
                except TypeError:
                    for value, column in zip(row, t.columns, strict=True):
                        jsonable(value, t.name, column)  # names the column JSON cannot carry
                    raise
                written += 1
            if written != count:  # cannot happen inside one snapshot; refuse rather than write a wrong file
                raise HuddleError(f"table {t.name} changed during the export ({count} rows counted, {written} read)")
            counts[t.name] = count
        out.write(_dumps({"end": True, "tables": len(tables), "rows": sum(counts.values())}) + "\n")
    finally:
        db.rollback()  # a read-only snapshot: nothing to keep
    return {"schema_version": version, "projects": projects, "tables": counts, "cursors": header["cursors"]}


class _Lines:
    """The export file, line by line, with line numbers for error messages."""

    def __init__(self, source: TextIO, name: str):
        self._source = source
        self.name = name
        self.number = 0

    def next(self, what: str) -> Any:
        line = self._source.readline()
        self.number += 1
        if not line:
            raise HuddleError(
                f"{self.name} ends early (line {self.number}, expecting {what}): the file is incomplete;"
                " export again (nothing was imported)"
            )
        try:
            return json.loads(line)
        except ValueError as exc:
            raise HuddleError(
                f"line {self.number} of {self.name} is not valid JSON ({exc}); the file is damaged,"
                " export again (nothing was imported)"
            ) from None

    def expect_end(self) -> None:
        """After the end line only blank lines may follow: anything else means a damaged or spliced file."""
        for line in self._source:
            self.number += 1
            if line.strip():
                raise HuddleError(
                    f"line {self.number} of {self.name} follows the end line; the file is damaged or has"
                    " something appended, export again (nothing was imported)"
                )


def read_header(source: TextIO, name: str) -> dict[str, Any]:
    """The header line of an export file, or a clear error for anything else."""
    lines = _Lines(source, name)
    try:
        header = lines.next("the header")
    except HuddleError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise HuddleError(f"{name} is not a file written by huddle export; pass the --out file of huddle export")
    if header.get("format_version") != FORMAT_VERSION:
        raise HuddleError(
            f"{name} is in export format {header.get('format_version')!r}, this Huddle reads format"
            f" {FORMAT_VERSION}; import it with the Huddle version that wrote it"
        )
    for key, kind in (("schema_version", int), ("projects", list), ("dialect", str)):
        if not isinstance(header.get(key), kind):
            raise HuddleError(f"{name}'s header lacks {key}; the file is damaged, export again")
    return dict(header)


def _occupied(db: Database, tables: Sequence[Table]) -> dict[str, int]:
    counts = {t.name: int(db.scalar(f"SELECT COUNT(*) FROM {quote(t.name)}")) for t in tables}
    return {name: n for name, n in counts.items() if n}


def _clear(db: Database, tables: Sequence[Table], projects: Sequence[str]) -> int:
    """Deletes the rows of `projects` (thread-scoped tables first: they find their rows through threads)."""
    deleted = 0
    for t in sorted(tables, key=lambda t: t.scope != "thread"):
        where, params = t.where(projects)
        deleted += db.execute(f"DELETE FROM {quote(t.name)} WHERE {where}", params)
    return deleted


def _rows(lines: _Lines, table: str, width: int, count: int) -> Iterator[list[Any]]:
    for _ in range(count):
        row = lines.next(f"a row of {table}")
        if not isinstance(row, list) or len(row) != width:
            raise HuddleError(
                f"line {lines.number} of {lines.name} is not a row of {table} ({width} values); the file is"
                " damaged, export again (nothing was imported)"
            )
        yield row


def _schema_to_import(db: Database, file_version: int, name: str) -> int:
    """The file's schema version; refused if it is newer than this Huddle's, or one no Huddle had."""
    known = migrations.known_versions(db.dialect)
    newest = max(known)
    if file_version > newest:
        raise HuddleError(
            f"{name} holds schema version {file_version} and this Huddle's newest is {newest}: upgrade Huddle"
            " to import it"
        )
    if file_version not in known:
        raise HuddleError(
            f"{name} claims schema version {file_version}, which no Huddle had (the versions are"
            f" {', '.join(map(str, sorted(known)))}); the file is damaged, export again"
        )
    return file_version


def _downgrade_refused(db: Database, name: str, file_version: int, target_version: int) -> HuddleError:
    newest = max(migrations.known_versions(db.dialect))
    return HuddleError(
        f"{name} holds schema version {file_version} and {db.label} already has schema version"
        f" {target_version}, which cannot be taken back to {file_version}. Import it into a database without Huddle's"
        f" schema instead (a new --data-dir, or a PostgreSQL database dropped and created again, with no"
        f" `huddle migrate` or server run on it): Huddle creates the schema there at"
        f" version {file_version}, imports the rows and then upgrades them to {newest}. Nothing was imported"
    )


def import_(db: Database, source: TextIO, name: str, *, force: bool) -> dict[str, Any]:
    """Imports an export file into `db` in one transaction; returns a summary.

    In that transaction the target's schema is brought to the file's version (a new database gets it
    created there), the rows go in and are checked, and then the migrations the file's Huddle did not
    have yet are applied, so that an export of an older Huddle's ends at this Huddle's schema exactly
    as its database would have with `huddle migrate`. A target whose schema is newer than the file's
    is refused: a schema is never taken back. Any failure rolls everything back, migrations included.
    """
    started = time.monotonic()
    header = read_header(source, name)
    lines = _Lines(source, name)
    lines.number = 1
    projects = [str(p) for p in header["projects"]]
    file_version = _schema_to_import(db, int(header["schema_version"]), name)
    if db.dialect == "sqlite" and header["dialect"] == "postgresql" and len(projects) > 1:
        # PostgreSQL numbers events per project; SQLite numbers them across the whole file.
        raise HuddleError(
            f"{name} holds {len(projects)} projects from PostgreSQL, whose event cursors overlap; a SQLite"
            " data dir numbers events across projects. Export one project at a time (huddle export"
            " --project NAME) and import each into its own --data-dir"
        )
    db.begin_write(projects)
    try:
        applied = db.applied_versions()  # read under the write lock: no migrator runs meanwhile
        migrations.refuse_newer(applied, migrations.known_versions(db.dialect))
        before = max(applied, default=0)
        if before > file_version:
            raise _downgrade_refused(db, name, file_version, before)
        _, created = db.migrate_within(up_to=file_version)
        tables = {t.name: t for t in _tables(db)}
        occupied = _occupied(db, list(tables.values()))
        replaced = 0
        if occupied and not force:
            listing = ", ".join(f"{t} {n}" for t, n in sorted(occupied.items()))
            raise HuddleError(
                f"{db.label} is not empty ({listing}); import into an empty database, or pass --force to"
                f" replace the rows of project(s) {', '.join(projects)} there (other projects' rows are kept)"
            )
        if occupied:
            replaced = _clear(db, list(tables.values()), projects)
        counts: dict[str, int] = {}
        skipped = 0
        while True:
            section = lines.next("a table or the end line")
            if isinstance(section, dict) and section.get("end") is True:
                break
            if isinstance(section, dict) and section.get("table") in NOT_CARRIED:
                skipped += _skip_table(lines, section)  # written by an older Huddle: read past it
                continue
            counts.update(_import_table(db, lines, tables, section, file_version))
        if section.get("rows") != sum(counts.values()) + skipped:
            raise HuddleError(f"{name}'s end line does not match its rows; the file is damaged, export again")
        lines.expect_end()
        db.raise_counters(list(tables.values()), {str(k): int(v) for k, v in header.get("high_water", {}).items()})
        # Checked as the file's Huddle wrote them, before any later migration touches them.
        _check_cursors(db, header.get("cursors", {}))
        _check_audit_heads(db, projects, header.get("audit_heads", {}), "audit_log" in tables)
        version, upgraded = db.migrate_within()
        db.rebuild_derived()  # at this Huddle's schema, which its full-text code knows
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return {
        "schema_version": version,
        "file_schema_version": file_version,
        "target_schema_version": before,
        "created": created,  # migrations applied before the rows went in (up to the file's version)
        "upgraded": upgraded,  # migrations applied to the imported rows (the file's Huddle lacked them)
        "projects": projects,
        "tables": counts,
        "replaced": replaced,
        "cursors": header.get("cursors", {}),
        "seconds": time.monotonic() - started,
    }


def _skip_table(lines: _Lines, section: dict[str, Any]) -> int:
    count, columns = section.get("rows"), section.get("columns")
    if not isinstance(count, int) or not isinstance(columns, list):
        raise HuddleError(
            f"line {lines.number} of {lines.name} is not a table heading; the file is damaged, export again"
        )
    for _ in _rows(lines, str(section["table"]), len(columns), count):
        pass
    return count


def _import_table(db: Database, lines: _Lines, tables: dict[str, Table], section: Any, version: int) -> dict[str, int]:
    if not (
        isinstance(section, dict)
        and isinstance(section.get("table"), str)
        and isinstance(section.get("columns"), list)
        and isinstance(section.get("rows"), int)
    ):
        raise HuddleError(
            f"line {lines.number} of {lines.name} is not a table heading; the file is damaged, export again"
        )
    name, columns, count = section["table"], [str(c) for c in section["columns"]], section["rows"]
    table = tables.get(name)
    if table is None:
        raise HuddleError(
            f"{lines.name} has a table {name!r} that schema version {version} of this Huddle does not; the"
            f" Huddle that wrote it had another schema {version}: import it with that version (nothing was"
            " imported)"
        )
    if set(columns) != set(table.columns):
        raise HuddleError(
            f"table {name} in {lines.name} has columns {sorted(columns)}, schema version {version} of this"
            f" Huddle has {sorted(table.columns)}; the Huddle that wrote it had another schema {version}:"
            " import it with that version (nothing was imported)"
        )
    try:
        inserted = db.insert(table, columns, _rows(lines, name, len(columns), count))
    except (psycopg.Error, sqlite3.Error) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HuddleError(
            f"importing table {name} failed ({detail}); nothing was imported. If the target keeps other"
            " projects whose ids clash, import into an empty database"
        ) from None
    return {name: inserted}


def _check_cursors(db: Database, expected: dict[str, Any]) -> None:
    """Every project's newest event cursor arrived exactly: clients' saved cursors stay valid."""
    for project, cursor in expected.items():
        got = int(db.scalar("SELECT MAX(cursor) FROM events WHERE project = ?", (project,)) or 0)
        if got != int(cursor):
            raise HuddleError(
                f"after import the newest event cursor of {project} is {got}, the file says {cursor};"
                " nothing was imported"
            )


def _check_audit_heads(db: Database, projects: Sequence[str], expected: Any, audited: bool) -> None:
    """Every project's audit chain arrived up to the head the file names: the moved log still verifies.

    `audited`: the schema has the audit log (011); a file from before it names no heads."""
    if not isinstance(expected, dict):
        raise HuddleError("the file's header has a damaged audit_heads; export again (nothing was imported)")
    if not audited:
        if expected:
            raise HuddleError(
                "the file's header names audit heads, but its schema version has no audit log; the file is"
                " damaged, export again (nothing was imported)"
            )
        return
    got = _audit_heads(db, projects)
    for project in projects:
        want = expected.get(project)
        if got.get(project) != (list(want) if isinstance(want, list) else None):
            raise HuddleError(
                f"after import the audit log of {project} ends at {got.get(project) or 'no row'}, the file says"
                f" {want or 'no row'}; nothing was imported"
            )
