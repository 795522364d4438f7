"""SQLite plans with statistics (storage/sqlite.py): on a database holding thousands of leases, intents
and agents, an announce, an acquire and a release look each row up by an index range, and never read
every row of the project through an index that only starts with the project (issue 9: an announce on
such a database cost 2.35x a fresh one). Plans are checked with EXPLAIN QUERY PLAN, not timed."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from huddle.bus.memory import MemoryBus
from huddle.service.coordinator import Coordinator
from huddle.settings import Settings, load_settings
from huddle.storage.base import Row, Tx, Unit
from huddle.storage.sqlite import SqliteStore, SqliteTx, migrate

PROJECT = "repo"  # the repository directory below is named `repo`
ROWS = 3000
# Tables the fill makes big. A plan row reading one of them by the project alone (or whole) is a scan.
BIG = ("locks", "intents", "intent_paths", "agents", "agent_modules", "file_edits")
PROJECT_ONLY = re.compile(rf"^(SCAN ({'|'.join(BIG)})\b|SEARCH ({'|'.join(BIG)}) USING .*\(project=\?\)$)")


PLANS: dict[str, list[str]] = {}  # statement → its plan steps, as the store's transactions ran them


class PlanRecordingTx(SqliteTx):
    """The store's own transaction, noting the plan of every statement it runs."""

    def _note(self, sql: str, params: Sequence[Any]) -> None:
        if sql.lstrip().upper().startswith(("SELECT", "WITH", "INSERT", "UPDATE", "DELETE")):
            rows = super().all("EXPLAIN QUERY PLAN " + sql, params)
            PLANS[sql] = [str(r["detail"]) for r in rows]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._note(sql, params)
        return super().execute(sql, params)

    def insert(self, sql: str, params: Sequence[Any], key: str) -> int:
        self._note(sql, params)
        return super().insert(sql, params, key)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self._note(sql, params)
        return super().one(sql, params)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._note(sql, params)
        return super().all(sql, params)


class PlanRecordingStore(SqliteStore):
    def _tx(self, conn: sqlite3.Connection) -> SqliteTx:
        return PlanRecordingTx(conn)

    async def read(self, fn: Any) -> Any:  # reads planned (and run) on the recording writer too
        return await self.write(fn)


def fill(tx: Tx, rows: int = ROWS) -> None:
    """A crowd's worth of online agents, active intents and leases."""
    now = time.time()
    tx.executemany(
        "INSERT INTO agents (project, agent_id, name, status, registered_at, session_start, last_seen, modules)"
        " VALUES (?, ?, ?, 'online', ?, ?, ?, ?)",
        [(PROJECT, f"crowd-{i}", f"crowd {i}", now, now, now + 86400, f'["mod{i % 20}"]') for i in range(rows)],
    )
    tx.executemany(
        "INSERT INTO agent_modules (project, module, agent_id) VALUES (?, ?, ?)",
        [(PROJECT, f"mod{i % 20}", f"crowd-{i}") for i in range(rows)],
    )
    tx.executemany(
        "INSERT INTO intents (project, agent_id, subject, kind, status, created_at, expires_at, target_files,"
        " depends_on_files, target_modules, target_symbols, verdict, impacts)"
        " VALUES (?, ?, ?, 'edit', 'active', ?, ?, ?, '[]', '[]', '[]', 'proceed', '[]')",
        [(PROJECT, f"crowd-{i}", f"work {i}", now, now + 86400, f'["src/crowd/{i}.py"]') for i in range(rows)],
    )
    tx.executemany(
        "INSERT INTO intent_paths (project, path, role, intent_id, agent_id) VALUES (?, ?, 'target', ?, ?)",
        [(PROJECT, f"src/crowd/{i}.py", i + 1, f"crowd-{i}") for i in range(rows)],
    )
    tx.executemany(
        "INSERT INTO locks (project, agent_id, path, kind, anchor, mode, token, ttl_s, acquired_at, renewed_at,"
        " expires_at) VALUES (?, ?, ?, 'file', ?, 'exclusive', ?, 86400, ?, ?, ?)",
        [
            (PROJECT, f"crowd-{i}", f"src/leased/{i}.py", f"src/leased/{i}.py", i + 1, now, now, now + 86400 + i)
            for i in range(rows)
        ],
    )
    tx.execute("INSERT INTO lock_counters (project, last_token) VALUES (?, ?)", (PROJECT, rows))
    # A long history of edits, a few of them inside the recent-edit window.
    tx.executemany(
        "INSERT INTO file_edits (project, agent_id, path, ts) VALUES (?, ?, ?, ?)",
        [(PROJECT, f"crowd-{i % 50}", f"src/edited/{i % 500}.py", now - 86400 * 30 + i * 10) for i in range(rows * 10)]
        + [(PROJECT, "crowd-1", f"src/edited/{i}.py", now - 60) for i in range(5)],
    )


def fill_behind_the_stores_back(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
    conn.execute("BEGIN")
    fill(SqliteTx(conn))
    conn.execute("COMMIT")
    conn.close()


@pytest.fixture
async def big(tmp_path: Path) -> AsyncIterator[Coordinator]:
    repo = tmp_path / "repo"
    repo.mkdir()
    settings = load_settings({"data_dir": str(tmp_path / "data"), "repo": str(repo), "analysis": "off"}, environ={})
    settings.sqlite_path.parent.mkdir(parents=True)
    fill_behind_the_stores_back(settings.sqlite_path)
    coord = Coordinator(PlanRecordingStore(settings.sqlite_path, settings.project_key), MemoryBus(), settings)
    await coord.start()
    try:
        yield coord
    finally:
        await coord.stop()


def scans(plans: dict[str, list[str]]) -> dict[str, list[str]]:
    return {sql: plan for sql, plan in plans.items() if any(PROJECT_ONLY.search(step) for step in plan)}


def settings_with_edits(tmp_path: Path, edits: list[tuple[str, str, float]]) -> Settings:
    """Settings of a server whose database already holds these (agent, path, ts) edits."""
    repo = tmp_path / "repo"
    repo.mkdir()
    settings = load_settings({"data_dir": str(tmp_path / "data"), "repo": str(repo), "analysis": "off"}, environ={})
    settings.sqlite_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(settings.sqlite_path, isolation_level=None)
    migrate(conn)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO file_edits (project, agent_id, path, ts) VALUES (?, ?, ?, ?)",
        [(PROJECT, *edit) for edit in edits],
    )
    conn.execute("COMMIT")
    conn.close()
    return settings


# Layers 1 and 2: the recent edits of the announcer's own paths (service/signals.py RecentEdits).
RECENT_EDITS_OF_MY_PATHS = "WITH e AS MATERIALIZED (SELECT agent_id, path FROM file_edits WHERE project = ?"


async def test_announce_acquire_and_release_read_a_big_database_by_index_ranges_only(big: Coordinator) -> None:
    await big.agents.register("load-0", agent_id="load-0")
    await big.agents.register("load-1", agent_id="load-1")
    await big.intents.announce("load-1", "theirs", ["src/load1.py"])
    PLANS.clear()  # registering lists the online agents for the briefing: a listing, not what is measured
    await big.sweep()  # the sweeper's steps run on the same writer: they must not scan either
    result = await big.intents.announce(
        "load-0", "mine", ["src/own0/a.py"], depends_on_files=["src/load1.py"], target_modules=["mod3"]
    )
    assert result["impact_summary"]["total"] == ROWS // 20 + 1  # the module's crowd and load-1
    assert (await big.locks.acquire("load-0", "src/own0/lease.py", ttl_s=60))["granted"]
    await big.locks.release("load-0", "src/own0/lease.py")
    recorded = dict(PLANS)
    for seen in ("FROM locks WHERE expires_at", "FROM intents WHERE status = 'active'", "FROM agent_modules"):
        assert any(seen in sql for sql in recorded), seen  # the sweeps and lookups ran and were planned
    assert scans(recorded) == {}


async def test_readers_opened_before_the_statistics_were_refreshed_plan_with_the_new_ones(tmp_path: Path) -> None:
    """A connection loads the statistics when it opens: the store reopens its readers after each ANALYZE."""
    overlap = (
        "EXPLAIN QUERY PLAN SELECT * FROM locks WHERE project = ? AND (anchor IN (?, ?, ?) OR"
        " (anchor >= ? AND anchor < ?)) ORDER BY id"
    )
    args = (PROJECT, "", "src/", "src/x.py", "src/x.py/", "src/x.py0")

    def plan(unit: Unit) -> list[str]:
        return [str(r["detail"]) for r in unit.tx.all(overlap, args)]

    # One reader, so the read after the refresh is on the connection that planned before it.
    store = SqliteStore(tmp_path / "huddle.db", PROJECT, readers=1, analyze_after=3)
    await store.open()  # statistics of empty tables
    try:
        await store.read(plan)
        await store.write(lambda unit: fill(unit.tx))  # commit 1: thousands of leases
        stale = await store.read(plan)
        assert not any("locks_by_anchor" in step for step in stale)  # the whole project's leases
        for _ in range(2):  # commits 2 and 3: the statistics are refreshed
            await store.write(lambda unit: unit.tx.execute("DELETE FROM instances WHERE 1 = 0"))
        assert store.statistics_generation == 1
        assert any("locks_by_anchor" in step for step in await store.read(plan))
    finally:
        await store.close()


async def test_reading_a_window_of_a_long_edit_history_reads_the_window_only(big: Coordinator) -> None:
    await big.agents.register("load-0", agent_id="load-0")
    PLANS.clear()
    conflict = await big.files.check_file_conflict("src/edited/1.py", "load-0")
    activity = await big.files.hot_files()
    await big.status.status()
    await big.intents.announce("load-0", "mine", ["src/edited/2.py"], depends_on_files=["src/edited/3.py"])
    assert [a["agent_id"] for a in conflict["agents"]] == ["crowd-1"]
    assert {f["path"] for f in activity["files"]} == {f"src/edited/{i}.py" for i in range(5)}
    # The status overview lists agents, leases and tasks whole (a listing); its hot files must not.
    recorded = {sql: plan for sql, plan in PLANS.items() if "file_edits" in sql}
    assert len(recorded) >= 4  # each of the four ran and was planned
    assert scans(recorded) == {}
    # The announce's recent edits of its own paths (layers 1 and 2): one index range per path.
    mine = [plan for sql, plan in recorded.items() if sql.startswith(RECENT_EDITS_OF_MY_PATHS)]
    assert mine and all(
        [step for step in plan if "file_edits" in step]
        == ["SEARCH file_edits USING INDEX file_edits_by_path (project=? AND path=? AND ts>?)"]
        for plan in mine
    ), mine


async def test_an_announce_skips_the_announcers_own_intents_in_its_module_by_index_ranges(big: Coordinator) -> None:
    """An agent holding many active intents in its module: the lookup of the others' intents there
    reads the two ranges of agent ids beside the announcer's, not every row of the module."""
    await big.agents.register("load-0", agent_id="load-0", modules=["mod3"])
    for i in range(50):
        await big.intents.announce("load-0", f"earlier {i}", [f"src/own0/{i}.py"])
    PLANS.clear()
    await big.intents.announce("load-0", "mine", ["src/own0/new.py"])
    plans = [plan for sql, plan in PLANS.items() if "FROM intent_modules" in sql and "module IN" in sql]
    assert len(plans) == 1
    reads = [step for step in plans[0] if step.startswith("SEARCH intent_modules")]
    assert reads == [
        "SEARCH intent_modules USING COVERING INDEX intent_modules_by_agent (project=? AND module=? AND agent_id<?)",
        "SEARCH intent_modules USING COVERING INDEX intent_modules_by_agent (project=? AND module=? AND agent_id>?)",
    ]


async def test_recent_edits_of_a_file_many_agents_edited_long_ago_are_read_by_its_index_range(tmp_path: Path) -> None:
    """benchmarks/announce.py's history: 100,000 old edits of 50 files by 1,000 agents. Asked for the
    distinct (agent, file) pairs directly, SQLite's planner walked every edit of the project in
    agent order to skip the sort (5 ms an announce); the lookup reads my file's window, a range of
    one index, and only then drops the repeats."""
    long_ago = time.time() - 30 * 86400
    settings = settings_with_edits(
        tmp_path, [(f"old-{i % 1000}", f"src/agent{i % 50}/main.py", long_ago + i) for i in range(100_000)]
    )
    coord = Coordinator(PlanRecordingStore(settings.sqlite_path, settings.project_key), MemoryBus(), settings)
    await coord.start()
    try:
        await coord.agents.register("load-0", agent_id="load-0")
        PLANS.clear()
        await coord.intents.announce("load-0", "mine", ["src/own/a.py"], depends_on_files=["src/agent3/main.py"])
    finally:
        await coord.stop()
    mine = [plan for sql, plan in PLANS.items() if sql.startswith(RECENT_EDITS_OF_MY_PATHS)]
    assert len(mine) == 1  # my targets and my dependencies: one statement text, planned alike
    for plan in mine:
        assert [step for step in plan if "file_edits" in step] == [
            "SEARCH file_edits USING INDEX file_edits_by_path (project=? AND path=? AND ts>?)"
        ], plan


ROWS_READ: dict[str, int] = {}  # statement → rows it handed back, as the store's transactions ran it


class RowCountingTx(SqliteTx):
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows = super().all(sql, params)
        ROWS_READ[sql] = ROWS_READ.get(sql, 0) + len(rows)
        return rows


class RowCountingStore(SqliteStore):
    def _tx(self, conn: sqlite3.Connection) -> SqliteTx:
        return RowCountingTx(conn)


async def test_a_file_edited_thousands_of_times_in_the_window_comes_back_as_one_row_per_agent(tmp_path: Path) -> None:
    """A hot file: two agents edited it 2,000 times each in the last minutes. The announce's recent
    edits are the distinct (agent, file) pairs, made distinct in SQL, not 4,000 rows built in Python
    while the writer waits (20-30 ms at 20,000 edits)."""
    now = time.time()
    settings = settings_with_edits(tmp_path, [(f"hot-{i % 2}", "src/hot.py", now - 60 + i / 1000) for i in range(4000)])
    coord = Coordinator(RowCountingStore(settings.sqlite_path, settings.project_key), MemoryBus(), settings)
    await coord.start()
    try:
        for agent_id in ("hot-0", "hot-1", "me"):
            await coord.agents.register(agent_id, agent_id=agent_id)
        ROWS_READ.clear()
        answer = await coord.intents.announce("me", "mine", ["src/hot.py"])
    finally:
        await coord.stop()
    assert {impact["agent_id"] for impact in answer["impacts"]} == {"hot-0", "hot-1"}
    recent = {sql: n for sql, n in ROWS_READ.items() if sql.startswith(RECENT_EDITS_OF_MY_PATHS)}
    assert list(recent.values()) == [2], recent
