"""PostgreSQL backend: the same transaction functions as SQLite, for several Huddle processes.

Why it is safe for many instances at once:
- Every write transaction begins by taking the project's advisory lock (`pg_advisory_xact_lock`),
  held to COMMIT. Writers of one project are therefore serialised across every process, exactly as
  SQLite's single writer serialises them in one process: the read-then-insert checks of lock grants,
  task claims and thread claims stay exactly-once, and fencing tokens keep rising.
- Under that lock an event takes cursor `MAX(cursor) + 1` of its project, so cursors are dense and
  assigned in commit order: a reader that sees cursor N+1 has seen N (the lock is released only
  after the commit is visible). `get_updates`, SSE resume and MQTT catch-up can trust `cursor > N`.
- Each commit NOTIFYs the other instances; their `EventFeed` (storage/feed.py) reads the new events
  by cursor into their own bus, so lock queues, blocking waits and every push channel hear of
  commits made anywhere.
- Background jobs run on one elected instance (`lead()`: a session advisory lock, freed by
  PostgreSQL the moment the leader's connection dies).

The SQL is the services' portable SQL with qmark parameters; `PgTx` rewrites the placeholders
once per statement text (cached). The group-commit writer is shared with SQLite.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import psycopg
from psycopg.rows import dict_row

from huddle.domain.events import Event
from huddle.errors import Unavailable
from huddle.storage import migrations
from huddle.storage.base import Row, Tx, Unit
from huddle.storage.feed import EventFeed
from huddle.storage.group_commit import GroupCommitStore

T = TypeVar("T")
log = logging.getLogger(__name__)
NOTIFY_CHANNEL = "huddle_events"
# Waiting longer than this for another instance's write lock means something is stuck: fail the
# batch with a retryable error instead of hanging every caller.
LOCK_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 10


@functools.lru_cache(maxsize=8192)
def to_pyformat(sql: str) -> str:
    """qmark SQL → psycopg's `%s` style: `?` becomes `%s`, a literal `%` becomes `%%`.

    Quoted text ('...' strings, "..." identifiers) is copied as it is, so a `?` or `%` inside a
    string literal (LIKE 'git_%') keeps its meaning.
    """
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


class PgTx:
    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]):
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(to_pyformat(sql), params).rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = list(rows)
        if batch:
            with self._conn.cursor() as cur:
                cur.executemany(to_pyformat(sql), batch)

    def insert(self, sql: str, params: Sequence[Any], key: str) -> int:
        row = self.one(f"{sql} RETURNING {key}", params)
        if row is None:
            raise ValueError("Tx.insert wrote no row; it takes an INSERT of exactly one")
        return int(row[key])

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return cast(Row | None, self._conn.execute(to_pyformat(sql), params).fetchone())

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return cast(list[Row], self._conn.execute(to_pyformat(sql), params).fetchall())


def connection_name(role: str, instance: str | None) -> str:
    """`huddle[-role]:<instance>`: PostgreSQL then knows which instances are connected right now
    (service/instances.py reads pg_stat_activity), the moment a killed process's sockets close."""
    name = "huddle" if not role else f"huddle-{role}"
    return f"{name}:{instance}" if instance else name


def connect(url: str, instance: str | None = None) -> psycopg.Connection[dict[str, Any]]:
    """An autocommit connection (transactions are explicit BEGIN … COMMIT, as on SQLite)."""
    try:
        conn = psycopg.connect(
            url,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=connection_name("", instance),
        )
    except psycopg.Error as exc:
        raise Unavailable(
            f"cannot connect to PostgreSQL at {redact(url)} ({' '.join(str(exc).split())}); "
            "check that PostgreSQL is running and that --db-url (HUDDLE_DB_URL) names its host, port, user and database"
        ) from None
    conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
    return conn


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "<unparseable db_url>"
    host = info.get("host", "localhost")
    port = info.get("port", "5432")
    return f"postgresql://{info.get('user', '')}@{host}:{port}/{info.get('dbname', '')}"


# The advisory lock migrators take (huddle migrate, a starting server, huddle import's transaction).
MIGRATE_LOCK = "huddle:migrate"


def migrate(conn: psycopg.Connection[dict[str, Any]]) -> tuple[int, list[int]]:
    """Applies the PostgreSQL migrations not applied yet, one process at a time (advisory lock)."""

    def execute(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        cur = conn.execute(to_pyformat(sql), params)
        return [tuple(r.values()) for r in cur.fetchall()] if cur.description else []

    conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (MIGRATE_LOCK,))
    try:
        return migrations.migrate(
            "postgresql", execute, begin=lambda: conn.execute("BEGIN"), commit=lambda: conn.execute("COMMIT")
        )
    except BaseException:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (MIGRATE_LOCK,))


def check_schema(url: str) -> None:
    """Before a server starts: the database answers, and no newer Huddle migrated it."""
    with connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS t").fetchone()
        if not exists or not exists["t"]:
            return  # an empty database: the server migrates it
        applied = {int(r["version"]) for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
    migrations.refuse_newer(applied, migrations.known_versions("postgresql"))


class PostgresStore(GroupCommitStore[psycopg.Connection[dict[str, Any]]]):
    """Team mode: any number of Huddle processes on one PostgreSQL database."""

    dialect = "postgresql"
    shared = True
    db_errors = (psycopg.Error,)

    def __init__(
        self, url: str, project: str, *, clock: Callable[[], float] = time.time, readers: int = 4, poll_s: float = 1.0
    ):
        super().__init__(project, clock=clock)
        self.url = url
        self._readers = readers
        self._read_pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[psycopg.Connection[dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.feed = EventFeed(self, poll_s=poll_s)
        self._leader: psycopg.AsyncConnection[Any] | None = None
        self._leading = False

    async def open(self) -> None:
        conn = await asyncio.to_thread(connect, self.url, self.instance)
        try:
            self.schema_version, _ = await asyncio.to_thread(migrate, conn)
        except BaseException:
            conn.close()
            raise
        self._start_writer(conn)
        self._read_pool = ThreadPoolExecutor(max_workers=self._readers, thread_name_prefix="huddle-pg-reader")
        await self.feed.start()

    async def close(self) -> None:
        await self.feed.stop()
        await self._stop_writer()
        if self._read_pool is not None:
            self._read_pool.shutdown(wait=True)
            self._read_pool = None
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        if self._leader is not None:
            await self._leader.close()
            self._leader = None
            self._leading = False

    # -- leadership ----------------------------------------------------------------------------

    async def lead(self) -> bool:
        """True while this process holds the project's leader lock (background jobs run here).

        A session-level advisory lock on a connection of its own: PostgreSQL frees it the moment
        that connection dies with its process, so another instance takes over on its next try.
        """
        key = f"huddle-leader:{self.project}"
        try:
            if self._leader is None or self._leader.closed:
                self._leading = False
                self._leader = await psycopg.AsyncConnection.connect(
                    self.url,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    application_name=connection_name("leader", self.instance),
                )
            if self._leading:
                await self._leader.execute("SELECT 1")  # still connected, so still holding the lock
                return True
            cur = await self._leader.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,))
            row = await cur.fetchone()
            self._leading = bool(row and row[0])
        except psycopg.Error as exc:
            log.warning("leader election: %s", exc)
            if self._leader is not None:
                await self._leader.close()
            self._leader = None
            self._leading = False
        return self._leading

    # -- reads ---------------------------------------------------------------------------------

    async def read(self, fn: Callable[[Unit], T]) -> T:
        if self._read_pool is None:
            raise Unavailable("the database is not open; is the server shutting down?")
        return await asyncio.get_running_loop().run_in_executor(self._read_pool, self._run_read, fn)

    def _reader(self) -> psycopg.Connection[dict[str, Any]]:
        """This reader thread's connection (a new one when it has none or its last one broke)."""
        conn: psycopg.Connection[dict[str, Any]] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            fresh = connect(self.url, self.instance)
            with self._lock:
                if conn is not None and conn in self._reader_conns:
                    self._reader_conns.remove(conn)
                self._reader_conns.append(fresh)
            self._local.conn = conn = fresh
        return conn

    def _run_read(self, fn: Callable[[Unit], T]) -> T:
        conn = self._reader()
        try:
            # One snapshot for every statement of fn, as SQLite's BEGIN gives a WAL reader.
            try:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            except psycopg.OperationalError:
                # Dropped while idle (a restart, a failover, an idle timeout): nothing ran yet.
                conn.close()
                conn = self._reader()
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                return fn(Unit(PgTx(conn), self._clock(), self.project))
            finally:
                if not conn.closed:
                    conn.execute("ROLLBACK")
        except psycopg.OperationalError as exc:
            conn.close()
            raise Unavailable(f"the database could not be read ({exc}); retry the call") from None

    # -- the writer's connection ---------------------------------------------------------------

    def _connect_writer(self) -> psycopg.Connection[dict[str, Any]]:
        return connect(self.url, self.instance)

    def _tx(self, conn: psycopg.Connection[dict[str, Any]]) -> PgTx:
        return PgTx(conn)

    def _begin(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (self.project,))

    def _before_commit(self, tx: Tx, events: list[Event]) -> None:
        if events:  # delivered to listeners only when (and if) the transaction commits
            tx.execute("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, self.project))

    def _commit(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        # PostgreSQL answers COMMIT on a transaction an error aborted with a ROLLBACK, and psycopg
        # raises nothing: a job that caught its own failed statement and returned would be told
        # its write stands. (A job in a batch is caught by its RELEASE SAVEPOINT failing; a job
        # alone runs without one.) The failure goes to the batch's callers as retryable.
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            raise psycopg.errors.InFailedSqlTransaction(
                "a statement failed earlier in this transaction, so nothing of it was committed"
            )
        conn.execute("COMMIT")

    def _rollback(self, conn: psycopg.Connection[dict[str, Any]]) -> psycopg.Connection[dict[str, Any]]:
        try:
            if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            if not conn.closed:
                return conn
        except psycopg.Error:
            conn.close()
        try:  # the connection broke: the next batch gets a fresh one (or fails and tries again)
            return connect(self.url, self.instance)
        except Unavailable as exc:
            log.warning("writer reconnect failed: %s", exc)
            return conn

    def _close_writer(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        conn.close()

    def _publish(self, events: list[Event]) -> None:
        self.feed.local_commit(events)
