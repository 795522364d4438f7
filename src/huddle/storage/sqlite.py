"""SQLite backend: one writer thread with group commit, WAL readers beside it.

Why this shape (after Datasette): SQLite allows one writer at a time, so a single thread owns the
write connection and runs whole transaction functions — one thread hop per request. Requests that
arrive while a commit is in flight are batched into the next transaction, each in its own
SAVEPOINT so one failing request rolls back alone. One fsync then covers the whole batch, which
is what keeps `synchronous=FULL` (acknowledged writes survive power loss) cheap under load.
Reads run on their own connections and see every committed write thanks to WAL.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

from huddle.domain.events import Event
from huddle.errors import Unavailable
from huddle.storage.base import CommitListener, Row, Unit

T = TypeVar("T")
log = logging.getLogger(__name__)
MAX_BATCH = 128


class SqliteTx:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return cast(Row | None, self._conn.execute(sql, params).fetchone())

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return cast(list[Row], self._conn.execute(sql, params).fetchall())


@dataclass
class _Job:
    fn: Callable[[Unit], Any]
    future: asyncio.Future[Any]


_STOP = object()


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


def migrate(conn: sqlite3.Connection, package: str = "huddle.storage.schema") -> int:
    """Applies the numbered `*.sql` files of `package` not applied yet; returns the schema version."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    files = sorted((f for f in resources.files(package).iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    known = {int(f.name.split("_", 1)[0]) for f in files}
    _refuse_newer(applied, known)
    for f in files:
        version = int(f.name.split("_", 1)[0])
        if version in applied:
            continue
        conn.execute("BEGIN IMMEDIATE")
        for statement in _split_sql(f.read_text()):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, f.name))
        conn.execute("COMMIT")
    return max(known | applied, default=0)


def _refuse_newer(applied: set[int], known: set[int]) -> None:
    newer = {v for v in applied if v not in known}
    if newer:
        raise Unavailable(
            f"the database has schema version(s) {sorted(newer)} that this Huddle does not know; "
            "upgrade Huddle or point --data-dir at another directory"
        )


def check_schema(path: Path, package: str = "huddle.storage.schema") -> None:
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
    known = {int(f.name.split("_", 1)[0]) for f in resources.files(package).iterdir() if f.name.endswith(".sql")}
    _refuse_newer(applied, known)


def _split_sql(script: str) -> list[str]:
    """Splits a migration into statements (executescript would commit behind our back)."""
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


class SqliteStore:
    """The default backend: a file in the data dir, durable on every acknowledged write."""

    def __init__(self, path: Path, project: str, *, clock: Callable[[], float] = time.time, readers: int = 2):
        self.path = path
        self.project = project
        self._clock = clock
        self._readers = readers
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._read_pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._listeners: list[CommitListener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.schema_version = 0
        # Observer of each group commit: (jobs in the batch, seconds COMMIT took). Set by metrics.
        self.on_batch: Callable[[int, float], None] | None = None

    @property
    def pending_writes(self) -> int:
        """Write jobs queued for the writer thread (approximate, for metrics)."""
        return self._queue.qsize()

    def on_commit(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path, readonly=False)
        self.schema_version = migrate(conn)
        self._writer = threading.Thread(target=self._write_loop, args=(conn,), name="huddle-sqlite-writer", daemon=True)
        self._writer.start()
        self._read_pool = ThreadPoolExecutor(max_workers=self._readers, thread_name_prefix="huddle-sqlite-reader")

    async def close(self) -> None:
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
            self._writer = None
        if self._read_pool is not None:
            self._read_pool.shutdown(wait=True)
            self._read_pool = None
        for conn in self._reader_conns:
            conn.close()
        self._reader_conns.clear()

    async def write(self, fn: Callable[[Unit], T]) -> T:
        if self._writer is None:
            raise Unavailable("the database is not open; is the server shutting down?")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put(_Job(fn, future))
        return await future

    async def read(self, fn: Callable[[Unit], T]) -> T:
        if self._read_pool is None:
            raise Unavailable("the database is not open; is the server shutting down?")
        return await asyncio.get_running_loop().run_in_executor(self._read_pool, self._run_read, fn)

    # -- threads -------------------------------------------------------------------------

    def _run_read(self, fn: Callable[[Unit], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
            self._reader_conns.append(conn)
        conn.execute("BEGIN")  # one snapshot for every statement of fn
        try:
            return fn(Unit(SqliteTx(conn), self._clock(), self.project))
        finally:
            conn.execute("COMMIT")

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        tx = SqliteTx(conn)
        stopping = False
        while not stopping:
            batch: list[_Job] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                    break
                batch.append(cast(_Job, item))
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._run_batch(conn, tx, batch)
        conn.close()

    def _run_batch(self, conn: sqlite3.Connection, tx: SqliteTx, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None, list[Event]]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT job")
                unit = Unit(tx, self._clock(), self.project)
                try:
                    result = job.fn(unit)
                except BaseException as exc:  # the job's own failure: undo just this job
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((job, None, exc, []))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, result, None, unit.events))
            started = time.perf_counter()
            conn.execute("COMMIT")
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - started)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = Unavailable(f"the database could not commit ({exc}); retry the call")
            outcomes = [(job, None, failure, []) for job in batch]
        assert self._loop is not None
        # call_soon_threadsafe is FIFO, so listeners see events in commit order.
        self._loop.call_soon_threadsafe(self._deliver, outcomes)

    def _deliver(self, outcomes: list[tuple[_Job, Any, BaseException | None, list[Event]]]) -> None:
        committed = [event for _, _, _, events in outcomes for event in events]
        if committed:
            for listener in self._listeners:
                try:
                    listener(committed)
                except Exception:  # a broken push channel must never fail a committed write
                    log.exception("commit listener failed")
        for job, result, error, _ in outcomes:
            if job.future.done():  # the caller went away (cancelled); the write still stands
                continue
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)
