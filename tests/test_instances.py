"""Which instances are alive, as the lock queue sees it, and connections the server closed.

On PostgreSQL an instance is alive while it has a connection to the database: a queued request of a
process that died is dropped before a lease is handed out, not granted to nobody for a whole TTL.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from huddle.service import instances
from huddle.service.coordinator import Coordinator
from huddle.storage.base import Unit


def queue_for_a_dead_process(unit: Unit, agent: str, path: str) -> int:
    """The row a queued acquire_lock leaves when its server process is killed -9 mid-wait."""
    row = unit.tx.one(
        "INSERT INTO lock_waiters (project, agent_id, path, literal, kind, anchor, mode, ttl_s, created_at,"
        " deadline, instance) VALUES (?, ?, ?, 0, 'file', ?, 'exclusive', 600, ?, ?, 'killed-instance')"
        " RETURNING id",
        (unit.project, agent, path, path, unit.now, unit.now + 60),
    )
    assert row is not None
    return int(row["id"])


async def test_a_lease_skips_the_queued_request_of_a_dead_process_and_goes_to_the_next_live_one(
    coordinator: Coordinator, backend: dict[str, str]
) -> None:
    if not backend:
        pytest.skip("one process owns a SQLite database: there is no other process to die")
    for agent in ("holder", "ghost", "next"):
        await coordinator.agents.register(agent, agent_id=agent)
    assert (await coordinator.locks.acquire("holder", "src/q.py"))["granted"]
    await coordinator.store.write(lambda unit: queue_for_a_dead_process(unit, "ghost", "src/q.py"))
    waiting = asyncio.ensure_future(coordinator.locks.acquire("next", "src/q.py", wait_s=30))
    async with asyncio.timeout(20):  # it queues — and the dead process's entry ahead of it goes
        while [w["agent_id"] for w in (await coordinator.locks.check_lock("src/q.py"))["waiting"]] != ["next"]:
            await asyncio.sleep(0.01)

    await coordinator.locks.release("holder", "src/q.py")
    granted = await asyncio.wait_for(waiting, timeout=20)

    assert granted["granted"] and granted["path"] == "src/q.py"
    status = await coordinator.locks.check_lock("src/q.py")
    assert [h["agent_id"] for h in status["holders"]] == ["next"] and status["waiting"] == []


async def test_connected_instances_are_known_on_postgresql_and_unknown_on_sqlite(
    coordinator: Coordinator, backend: dict[str, str]
) -> None:
    connected = await coordinator.store.read(instances.connected_instances)
    if backend:
        assert connected is not None and coordinator.ctx.instance in connected
    else:
        assert connected is None


async def test_connections_the_database_closed_cost_no_call_a_failure(
    coordinator: Coordinator, backend: dict[str, str]
) -> None:
    if not backend:
        pytest.skip("SQLite has no server to close connections")
    await coordinator.agents.register("a", agent_id="a")
    await coordinator.agents.list_agents()  # a reader connection exists too
    with psycopg.connect(backend["db_url"], autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            (f"huddle:{coordinator.ctx.instance}",),
        ).fetchall()
    assert killed  # the writer and the readers
    # The very next write and read succeed: a stale connection is replaced before anything runs on it.
    assert (await coordinator.agents.register("b", agent_id="b"))["registered"]
    listed = await coordinator.agents.list_agents()
    assert {a["agent_id"] for a in listed["agents"]} == {"a", "b"}


async def test_a_release_never_grants_the_lease_to_the_queued_request_of_a_dead_process(
    coordinator: Coordinator, backend: dict[str, str]
) -> None:
    if not backend:
        pytest.skip("one process owns a SQLite database: there is no other process to die")
    for agent in ("holder", "ghost"):
        await coordinator.agents.register(agent, agent_id=agent)
    assert (await coordinator.locks.acquire("holder", "src/q.py"))["granted"]
    await coordinator.store.write(lambda unit: queue_for_a_dead_process(unit, "ghost", "src/q.py"))

    await coordinator.locks.release("holder", "src/q.py")

    status = await coordinator.locks.check_lock("src/q.py")
    assert status["holders"] == [] and status["waiting"] == [] and status["can_acquire"]["exclusive"]
