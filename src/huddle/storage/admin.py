"""Direct access to a Huddle database for operator commands (`huddle migrate`, `export`, `import`).

A server reaches its database through a Store (one writer thread, group commit); an operator
command needs other things: the schema version and pending migrations, the list of tables and
columns *as the database describes them* (so export and import never carry a hand-written table
list that rots as migrations add tables), one consistent read snapshot, one write transaction, and
the counters that number new rows. `Database` is that, for SQLite and PostgreSQL. SQL passed to it
uses qmark parameters, as everywhere else in Huddle.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import tuple_row

from huddle.errors import HuddleError
from huddle.storage import migrations, postgres
from huddle.storage.base import Unit
from huddle.storage.sqlite import apply_migrations

# Bookkeeping of the migrator, not data: every database has its own.
MIGRATIONS_TABLE = "schema_migrations"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]  # every stored column, generated ones left out (the database computes them)
    identity: str | None  # the column the database numbers (SQLite AUTOINCREMENT, PostgreSQL IDENTITY)

    @property
    def scope(self) -> str | None:
        """How a row names its project: its own `project` column, or its thread (`thread_id` → threads.id)."""
        if "project" in self.columns:
            return "project"
        if "thread_id" in self.columns:
            return "thread"
        return None

    def where(self, projects: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
        """The condition selecting the rows of `projects` (qmark SQL and its parameters)."""
        marks = ", ".join("?" for _ in projects)
        if self.scope == "project":
            return f"project IN ({marks})", tuple(projects)
        if self.scope == "thread":
            return f"thread_id IN (SELECT id FROM threads WHERE project IN ({marks}))", tuple(projects)
        raise HuddleError(
            f"table {self.name} has neither a project nor a thread_id column, so its rows cannot be split by "
            "project; export every project (leave out --project)"
        )


def quote(name: str) -> str:
    """A table or column name as an SQL identifier (names come from the schema, quoted all the same)."""
    return '"' + name.replace('"', '""') + '"'


class Database(ABC):
    """One database, opened by an operator command; `close()` it (or use it as a context manager)."""

    dialect: str
    label: str  # where it is, for messages (a URL without its password, or a file path)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None: ...

    # -- schema --------------------------------------------------------------------------------

    @abstractmethod
    def applied_versions(self) -> set[int]:
        """Schema versions recorded in schema_migrations (empty for a database without Huddle's schema)."""

    @abstractmethod
    def migrate(self) -> tuple[int, list[int]]:
        """Applies pending migrations; returns (schema version, versions applied now)."""

    def migrate_within(self, up_to: int | None = None) -> tuple[int, list[int]]:
        """Applies pending migrations up to `up_to` (default: all) inside the transaction `begin_write`
        opened, so that they are undone with it; returns (schema version, versions applied now)."""
        return migrations.migrate(self.dialect, self._migration_statement, _nothing, _nothing, up_to=up_to)

    @abstractmethod
    def _migration_statement(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Runs one statement of a migration (qmark parameters); returns its rows, if any."""

    def pending(self) -> list[tuple[int, str]]:
        """Migrations this Huddle would apply, as (version, file name); refuses a newer schema."""
        applied = self.applied_versions()
        migrations.refuse_newer(applied, migrations.known_versions(self.dialect))
        files = migrations.migration_files(self.dialect)
        return [(migrations.version_of(f), f.name) for f in files if migrations.version_of(f) not in applied]

    def schema_version(self) -> int:
        return max(self.applied_versions(), default=0)

    @abstractmethod
    def tables(self) -> list[Table]:
        """Every table holding Huddle's data, by name (schema_migrations and derived indexes left out)."""

    # -- transactions and statements -----------------------------------------------------------

    @abstractmethod
    def begin_snapshot(self) -> None:
        """A read-only transaction: every statement until `end()` sees one consistent snapshot."""

    @abstractmethod
    def begin_write(self, projects: Sequence[str]) -> None:
        """A write transaction that keeps the servers' writers of `projects`, and any migrator, out
        until `commit()`."""

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def rollback(self) -> None: ...

    @abstractmethod
    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Streams the rows of a query (not all held in memory at once)."""

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        for row in self.rows(sql, params):
            return row[0]
        return None

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    @abstractmethod
    def insert(self, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Inserts rows as they are (ids and cursors included); returns how many."""

    # -- counters ------------------------------------------------------------------------------

    @abstractmethod
    def high_water(self, tables: Sequence[Table]) -> dict[str, int]:
        """Per table, the highest number its counter has handed out (ids of deleted rows included)."""

    @abstractmethod
    def raise_counters(self, tables: Sequence[Table], high_water: dict[str, int]) -> None:
        """After rows were inserted with their own ids: new rows must be numbered after them.

        Counters only ever go up: never below the highest id present, the source's high-water mark,
        or what the counter had already handed out here.
        """

    @abstractmethod
    def rebuild_derived(self) -> None:
        """Rebuilds what is derived from the imported rows (SQLite's full-text index)."""


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = path
        self.label = str(path)
        if readonly:
            self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)
        else:
            self._conn = sqlite3.connect(path, isolation_level=None, timeout=30)
            # As the server opens it (storage/sqlite.py): WAL, and every commit durable.
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=30000")

    def close(self) -> None:
        self._conn.close()

    def applied_versions(self) -> set[int]:
        try:
            return {int(r[0]) for r in self._conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE}")}
        except sqlite3.OperationalError:
            return set()  # no schema_migrations table: no Huddle schema yet

    def migrate(self) -> tuple[int, list[int]]:
        return apply_migrations(self._conn)  # as the server migrates (storage/sqlite.py)

    def _migration_statement(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._conn.execute(sql, params).fetchall()]

    def tables(self) -> list[Table]:
        listed = self._conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
        # A virtual table (FTS5) is an index over other tables' rows, and its shadow tables
        # (<name>_data, <name>_idx, …) are its storage: both are rebuilt, not copied.
        virtual = [name for name, ddl in listed if (ddl or "").upper().startswith("CREATE VIRTUAL TABLE")]
        out = []
        for name, ddl in listed:
            if name.startswith("sqlite_") or name == MIGRATIONS_TABLE or name in virtual:
                continue
            if any(name.startswith(f"{v}_") for v in virtual):
                continue
            info = self._conn.execute("SELECT name, type, pk, hidden FROM pragma_table_xinfo(?)", (name,)).fetchall()
            columns = tuple(col for col, _, _, hidden in info if hidden == 0)  # hidden 2/3: generated
            keys = [(col, kind) for col, kind, pk, _ in info if pk]
            identity = None
            if "AUTOINCREMENT" in (ddl or "").upper() and len(keys) == 1 and keys[0][1].upper() == "INTEGER":
                identity = keys[0][0]
            out.append(Table(name, columns, identity))
        return out

    def begin_snapshot(self) -> None:
        self._conn.execute("BEGIN")  # WAL: the first read fixes the snapshot; the server keeps writing

    def begin_write(self, projects: Sequence[str]) -> None:
        self._conn.execute("BEGIN IMMEDIATE")  # the one writer of the file, migrators included

    def commit(self) -> None:
        self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        yield from self._conn.execute(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def insert(self, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        statement = (
            f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))})"
            f" VALUES ({', '.join('?' for _ in columns)})"
        )
        count = 0

        def counted() -> Iterator[Sequence[Any]]:
            nonlocal count
            for row in rows:
                count += 1
                yield row

        self._conn.executemany(statement, counted())
        return count

    def high_water(self, tables: Sequence[Table]) -> dict[str, int]:
        try:
            seqs = dict(self._conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        except sqlite3.OperationalError:
            seqs = {}
        return {t.name: int(seqs[t.name]) for t in tables if t.identity and seqs.get(t.name)}

    def raise_counters(self, tables: Sequence[Table], high_water: dict[str, int]) -> None:
        # SQLite already moved sqlite_sequence up to every id inserted; the source's high-water
        # mark also covers ids it handed out to rows deleted since.
        for t in tables:
            mark = high_water.get(t.name, 0)
            if not t.identity or mark <= 0:
                continue
            if self.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?", (mark, t.name)) == 0:
                self.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (t.name, mark))

    def rebuild_derived(self) -> None:
        from huddle.service.shared_context import FullText

        self._conn.row_factory = sqlite3.Row  # what transaction functions read rows as
        try:
            from huddle.storage.sqlite import SqliteTx

            FullText.rebuild(Unit(SqliteTx(self._conn), 0.0, ""))
        finally:
            self._conn.row_factory = None


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, url: str):
        self.url = url
        self.label = postgres.redact(url)
        self._conn = postgres.connect(url)  # autocommit: transactions are explicit, as in the store
        # Not a server's connection: `server_sessions()` tells the two apart by this name.
        self._conn.execute("SET application_name = 'huddle-admin'")

    def close(self) -> None:
        self._conn.close()

    def applied_versions(self) -> set[int]:
        if self.scalar("SELECT to_regclass(?)", (MIGRATIONS_TABLE,)) is None:
            return set()
        return {int(r[0]) for r in self.rows(f"SELECT version FROM {MIGRATIONS_TABLE}")}

    def migrate(self) -> tuple[int, list[int]]:
        return postgres.migrate(self._conn)

    def _migration_statement(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(postgres.to_pyformat(sql), params)
            return cur.fetchall() if cur.description else []

    def server_sessions(self) -> list[tuple[int, str]]:
        """Connections Huddle servers hold on this database: (pid, application name)."""
        return [
            (int(pid), str(name))
            for pid, name in self.rows(
                "SELECT pid, application_name FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND application_name LIKE 'huddle%'"
                " AND application_name <> 'huddle-admin' ORDER BY pid"
            )
        ]

    def tables(self) -> list[Table]:
        names = [
            r[0]
            for r in self.rows(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
                " AND table_type = 'BASE TABLE' ORDER BY table_name"
            )
            if r[0] != MIGRATIONS_TABLE
        ]
        out = []
        for name in names:
            info = list(
                self.rows(
                    "SELECT column_name, is_generated, is_identity FROM information_schema.columns"
                    " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
                    (name,),
                )
            )
            columns = tuple(col for col, generated, _ in info if generated != "ALWAYS")  # tsvector: computed
            identity = next((col for col, _, ident in info if ident == "YES"), None)
            out.append(Table(name, columns, identity))
        return out

    def begin_snapshot(self) -> None:
        self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def begin_write(self, projects: Sequence[str]) -> None:
        self._conn.execute("BEGIN")
        # The lock `huddle migrate` and a starting server migrate under (storage/postgres.py): the
        # schema this transaction reads, and migrates within it, is nobody else's to change meanwhile.
        self._conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (postgres.MIGRATE_LOCK,))
        # The servers' writers of these projects take the same lock (storage/postgres.py): while
        # the import runs, none of them can write half-way into it.
        for project in sorted(projects):
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (project,))

    def commit(self) -> None:
        self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if not self._conn.closed and self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._conn.execute("ROLLBACK")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        with self._conn.cursor(row_factory=tuple_row) as cur:
            yield from cur.stream(postgres.to_pyformat(sql), params)

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        # Not through rows(): a stream left after its first row would have to be drained or cancelled.
        with self._conn.cursor(row_factory=tuple_row) as cur:
            row = cur.execute(postgres.to_pyformat(sql), params).fetchone()
        return row[0] if row else None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(postgres.to_pyformat(sql), params).rowcount

    def insert(self, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        statement = pgsql.SQL("COPY {} ({}) FROM STDIN").format(
            pgsql.Identifier(table.name), pgsql.SQL(", ").join(map(pgsql.Identifier, columns))
        )
        count = 0
        with self._conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        return count

    def _sequence(self, table: Table) -> str | None:
        assert table.identity is not None
        return self.scalar("SELECT pg_get_serial_sequence(?, ?)", (quote(table.name), table.identity))  # type: ignore[no-any-return]

    def high_water(self, tables: Sequence[Table]) -> dict[str, int]:
        out = {}
        for t in tables:
            sequence = self._sequence(t) if t.identity else None
            last = self.scalar("SELECT pg_sequence_last_value(CAST(? AS regclass))", (sequence,)) if sequence else None
            if last:
                out[t.name] = int(last)
        return out

    def raise_counters(self, tables: Sequence[Table], high_water: dict[str, int]) -> None:
        for t in tables:
            sequence = self._sequence(t) if t.identity else None
            if sequence is None or t.identity is None:
                continue
            highest = self.scalar(f"SELECT MAX({quote(t.identity)}) FROM {quote(t.name)}") or 0
            handed_out = self.scalar("SELECT pg_sequence_last_value(CAST(? AS regclass))", (sequence,)) or 0
            mark = max(int(highest), int(handed_out), high_water.get(t.name, 0))
            if mark > 0:  # the next row gets mark + 1
                self.execute("SELECT setval(CAST(? AS regclass), ?, true)", (sequence, mark))

    def rebuild_derived(self) -> None:
        pass  # the tsvector column is GENERATED: PostgreSQL computed it as each row went in


def _nothing() -> None:
    """`begin` and `commit` of a migration file run inside the caller's transaction."""


def open_database(*, url: str = "", path: Path | None = None, readonly: bool = False) -> Database:
    """PostgreSQL at `url`, else the SQLite file at `path`; a clear HuddleError if it cannot be opened."""
    if url:
        return PostgresDatabase(url)
    assert path is not None
    try:
        return SqliteDatabase(path, readonly=readonly)
    except sqlite3.Error as exc:
        raise HuddleError(f"cannot open {path} ({exc}); check the --data-dir") from None


def describe_versions(versions: Iterable[tuple[int, str]]) -> str:
    return ", ".join(f"{v:03d} ({name.removesuffix('.sql').split('_', 1)[-1]})" for v, name in versions)


@contextlib.contextmanager
def database_errors(db_label: str) -> Iterator[None]:
    """Turns a driver error met by an operator command into one clear line (never a traceback)."""
    try:
        yield
    except psycopg.Error as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HuddleError(
            f"PostgreSQL error on {db_label}: {detail}; check the --db-url and that the database is reachable"
        ) from None
    except sqlite3.Error as exc:
        raise HuddleError(
            f"database error on {db_label}: {exc}; check the file (`huddle doctor`) or restore a backup"
        ) from None


def jsonable(value: Any, table: str, column: str) -> Any:
    """A value as JSON carries it, or a clear error for one it cannot carry (no BLOB columns exist)."""
    if value is None or isinstance(value, (int, float, str)):
        return value
    raise HuddleError(
        f"table {table} column {column} holds a {type(value).__name__} value ({json.dumps(repr(value))[:60]}),"
        " which huddle export cannot carry"
    )
