"""Large audiences are filed once, as groups (schema 012): every reader of an agent's slice of the log —
get_updates, push replay (SSE, MQTT, MCP), the inbox view and hook news — still gets exactly the events
addressed to it, in cursor order, whether they were filed per agent, under everyone or under a group."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from coordination_helpers import register
from helpers import make_coordinator
from huddle.domain.events import EVERYONE
from huddle.push.log import EventFilter, latest_for, read_after
from huddle.service.coordinator import Coordinator
from huddle.service.hooks import _scan
from huddle.storage import base, transfer
from huddle.storage.admin import open_database
from huddle.storage.base import GROUP_AUDIENCE_AT, Unit
from postgres_helpers import fresh_database

CROWD = [f"crowd-{i:02d}" for i in range(GROUP_AUDIENCE_AT + 4)]
OUTSIDER = "outsider"


def say(content: str, audience: Sequence[str]) -> Any:
    """A transaction emitting one message.sent event to `audience`; returns its cursor."""

    def txn(unit: Unit) -> int:
        return unit.emit("message.sent", actor="boss", audience=audience, content=content).cursor

    return txn


def count(sql: str, *params: Any) -> Any:
    def read(unit: Unit) -> int:
        row = unit.tx.one(sql, params)
        assert row is not None
        return int(row["n"])

    return read


async def every_reader(c: Coordinator, agent: str) -> dict[str, list[int]]:
    """The cursors of `agent`'s slice as each reader of the log finds it."""
    pages: list[int] = []
    cursor = 0
    while True:  # get_updates page by page, as a client does
        page = await c.updates.get_updates(agent, cursor=cursor, limit=3)
        pages += [e["cursor"] for e in page["events"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    _, _, last = await c.store.read(lambda unit: _scan(unit, agent))
    return {
        "get_updates": pages,
        "replay": [e.cursor for e in await read_after(c.store, 0, EventFilter(agent=agent))],
        "inbox": [e.cursor for e in await latest_for(c.store, agent, 500)],
        "hook_scan_end": [last],
    }


async def test_an_audience_of_many_is_filed_once_and_each_member_reads_exactly_its_events(
    coordinator: Coordinator,
) -> None:
    await register(coordinator, *CROWD, OUTSIDER)
    start = await coordinator.updates.latest_cursor()
    crowd_1 = await coordinator.store.write(say("to the crowd", CROWD))
    small = await coordinator.store.write(say("to two", CROWD[:2]))
    everyone = await coordinator.store.write(say("to all", [EVERYONE]))
    crowd_2 = await coordinator.store.write(say("to the crowd again", list(reversed(CROWD))))  # same set
    larger = await coordinator.store.write(say("crowd and outsider", [*CROWD, OUTSIDER]))
    named_and_all = await coordinator.store.write(say("the crowd, and everyone", [*CROWD, EVERYONE]))

    # One audience row per grouped event; the crowd's members written once, then the larger group's.
    rows = await coordinator.store.read(
        count("SELECT COUNT(*) AS n FROM event_audience WHERE project = ? AND cursor > ?", "repo", start)
    )
    assert rows == 1 + 2 + 1 + 1 + 1 + 1
    members = await coordinator.store.read(count("SELECT COUNT(*) AS n FROM audience_members"))
    assert members == len(CROWD) + len(CROWD) + 1

    def news(cursors: list[int]) -> list[int]:
        return [c for c in cursors if c > start]

    for agent, expected in (
        (CROWD[0], [crowd_1, small, everyone, crowd_2, larger, named_and_all]),
        (CROWD[-1], [crowd_1, everyone, crowd_2, larger, named_and_all]),
        (OUTSIDER, [everyone, larger, named_and_all]),
    ):
        seen = await every_reader(coordinator, agent)
        assert news(seen["get_updates"]) == expected, agent
        assert news(seen["replay"]) == expected, agent
        assert news(seen["inbox"]) == expected, agent
        assert seen["hook_scan_end"] == [expected[-1]], agent

    # The stored event keeps its audience as written: the push channels and the audit log see no change.
    [event] = [e for e in await read_after(coordinator.store, crowd_2 - 1, limit=1)]
    assert event.audience == tuple(reversed(CROWD))


async def test_events_filed_per_agent_before_groups_existed_are_read_with_the_grouped_ones_in_order(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database written before schema 012 holds one row per addressee; both kinds of rows are read."""
    await register(coordinator, *CROWD)
    start = await coordinator.updates.latest_cursor()
    monkeypatch.setattr(base, "GROUP_AUDIENCE_AT", 10**9)  # as Huddle filed every audience before
    old = await coordinator.store.write(say("before the upgrade", CROWD))
    monkeypatch.setattr(base, "GROUP_AUDIENCE_AT", GROUP_AUDIENCE_AT)
    new = await coordinator.store.write(say("after the upgrade", CROWD))
    per_agent = await coordinator.store.read(count("SELECT COUNT(*) AS n FROM event_audience WHERE cursor = ?", old))
    assert per_agent == len(CROWD)
    for agent in (CROWD[0], CROWD[-1]):
        seen = await every_reader(coordinator, agent)
        assert [c for c in seen["get_updates"] if c > start] == [old, new]
        assert [c for c in seen["replay"] if c > start] == [old, new]
        assert [c for c in seen["inbox"] if c > start] == [old, new]


async def test_an_agent_in_more_groups_than_a_query_lists_still_reads_exactly_its_events(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register(coordinator, *CROWD, OUTSIDER)
    start = await coordinator.updates.latest_cursor()
    cursors = []
    for i in range(4):  # four different sets, each with CROWD[0] in it
        audience = [*CROWD[: len(CROWD) - i], OUTSIDER] if i % 2 else CROWD[: len(CROWD) - i]
        cursors.append(await coordinator.store.write(say(f"group {i}", audience)))
    monkeypatch.setattr(base, "LISTED_GROUPS", 2)  # past it, the groups are joined in SQL
    seen = await every_reader(coordinator, CROWD[0])
    assert [c for c in seen["get_updates"] if c > start] == cursors
    assert [c for c in seen["replay"] if c > start] == cursors
    assert [c for c in seen["inbox"] if c > start] == cursors
    outsider = await every_reader(coordinator, OUTSIDER)
    assert [c for c in outsider["get_updates"] if c > start] == [cursors[1], cursors[3]]
    last = CROWD[-1]  # only in the first group
    assert [c for c in (await every_reader(coordinator, last))["replay"] if c > start] == [cursors[0]]


async def test_grouped_audiences_move_with_huddle_export_and_import_and_read_the_same(
    tmp_path: Path, repo: Path
) -> None:
    """The group tables are carried like any other (storage/transfer.py finds tables by their project
    column): after SQLite → PostgreSQL every reader answers each agent exactly as before."""
    source = make_coordinator(tmp_path / "sqlite", repo)
    await source.start()
    try:
        await register(source, *CROWD, OUTSIDER)
        await source.store.write(say("to the crowd", CROWD))
        await source.store.write(say("to the crowd and more", [*CROWD, OUTSIDER]))
        before = {agent: await every_reader(source, agent) for agent in (CROWD[0], CROWD[-1], OUTSIDER)}
        sqlite_path = source.settings.sqlite_path
    finally:
        await source.stop()
    exported = io.StringIO()
    with open_database(path=sqlite_path, readonly=True) as db:
        transfer.export(db, exported)
    with fresh_database() as url:
        with open_database(url=url) as db:
            db.migrate()
            imported = transfer.import_(db, io.StringIO(exported.getvalue()), "crowd.jsonl", force=False)
        assert imported["tables"]["audience_members"] == 2 * len(CROWD) + 1
        target = make_coordinator(tmp_path / "pg", repo, db_url=url)
        await target.start()
        try:
            for agent, seen in before.items():
                assert await every_reader(target, agent) == seen, agent
        finally:
            await target.stop()
