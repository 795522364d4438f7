"""The storage contract (storage/base.py `Store`) holds on SQLite and on PostgreSQL alike.

Every contract test runs on both backends. The PostgreSQL-only tests are the team-mode half of the
contract: several stores ("instances") on one database, a feed that survives losing its
connections, one leader at a time, and schema versions checked on open.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from huddle.errors import Conflict, Unavailable
from huddle.service.lock_store import next_token
from huddle.storage import migrations, postgres, sqlite
from huddle.storage.base import Store, Unit
from huddle.storage.postgres import PostgresStore
from huddle.storage.sqlite import SqliteStore
from postgres_helpers import fresh_database, migrated_database

WAIT_S = 20
POLL_S = 0.2  # how often a PostgreSQL feed reads the log without being woken


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Makes stores on one fresh database of each backend (several only on PostgreSQL)."""
    if request.param == "sqlite":
        yield lambda: SqliteStore(tmp_path / "huddle.db", "proj")
        return
    with migrated_database() as url:
        yield lambda: PostgresStore(url, "proj", poll_s=POLL_S)


@pytest.fixture
async def store(open_store: Callable[[], Store]) -> AsyncIterator[Store]:
    s = open_store()
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with migrated_database() as url:
        yield url


@pytest.fixture
async def pg_stores(pg_url: str) -> AsyncIterator[list[PostgresStore]]:
    """Three stores on one database, as three Huddle instances would hold them."""
    stores = [PostgresStore(pg_url, "proj", poll_s=POLL_S) for _ in range(3)]
    for s in stores:
        await s.open()
    try:
        yield stores
    finally:
        for s in stores:
            await s.close()


# -- helpers ------------------------------------------------------------------------------------


def emit_one(n: int) -> Callable[[Unit], int]:
    def txn(unit: Unit) -> int:
        return unit.emit("test.event", actor=f"a{n}", n=n).cursor

    return txn


def all_cursors(unit: Unit) -> list[int]:
    return [
        int(r["cursor"])
        for r in unit.tx.all("SELECT cursor FROM events WHERE project = ? ORDER BY cursor", (unit.project,))
    ]


def row_counts(unit: Unit) -> dict[str, int]:
    out = {}
    for table in ("events", "event_audience", "lock_counters"):
        row = unit.tx.one(f"SELECT COUNT(*) AS n FROM {table}")
        assert row is not None
        out[table] = int(row["n"])
    return out


def recorder(store: Store) -> list[list[int]]:
    """Registers a listener; returns the cursors of each commit it is handed, call by call."""
    calls: list[list[int]] = []
    store.on_commit(lambda events: calls.append([e.cursor for e in events]))
    return calls


def flat(calls: list[list[int]]) -> list[int]:
    return [c for call in calls for c in call]


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float = WAIT_S) -> None:
    """Waits for observable state, bounded (fails the test rather than hanging)."""
    with anyio.fail_after(timeout):
        while True:
            result = check()
            if result if isinstance(result, bool) else await result:
                return
            await anyio.sleep(0.01)


async def hold_writer(store: Store) -> tuple[asyncio.Future[Any], threading.Event]:
    """Occupies the writer thread with a job that waits for the returned gate (for batching)."""
    started, gate = threading.Event(), threading.Event()

    def hold(unit: Unit) -> None:
        started.set()
        gate.wait(WAIT_S)

    held = asyncio.ensure_future(store.write(hold))
    await until(started.is_set)
    return held, gate


async def terminate(url: str, *roles: str) -> int:
    """Kills the database sessions of these connection roles (as a failover or an admin would).

    Huddle names its connections `<role>:<instance>` (storage/postgres.py connection_name)."""

    def kill() -> int:
        with psycopg.connect(url, autocommit=True, application_name="huddle-test-killer") as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE split_part(application_name, ':', 1) = ANY(%s) AND datname = current_database()",
                (list(roles),),
            ).fetchall()
        return sum(1 for (ok,) in rows if ok)

    return await anyio.to_thread.run_sync(kill)


# -- the contract, on both backends ------------------------------------------------------------


async def test_a_transaction_function_is_atomic_and_its_error_reaches_the_caller(store: Store) -> None:
    calls = recorder(store)
    await store.write(emit_one(0))
    before = await store.read(row_counts)

    def half_done(unit: Unit) -> None:
        next_token(unit)
        unit.emit("test.half", actor="a", audience=("a", "b"))
        raise Conflict("changed my mind")

    with pytest.raises(Conflict, match="changed my mind"):
        await store.write(half_done)
    assert await store.read(row_counts) == before
    assert flat(calls) == [1]  # the undone event never reached a listener
    assert await store.write(emit_one(1)) == 2  # and its cursor was not used up


async def test_a_lone_job_whose_statement_fails_is_undone_whole_uncommitted_and_the_next_job_runs(
    store: Store,
) -> None:
    """A job alone in its transaction runs without a savepoint: its failure rolls the transaction back."""
    sizes: list[int] = []
    store.on_batch = lambda jobs, _seconds: sizes.append(jobs)
    calls = recorder(store)

    def broken_sql(unit: Unit) -> None:
        next_token(unit)
        unit.emit("test.broken", actor="c")
        unit.tx.execute("INSERT INTO lock_counters (project, last_token) VALUES (?, 1)", (unit.project,))

    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        await store.write(broken_sql)
    assert sizes == []  # nothing was committed
    assert await store.write(emit_one(0)) == 1  # the cursor the undone event took is free again
    assert flat(calls) == [1] and sizes == [1]

    def counters(unit: Unit) -> list[int]:
        return [int(r["last_token"]) for r in unit.tx.all("SELECT last_token FROM lock_counters")]

    assert await store.read(counters) == []


async def test_a_failing_job_in_a_batch_leaves_no_trace_and_spares_the_others(store: Store) -> None:
    sizes: list[int] = []
    store.on_batch = lambda jobs, _seconds: sizes.append(jobs)
    calls = recorder(store)

    def good(unit: Unit) -> int:
        next_token(unit)
        return unit.emit("test.ok", actor="a").cursor

    def refused(unit: Unit) -> int:
        unit.emit("test.refused", actor="b")
        raise Conflict("refused")

    def broken_sql(unit: Unit) -> int:
        # A statement error aborts a PostgreSQL transaction until its savepoint is rolled back.
        unit.emit("test.broken", actor="c")
        unit.tx.execute("INSERT INTO lock_counters (project, last_token) VALUES (?, 1)", ("dup",))
        unit.tx.execute("INSERT INTO lock_counters (project, last_token) VALUES (?, 1)", ("dup",))
        return 0

    held, gate = await hold_writer(store)
    jobs = [good, refused, good, broken_sql, good]
    pending = [asyncio.ensure_future(store.write(fn)) for fn in jobs]
    await until(lambda: store.pending_writes == len(jobs))  # type: ignore[attr-defined]
    gate.set()
    await held
    results = await asyncio.gather(*pending, return_exceptions=True)

    assert sizes == [1, len(jobs)]  # the five ran as one transaction
    assert results[0] == 1 and results[2] == 2 and results[4] == 3
    assert isinstance(results[1], Conflict)
    assert isinstance(results[3], (sqlite3.IntegrityError, psycopg.errors.UniqueViolation))
    assert flat(calls) == [1, 2, 3]

    def state(unit: Unit) -> tuple[list[str], list[tuple[str, int]]]:
        kinds = [r["kind"] for r in unit.tx.all("SELECT kind FROM events ORDER BY cursor")]
        counters = [(r["project"], int(r["last_token"])) for r in unit.tx.all("SELECT * FROM lock_counters")]
        return kinds, counters

    assert await store.read(state) == (["test.ok"] * 3, [("proj", 3)])


async def test_an_insert_returns_the_key_the_database_gave_its_row(store: Store) -> None:
    """`Tx.insert`: the rowid on SQLite (no RETURNING), the RETURNING value on PostgreSQL."""
    sql = (
        "INSERT INTO intents (project, agent_id, subject, kind, status, created_at, expires_at, target_files,"
        " depends_on_files, target_modules, target_symbols, verdict, impacts)"
        " VALUES (?, 'a', ?, 'edit', 'active', 0, 0, '[]', '[]', '[]', '[]', 'proceed', '[]')"
    )

    def insert(subjects: list[str]) -> Callable[[Unit], list[int]]:
        return lambda unit: [unit.tx.insert(sql, (unit.project, subject), "id") for subject in subjects]

    def refused(unit: Unit) -> None:
        unit.tx.insert(sql, (unit.project, "undone"), "id")
        raise Conflict("undone")

    first = await store.write(insert(["one", "two"]))
    with pytest.raises(Conflict):
        await store.write(refused)
    second = await store.write(insert(["three"]))

    def stored(unit: Unit) -> dict[str, int]:
        return {r["subject"]: int(r["id"]) for r in unit.tx.all("SELECT id, subject FROM intents")}

    assert await store.read(stored) == dict(zip(["one", "two", "three"], first + second, strict=True))


async def test_an_insert_that_writes_no_row_is_an_error_not_the_previous_rows_key(store: Store) -> None:
    sql = "INSERT INTO lock_counters (project, last_token) VALUES (?, 1) ON CONFLICT (project) DO NOTHING"

    def twice(unit: Unit) -> None:
        unit.tx.execute(sql, (unit.project,))
        unit.tx.insert(sql, (unit.project,), "last_token")

    with pytest.raises(ValueError, match="exactly one"):
        await store.write(twice)


async def test_events_reach_on_commit_listeners_in_cursor_order(store: Store) -> None:
    calls = recorder(store)

    def two_events(n: int) -> Callable[[Unit], list[int]]:
        def txn(unit: Unit) -> list[int]:
            return [unit.emit("test.pair", actor=f"a{n}", half=h).cursor for h in (1, 2)]

        return txn

    cursors: list[int] = []

    async def one(n: int) -> None:
        cursors.extend(await store.write(two_events(n)))

    async with anyio.create_task_group() as tg:
        for n in range(100):
            tg.start_soon(one, n)
    assert sorted(cursors) == list(range(1, 201))
    await until(lambda: len(flat(calls)) >= 200)  # on PostgreSQL the feed delivers on the loop
    assert flat(calls) == list(range(1, 201))  # each once, in cursor order
    assert all(call == list(range(call[0], call[0] + len(call))) for call in calls)


async def test_cursors_strictly_increase_in_commit_order_so_a_tailing_reader_never_sees_a_gap(store: Store) -> None:
    """A reader polling `cursor > last` while writers commit must see every cursor: had N+1 been
    visible before N, it would have moved past N and never seen it."""
    total = 4 * 60
    done = anyio.Event()
    seen: list[int] = []

    def after(last: int) -> Callable[[Unit], list[int]]:
        def read(unit: Unit) -> list[int]:
            rows = unit.tx.all(
                "SELECT cursor FROM events WHERE project = ? AND cursor > ? ORDER BY cursor", (unit.project, last)
            )
            return [int(r["cursor"]) for r in rows]

        return read

    async def tail() -> None:
        while len(seen) < total:
            writers_done = done.is_set()  # before the read: its snapshot then holds every write
            fresh = await store.read(after(seen[-1] if seen else 0))
            assert fresh == list(range(len(seen) + 1, len(seen) + 1 + len(fresh))), (seen[-3:], fresh[:3])
            seen.extend(fresh)
            if writers_done and not fresh:
                break
            await anyio.sleep(0)

    async def writer(w: int) -> None:
        for n in range(60):
            await store.write(emit_one(w * 100 + n))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(tail)
            async with anyio.create_task_group() as writers:
                for w in range(4):
                    writers.start_soon(writer, w)
            done.set()
    assert seen == list(range(1, total + 1))


async def test_migrations_are_idempotent(open_store: Callable[[], Store]) -> None:
    versions = []
    for _ in range(2):  # a second open of a migrated database applies nothing and changes nothing
        store = open_store()
        await store.open()
        versions.append(store.schema_version)  # type: ignore[attr-defined]
        await store.close()
    dialect = store.dialect
    version = max(migrations.known_versions(dialect))
    assert versions == [version, version]
    if isinstance(store, SqliteStore):
        conn = sqlite3.connect(store.path, isolation_level=None)
        try:
            assert sqlite.migrate(conn) == version
            applied = sorted(r[0] for r in conn.execute("SELECT version FROM schema_migrations"))
        finally:
            conn.close()
    else:
        assert isinstance(store, PostgresStore)
        with postgres.connect(store.url) as pg:
            assert postgres.migrate(pg) == (version, [])  # nothing applied the second time
            applied = sorted(r["version"] for r in pg.execute("SELECT version FROM schema_migrations"))
    assert applied == sorted(migrations.known_versions(dialect))


async def test_a_database_with_a_newer_schema_version_is_refused_with_a_clear_message(
    open_store: Callable[[], Store],
) -> None:
    first = open_store()
    await first.open()
    await first.write(
        lambda unit: unit.tx.execute("INSERT INTO schema_migrations VALUES (?, ?)", (999, "999_future.sql"))
    )
    await first.close()

    newer = open_store()
    with pytest.raises(Unavailable) as refused:
        await newer.open()
    message = refused.value.message
    assert "schema version(s) [999]" in message and "upgrade Huddle" in message
    # The server's pre-start check says the same before it binds anything.
    with pytest.raises(Unavailable, match=r"schema version\(s\) \[999\]"):
        if isinstance(newer, SqliteStore):
            sqlite.check_schema(newer.path)
        else:
            assert isinstance(newer, PostgresStore)
            postgres.check_schema(newer.url)


async def test_sqlite_runs_in_wal_mode_with_full_sync_and_the_writer_checkpoints_every_4000_pages(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "huddle.db", "proj")
    await store.open()
    try:

        def pragmas(unit: Unit) -> tuple[str, int]:
            mode = unit.tx.one("PRAGMA journal_mode")
            sync = unit.tx.one("PRAGMA synchronous")
            assert mode is not None and sync is not None
            return mode[0], sync[0]

        assert await store.read(pragmas) == ("wal", 2)  # readers beside the writer; durable on every commit

        def checkpoint_pages(unit: Unit) -> int:
            row = unit.tx.one("PRAGMA wal_autocheckpoint")
            assert row is not None
            return int(row[0])

        assert await store.write(checkpoint_pages) == sqlite.WAL_CHECKPOINT_PAGES  # the writer's
    finally:
        await store.close()


# -- PostgreSQL: several instances on one database ---------------------------------------------


async def test_three_instances_writing_at_once_each_hear_every_event_once_in_cursor_order_and_tokens_never_repeat(
    pg_stores: list[PostgresStore],
) -> None:
    heard = [recorder(s) for s in pg_stores]
    per_store = 40

    def token_event(unit: Unit) -> tuple[int, int]:
        unit.emit("test.before", actor="w")  # a cursor taken before anything else serialises this job
        token = next_token(unit)
        return token, unit.emit("test.token", actor="w", token=token).cursor

    results: list[tuple[int, int]] = []

    async def writer(s: PostgresStore) -> None:
        for _ in range(per_store):
            results.append(await s.write(token_event))

    async with anyio.create_task_group() as tg:
        for s in pg_stores:
            for _ in range(2):  # two callers per instance: batches form on every writer
                tg.start_soon(writer, s)
    writes = 2 * per_store * len(pg_stores)
    tokens = sorted(t for t, _ in results)
    assert tokens == list(range(1, writes + 1))  # fencing tokens: none repeated, none skipped
    by_cursor = [t for _, t in sorted((c, t) for t, c in results)]
    assert by_cursor == tokens  # and they rise in commit (cursor) order across instances
    total = 2 * writes
    for calls in heard:
        await until(lambda calls=calls: len(flat(calls)) >= total)
    for calls in heard:
        assert flat(calls) == list(range(1, total + 1))


async def test_three_instances_opening_a_fresh_database_at_once_migrate_it_once() -> None:
    with fresh_database() as url:
        stores = [PostgresStore(url, "proj", poll_s=POLL_S) for _ in range(3)]
        try:
            await asyncio.gather(*(s.open() for s in stores))
            assert {s.schema_version for s in stores} == {max(migrations.known_versions("postgresql"))}
            with postgres.connect(url) as pg:
                rows = pg.execute("SELECT version, COUNT(*) AS n FROM schema_migrations GROUP BY version").fetchall()
            assert sorted(r["version"] for r in rows) == sorted(migrations.known_versions("postgresql"))
            assert {r["n"] for r in rows} == {1}
        finally:
            for s in stores:
                await s.close()


async def test_the_feed_misses_nothing_after_its_listen_and_writer_connections_are_killed(
    pg_url: str, pg_stores: list[PostgresStore]
) -> None:
    a, b, _ = pg_stores
    heard_a, heard_b = recorder(a), recorder(b)
    for n in range(5):
        await a.write(emit_one(n))
        await b.write(emit_one(n))
    await until(lambda: len(flat(heard_a)) == 10 and len(flat(heard_b)) == 10)

    # Every Huddle session on the database: writers and readers ("huddle"), LISTENs ("huddle-feed").
    killed = await terminate(pg_url, "huddle", "huddle-feed")
    assert killed >= 2 * len(pg_stores)

    for n in range(5):  # nothing ran on the dropped connections: calls take fresh ones, no error
        await a.write(emit_one(100 + n))
        await b.write(emit_one(200 + n))
    cursors = await b.read(all_cursors)
    assert cursors == list(range(1, 21))
    await until(lambda: len(flat(heard_a)) >= len(cursors) and len(flat(heard_b)) >= len(cursors))
    assert flat(heard_a) == cursors and flat(heard_b) == cursors  # nothing missed, nothing twice


async def test_a_write_whose_connection_dies_mid_transaction_fails_retryably_keeps_nothing_and_the_next_works(
    pg_url: str, pg_stores: list[PostgresStore]
) -> None:
    a = pg_stores[0]
    await a.write(emit_one(0))
    started, gate = threading.Event(), threading.Event()

    def interrupted(unit: Unit) -> int:
        cursor = unit.emit("test.lost", actor="a").cursor
        started.set()
        gate.wait(WAIT_S)
        return cursor

    pending = asyncio.ensure_future(a.write(interrupted))
    await until(started.is_set)
    assert await terminate(pg_url, "huddle") >= 1  # the writer's session, inside its transaction
    gate.set()
    with pytest.raises(Unavailable) as failed:
        await pending
    message = failed.value.message
    assert message.startswith("the database could not commit") and message.endswith("retry the call")
    assert await a.write(emit_one(1)) == 2  # the lost event's cursor was never committed
    assert await a.read(all_cursors) == [1, 2]


async def test_a_lone_job_that_swallows_its_failed_statement_on_postgresql_is_told_nothing_was_committed(
    pg_stores: list[PostgresStore],
) -> None:
    """PostgreSQL aborts a transaction at a failed statement and answers COMMIT with a ROLLBACK;
    a lone job (no savepoint) that caught the error and returned must not be told its write stands."""
    a = pg_stores[0]

    def swallows(unit: Unit) -> str:
        next_token(unit)  # a write, and no event (whose NOTIFY would fail on its own)
        with contextlib.suppress(psycopg.errors.DivisionByZero):  # the job goes on as if nothing happened
            unit.tx.execute("SELECT 1 / 0")
        return "ok"

    with pytest.raises(Unavailable) as failed:
        await a.write(swallows)
    assert "nothing of it was committed" in failed.value.message
    assert failed.value.message.endswith("retry the call")

    def counters(unit: Unit) -> list[Any]:
        return unit.tx.all("SELECT last_token FROM lock_counters")

    assert await a.read(counters) == []
    assert await a.write(emit_one(0)) == 1  # the next transaction runs


async def _leaders(stores: list[PostgresStore]) -> list[bool]:
    return [await s.lead() for s in stores]


async def test_one_leader_at_a_time_and_leadership_moves_when_the_leader_closes_or_loses_its_connection(
    pg_url: str, pg_stores: list[PostgresStore]
) -> None:
    first = await _leaders(pg_stores)
    assert first.count(True) == 1
    assert await _leaders(pg_stores) == first  # held, not re-contested, on every call
    old = pg_stores.pop(first.index(True))
    await old.close()

    await until(lambda: _any_leads(pg_stores))
    second = await _leaders(pg_stores)
    assert second.count(True) == 1
    leader, other = (pg_stores[0], pg_stores[1]) if second[0] else (pg_stores[1], pg_stores[0])

    # The leader's own connection dies (its process froze, a proxy dropped it): the lock goes with it.
    def kill_leader_session() -> int:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(a.pid, 5000) FROM pg_stat_activity a"
                " JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted"
                " WHERE a.application_name LIKE 'huddle-leader:%%' AND a.datname = current_database()"
            ).fetchall()
        return len(rows)

    assert await anyio.to_thread.run_sync(kill_leader_session) == 1
    await until(other.lead)
    assert await leader.lead() is False  # it notices it lost the lock
    assert await _leaders([leader, other]) == [False, True]


async def _any_leads(stores: list[PostgresStore]) -> bool:
    return any(await _leaders(stores))
