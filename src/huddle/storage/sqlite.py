"""SQLite backend: the default, a file in the data dir, durable on every acknowledged write.

One writer thread with group commit (storage/group_commit.py) and WAL readers beside it: SQLite
allows one writer at a time, and a busy writer batching requests into one fsync is what keeps
`synchronous=FULL` cheap. Reads run on their own connections and see every committed write thanks
to WAL. One process owns the file (the data dir's server lock), so this store is never shared.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from huddle.errors import Unavailable
from huddle.storage import migrations
from huddle.storage.base import Row, Unit
from huddle.storage.group_commit import GroupCommitStore

T = TypeVar("T")
log = logging.getLogger(__name__)


class SqliteTx:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def insert(self, sql: str, params: Sequence[Any], key: str) -> int:
        cursor = self._conn.execute(sql, params)  # `key` is the rowid (the contract)
        # An INSERT that wrote no row (ON CONFLICT DO NOTHING) leaves the previous insert's rowid.
        if cursor.rowcount != 1 or cursor.lastrowid is None:
            raise ValueError(f"Tx.insert wrote {cursor.rowcount} rows; it takes an INSERT of exactly one")
        return cursor.lastrowid

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return cast(Row | None, self._conn.execute(sql, params).fetchone())

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return cast(list[Row], self._conn.execute(sql, params).fetchall())


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA cache_size=-32000")
    conn.execute("PRAGMA temp_store=MEMORY")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    return conn


def apply_migrations(conn: sqlite3.Connection) -> tuple[int, list[int]]:
    """Applies the SQLite migrations not applied yet; returns (schema version, versions applied now)."""

    def execute(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]

    return migrations.migrate(
        "sqlite", execute, begin=lambda: conn.execute("BEGIN IMMEDIATE"), commit=lambda: conn.execute("COMMIT")
    )


def migrate(conn: sqlite3.Connection) -> int:
    """Applies the SQLite migrations not applied yet; returns the schema version."""
    return apply_migrations(conn)[0]


def check_schema(path: Path) -> None:
    """The schema-version guard, before a server starts: refuses a database a newer Huddle wrote."""
    if not path.exists():
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    except sqlite3.Error:
        return  # no migrations table yet: migrate() creates it
    finally:
        conn.close()
    migrations.refuse_newer(applied, migrations.known_versions("sqlite"))


# Planner statistics (sqlite_stat1). Without them SQLite takes `project = ?` for a selective
# condition, though every row of a project's database has the same project, and read a whole table
# through an index that starts with it: 10,000 leases for one lease's overlap check. PostgreSQL's
# autovacuum keeps its statistics; here the store runs ANALYZE when it opens and again each time
# the commits since then double (from ANALYZE_AFTER on), as the tables grow. Sampling at most
# ANALYSIS_LIMIT rows per index keeps each run to milliseconds at any size.
ANALYSIS_LIMIT = 1000
ANALYZE_AFTER = 1000

# The writer checkpoints the WAL into the database file (inside the COMMIT that fills it past this
# many pages, as SQLite does) and the WAL starts over. SQLite's default, 1,000 pages, put a
# checkpoint of 1–2 ms into one announce in fifty; at 4,000 pages (16 MB of WAL) they come a quarter
# as often, and cost less per commit: the pages every announce rewrites (the tails of tables and
# indexes) are copied to the database once per checkpoint however often they changed. Measured
# (three runs each way, alternating): COMMIT's p98 over HTTP 1.2 -> 0.4–0.7 ms for announces and
# its p99 0.8 -> 0.5 ms for lease calls (benchmarks/stages.py); in-process, at one announce a
# millisecond, announces slower than 1.5 ms 102 -> 62 in 3,000. A larger WAL makes each read
# search more of the WAL's index, so not more.
WAL_CHECKPOINT_PAGES = 4000


def refresh_statistics(conn: sqlite3.Connection) -> bool:
    """Recomputes the planner statistics on `conn` (a writable connection); False if it could not."""
    try:
        conn.execute(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
        conn.execute("ANALYZE")
    except sqlite3.Error:
        log.warning("could not refresh SQLite's planner statistics; queries may read more than they need")
        return False
    return True


class SqliteStore(GroupCommitStore[sqlite3.Connection]):
    """The default backend: a file in the data dir, durable on every acknowledged write."""

    dialect = "sqlite"
    db_errors = (sqlite3.Error,)

    def __init__(
        self,
        path: Path,
        project: str,
        *,
        clock: Callable[[], float] = time.time,
        readers: int = 2,
        analyze_after: int = ANALYZE_AFTER,
    ):
        super().__init__(project, clock=clock)
        self.path = path
        self._readers = readers
        self._read_pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._commits = 0
        self._analyze_at = analyze_after
        # Bumped after each ANALYZE: a connection loads the statistics when it opens, so readers
        # opened before reconnect (the writer, which ran it, has them already).
        self.statistics_generation = 0

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect_writer()
        self.schema_version = migrate(conn)
        refresh_statistics(conn)
        self._start_writer(conn)
        self._read_pool = ThreadPoolExecutor(max_workers=self._readers, thread_name_prefix="huddle-sqlite-reader")

    async def close(self) -> None:
        await self._stop_writer()
        if self._read_pool is not None:
            self._read_pool.shutdown(wait=True)
            self._read_pool = None
        for conn in self._reader_conns:
            conn.close()
        self._reader_conns.clear()

    async def lead(self) -> bool:
        return True  # one process owns the file: it runs every background job

    async def read(self, fn: Callable[[Unit], T]) -> T:
        if self._read_pool is None:
            raise Unavailable("the database is not open; is the server shutting down?")
        return await asyncio.get_running_loop().run_in_executor(self._read_pool, self._run_read, fn)

    def _run_read(self, fn: Callable[[Unit], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.generation != self.statistics_generation:
            self._reader_conns.remove(conn)
            conn.close()
            conn = None
        if conn is None:
            self._local.generation = self.statistics_generation
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
            self._reader_conns.append(conn)
        conn.execute("BEGIN")  # one snapshot for every statement of fn
        try:
            return fn(Unit(SqliteTx(conn), self._clock(), self.project))
        finally:
            conn.execute("COMMIT")

    # -- the writer's connection ---------------------------------------------------------------

    def _connect_writer(self) -> sqlite3.Connection:
        conn = _connect(self.path, readonly=False)
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        return conn

    def _tx(self, conn: sqlite3.Connection) -> SqliteTx:
        return SqliteTx(conn)

    def _begin(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def _commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")
        self._commits += 1
        if self._commits >= self._analyze_at:
            self._analyze_at = 2 * self._commits
            if refresh_statistics(conn):
                self.statistics_generation += 1

    def _rollback(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return conn

    def _close_writer(self, conn: sqlite3.Connection) -> None:
        conn.close()
