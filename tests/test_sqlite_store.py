"""The SQLite store: group commit batches concurrent writes, and one failure undoes only itself."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from huddle.errors import InvalidInput
from huddle.storage.base import Unit
from huddle.storage.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path):
    s = SqliteStore(tmp_path / "h.db", "proj")
    await s.open()
    yield s
    await s.close()


async def test_concurrent_writes_all_commit_and_events_arrive_in_cursor_order(store: SqliteStore) -> None:
    seen: list[int] = []
    store.on_commit(lambda events: seen.extend(e.cursor for e in events))

    def write(n: int):
        def txn(unit: Unit) -> int:
            return unit.emit("test.event", actor=f"a{n}", n=n).cursor

        return txn

    cursors: list[int] = []

    async def one(n: int) -> None:
        cursors.append(await store.write(write(n)))

    async with anyio.create_task_group() as tg:
        for n in range(200):
            tg.start_soon(one, n)
    assert sorted(cursors) == list(range(1, 201))
    assert seen == list(range(1, 201))


async def test_a_failing_transaction_in_a_batch_leaves_no_trace_and_spares_the_others(store: SqliteStore) -> None:
    def good(unit: Unit) -> int:
        return unit.emit("test.ok", actor="a").cursor

    def bad(unit: Unit) -> int:
        unit.emit("test.bad", actor="b")
        raise InvalidInput("refused")

    results = []

    async def run(fn) -> None:
        try:
            results.append(await store.write(fn))
        except InvalidInput as exc:
            results.append(exc.message)

    async with anyio.create_task_group() as tg:
        for fn in (good, bad, good, bad, good):
            tg.start_soon(run, fn)
    assert results.count("refused") == 2

    def kinds(unit: Unit) -> list[str]:
        return [r["kind"] for r in unit.tx.all("SELECT kind FROM events ORDER BY cursor")]

    assert await store.read(kinds) == ["test.ok"] * 3


async def test_the_database_runs_in_wal_mode_with_full_sync(store: SqliteStore) -> None:
    def pragmas(unit: Unit) -> tuple[str, int]:
        mode = unit.tx.one("PRAGMA journal_mode")
        sync = unit.tx.one("PRAGMA synchronous")
        assert mode is not None and sync is not None
        return mode[0], sync[0]

    assert await store.read(pragmas) == ("wal", 2)
