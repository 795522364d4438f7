"""The audit log (SPEC F-93) on SQLite and PostgreSQL: every state change appends one row to a
SHA-256 chain in its own transaction, and the verifier names the first edited, deleted or reordered row."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import ManualClock, make_coordinator
from huddle.domain.principal import ADMIN, AGENT, Principal, acting_as
from huddle.service.coordinator import Coordinator
from huddle.service.credentials import Credentials
from huddle.storage import audit
from huddle.storage.base import Store, Unit
from huddle.storage.postgres import PostgresStore
from huddle.storage.sqlite import SqliteStore
from postgres_helpers import migrated_database


@pytest.fixture
async def coord(tmp_path: Path, repo: Path, backend: dict[str, str]) -> AsyncIterator[Coordinator]:
    """A coordinator whose clock stands still: no sweep appends a row while a test tampers."""
    c = make_coordinator(tmp_path, repo, clock=ManualClock(), **backend)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


async def some_history(c: Coordinator) -> None:
    """Two agents, two announces (the second one also writes an awareness event): six rows or so."""
    await c.agents.register("alice")
    await c.agents.register("bob")
    await c.intents.announce("alice", "user model", ["src/models/user.py"])
    await c.intents.announce("bob", "profile page", ["src/pages/profile.py"], depends_on_files=["src/models/user.py"])


def rows_of(unit: Unit, table: str, order: str) -> list[dict[str, Any]]:
    return [dict(r) for r in unit.tx.all(f"SELECT * FROM {table} ORDER BY {order}")]


async def audit_rows(store: Store) -> list[dict[str, Any]]:
    return await store.read(lambda unit: rows_of(unit, "audit_log", "project, seq"))


async def only_report(store: Store) -> audit.Report:
    [report] = await audit.verify_store(store)
    return report


def tamper(store: Store, *statements: str) -> None:
    """Writes behind Huddle's back, as someone with access to the file or the database server can:
    past the append-only trigger (SQLite: dropped; PostgreSQL: triggers off for this session)."""
    if isinstance(store, PostgresStore):
        with psycopg.connect(store.url, autocommit=True) as conn, conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            for statement in statements:
                conn.execute(statement)
        return
    assert isinstance(store, SqliteStore)
    conn = sqlite3.connect(store.path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DROP TRIGGER IF EXISTS audit_log_append_only")
        for statement in statements:
            conn.execute(statement)
        conn.execute("COMMIT")
    finally:
        conn.close()


SWAP_2_AND_3 = (
    "UPDATE audit_log SET seq = -1 WHERE seq = 2",
    "UPDATE audit_log SET seq = 2 WHERE seq = 3",
    "UPDATE audit_log SET seq = 3 WHERE seq = -1",
)


# -- what is written ----------------------------------------------------------------------------


async def test_every_event_gets_one_audit_row_chained_from_genesis_with_dense_seqs(coord: Coordinator) -> None:
    await some_history(coord)
    rows = await audit_rows(coord.store)
    events = await coord.store.read(lambda unit: rows_of(unit, "events", "cursor"))
    assert len(rows) == len(events) >= 5
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert [(r["cursor"], r["action"], r["actor"]) for r in rows] == [
        (e["cursor"], e["kind"], e["actor"]) for e in events
    ]
    assert rows[0]["prev_hash"] == audit.GENESIS
    assert all(later["prev_hash"] == earlier["hash"] for earlier, later in itertools.pairwise(rows))
    assert all(r["data_sha256"] == audit.data_digest(e["data"]) for r, e in zip(rows, events, strict=True))
    assert all(r["principal"] == r["token_id"] == r["scopes"] == "" for r in rows)  # open mode: nobody signed in
    report = await only_report(coord.store)
    assert report.intact and report.rows == len(rows) and report.head == (rows[-1]["seq"], rows[-1]["hash"])


async def test_the_principal_of_the_request_is_recorded_beside_the_actor(coord: Coordinator) -> None:
    alice = Principal("alice", coord.store.project, "default", frozenset({AGENT}), token_id="tok-alice")
    admin = Principal("ops", coord.store.project, "default", frozenset({ADMIN, AGENT}), token_id="tok-ops")
    with acting_as(alice):
        await coord.agents.register("alice")
    with acting_as(admin):  # an admin acting on behalf of bob: both names end up in the row
        await coord.agents.register("bob")
    await coord.agents.register("carol")
    rows = await audit_rows(coord.store)
    assert [(r["actor"], r["principal"], r["token_id"], r["scopes"]) for r in rows] == [
        ("alice", "alice", "tok-alice", "agent"),
        ("bob", "ops", "tok-ops", "admin,agent"),
        ("carol", "", "", ""),
    ]
    assert (await only_report(coord.store)).intact


async def test_token_actions_are_audited_as_they_are_issued_and_revoked(coord: Coordinator) -> None:
    credentials = Credentials(coord.store, coord.ctx.settings)
    admin = Principal("ops", coord.store.project, "default", frozenset({ADMIN}), token_id="tok-ops")
    with acting_as(admin):
        issued = await credentials.issue("alice")
        await credentials.revoke(issued["access_token"], by=admin)
        await credentials.sign_out_everywhere("alice", by=admin)
    rows = await audit_rows(coord.store)
    assert [(r["action"], r["actor"], r["principal"]) for r in rows] == [
        ("auth.token_issued", "alice", "ops"),
        ("auth.token_revoked", "alice", "ops"),
        ("auth.signed_out", "alice", "ops"),
    ]
    assert issued["access_token"] not in str(rows)  # a digest of the event, never a token
    assert (await only_report(coord.store)).intact


async def test_a_job_that_fails_leaves_no_audit_row_and_no_gap(coord: Coordinator) -> None:
    await coord.agents.register("alice")

    def fails(unit: Unit) -> None:
        unit.emit("test.doomed", actor="alice")
        raise RuntimeError("the job changes its mind")

    with pytest.raises(RuntimeError):
        await coord.store.write(fails)
    await coord.agents.register("bob")
    rows = await audit_rows(coord.store)
    assert [(r["seq"], r["action"], r["actor"]) for r in rows] == [
        (1, "agent.online", "alice"),
        (2, "agent.online", "bob"),
    ]
    assert (await only_report(coord.store)).intact


async def test_the_database_refuses_to_update_an_audit_row(coord: Coordinator) -> None:
    await coord.agents.register("alice")

    def rewrite(unit: Unit) -> None:
        unit.tx.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")

    with pytest.raises(Exception, match="append-only"):
        await coord.store.write(rewrite)
    assert [r["actor"] for r in await audit_rows(coord.store)] == ["alice"]


async def test_a_verified_empty_log_is_intact_with_no_rows(coord: Coordinator) -> None:
    assert await audit.verify_store(coord.store) == []
    report = await audit.verify_store(coord.store, [coord.store.project])
    assert report == [audit.Report(coord.store.project, 0, (0, audit.GENESIS), None)]


# -- what the verifier finds ----------------------------------------------------------------------


async def test_an_edited_row_is_named_with_its_seq(coord: Coordinator) -> None:
    await some_history(coord)
    tamper(coord.store, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    report = await only_report(coord.store)
    assert report.finding is not None
    assert (report.finding.problem, report.finding.seq) == ("edited", 3)
    assert "row 3 was edited" in report.finding.message


async def test_an_edited_row_given_a_valid_fresh_hash_breaks_the_link_to_the_next_row(coord: Coordinator) -> None:
    await some_history(coord)
    third = audit.AuditRow.of([(await audit_rows(coord.store))[2][c] for c in audit.COLUMNS])
    forged = audit.chain_hash(
        third.project, 3, third.ts, third.action, third.actor, "mallory", third.token_id, third.scopes,
        third.cursor, third.data_sha256, third.prev_hash,
    )  # fmt: skip
    tamper(coord.store, f"UPDATE audit_log SET principal = 'mallory', hash = '{forged}' WHERE seq = 3")
    report = await only_report(coord.store)
    assert report.finding is not None
    assert (report.finding.problem, report.finding.seq) == ("rewritten", 4)
    assert "row 3 was rewritten" in report.finding.message


async def test_a_deleted_row_is_named_by_the_seq_that_is_missing(coord: Coordinator) -> None:
    await some_history(coord)
    tamper(coord.store, "DELETE FROM audit_log WHERE seq = 3")
    report = await only_report(coord.store)
    assert report.finding is not None
    assert (report.finding.problem, report.finding.seq) == ("deleted", 3)
    assert "row 3 is missing" in report.finding.message and report.rows == 3


async def test_deleting_the_newest_rows_is_found_through_the_event_log(coord: Coordinator) -> None:
    await some_history(coord)
    last = len(await audit_rows(coord.store))
    tamper(coord.store, f"DELETE FROM audit_log WHERE seq >= {last - 1}")
    report = await only_report(coord.store)
    assert report.finding is not None
    assert (report.finding.problem, report.finding.seq) == ("deleted", last - 1)
    assert "newest audit rows were deleted" in report.finding.message


@pytest.mark.parametrize("origin_too", [False, True])
async def test_deleting_a_projects_whole_audit_log_is_found(coord: Coordinator, origin_too: bool) -> None:
    await some_history(coord)
    project = coord.store.project
    tamper(
        coord.store,
        f"DELETE FROM audit_log WHERE project = '{project}'",
        *([f"DELETE FROM audit_origin WHERE project = '{project}'"] if origin_too else []),
    )
    report = await only_report(coord.store)
    assert report.rows == 0 and report.finding is not None
    assert report.finding.problem == "deleted" and "no audit row at all" in report.finding.message


async def test_two_swapped_rows_are_reported_as_reordered(coord: Coordinator) -> None:
    await some_history(coord)
    tamper(coord.store, *SWAP_2_AND_3)
    report = await only_report(coord.store)
    assert report.finding is not None
    assert (report.finding.problem, report.finding.seq) == ("reordered", 2)
    assert "out of order" in report.finding.message


async def test_swapped_rows_re_hashed_into_a_valid_chain_are_still_caught_by_their_event_order(
    coord: Coordinator,
) -> None:
    """Whoever knows the algorithm can rebuild a consistent chain (there is no secret); the event
    cursors each row records still betray the new order."""
    await some_history(coord)
    rows = [audit.AuditRow.of([r[c] for c in audit.COLUMNS]) for r in await audit_rows(coord.store)]
    rows[1], rows[2] = rows[2], rows[1]
    statements, prev = ["DELETE FROM audit_log"], audit.GENESIS
    for seq, r in enumerate(rows, start=1):
        fields = (r.project, seq, r.ts, r.action, r.actor, r.principal, r.token_id, r.scopes, r.cursor, r.data_sha256)
        digest = audit.chain_hash(*fields, prev)
        values = ", ".join("NULL" if v is None else repr(v) for v in (*fields, prev, digest))
        statements.append(f"INSERT INTO audit_log ({', '.join(audit.COLUMNS)}) VALUES ({values})")
        prev = digest
    tamper(coord.store, *statements)
    report = await only_report(coord.store)
    assert report.finding is not None
    assert (report.finding.problem, report.finding.seq) == ("reordered", 3)
    assert "re-hashed" in report.finding.message


async def test_an_event_edited_or_deleted_behind_the_audit_log_is_named(coord: Coordinator) -> None:
    await some_history(coord)
    rows = await audit_rows(coord.store)
    third, fourth = rows[2]["cursor"], rows[3]["cursor"]
    tamper(coord.store, f"UPDATE events SET data = '{{}}' WHERE cursor = {fourth}")
    report = await only_report(coord.store)
    assert report.finding is not None and (report.finding.problem, report.finding.seq) == ("event_edited", 4)
    tamper(coord.store, f"DELETE FROM events WHERE cursor = {third}")
    report = await only_report(coord.store)
    assert report.finding is not None and (report.finding.problem, report.finding.seq) == ("event_missing", 3)


async def test_an_event_slipped_in_between_audited_ones_is_named(tmp_path: Path) -> None:
    """SQLite numbers events across the projects of one file, so another project's event can be
    relabelled into this one's history: an event with no audit row between two that have one."""
    store = SqliteStore(tmp_path / "huddle.db", "app", clock=ManualClock())
    await store.open()
    try:

        def history(unit: Unit) -> int:
            unit.emit("test.one", actor="alice")
            stray = Unit(unit.tx, unit.now, "other").emit("test.elsewhere", actor="mallory").cursor
            unit.emit("test.two", actor="alice")
            return stray

        stray = await store.write(history)
        tamper(store, f"UPDATE events SET project = 'app' WHERE cursor = {stray}")
        [report] = await audit.verify_store(store, ["app"])
    finally:
        await store.close()
    assert report.finding is not None
    assert (report.finding.problem, report.finding.seq) == ("unaudited_event", 2)
    assert f"event {stray} has no audit row" in report.finding.message


# -- several instances ----------------------------------------------------------------------------


def emit(n: int) -> Callable[[Unit], None]:
    def txn(unit: Unit) -> None:
        unit.emit("test.first", actor=f"a{n}", n=n)
        if n % 2:  # some jobs emit two events, as an announce with an awareness does
            unit.emit("test.second", actor=f"a{n}", n=n)

    return txn


async def test_instances_sharing_a_postgresql_database_append_one_dense_intact_chain() -> None:
    with migrated_database() as url:
        stores = [PostgresStore(url, "proj", poll_s=0.2) for _ in range(3)]
        for s in stores:
            await s.open()
        try:
            await asyncio.gather(*(stores[n % 3].write(emit(n)) for n in range(90)))
            rows = await audit_rows(stores[0])
            assert [r["seq"] for r in rows] == list(range(1, 136))  # 90 jobs, 45 of them with two events
            assert [r["cursor"] for r in rows] == sorted(r["cursor"] for r in rows)
            [report] = await audit.verify_store(stores[1])
            assert report.intact and report.rows == 135
        finally:
            for s in stores:
                await s.close()
