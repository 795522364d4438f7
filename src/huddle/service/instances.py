"""Which Huddle processes are alive: a heartbeat row per instance (issue 9).

Every instance writes its heartbeat every HEARTBEAT_S; the leader's sweep forgets instances silent
for INSTANCE_TTL_S, and with them their lock-queue entries (service/locks.py). A process that owns
its database alone (SQLite) forgets every other instance when it starts: they were earlier runs.
"""

from __future__ import annotations

from typing import Any

from huddle.storage.base import Unit

HEARTBEAT_S = 2.0
# Five missed heartbeats: long enough for a busy instance, short enough that a dead instance's
# queued lock requests do not hold a queue up for long.
INSTANCE_TTL_S = 10.0


def heartbeat(unit: Unit, instance: str) -> None:
    unit.tx.execute(
        "INSERT INTO instances (project, instance, started_at, last_seen) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (project, instance) DO UPDATE SET last_seen = excluded.last_seen",
        (unit.project, instance, unit.now, unit.now),
    )


def forget_others(unit: Unit, instance: str) -> int:
    """For a database one process owns: every other instance row is a previous run."""
    return unit.tx.execute("DELETE FROM instances WHERE project = ? AND instance != ?", (unit.project, instance))


def reap(unit: Unit) -> int:
    """Sweeper step: instances silent for INSTANCE_TTL_S are gone."""
    return unit.tx.execute(
        "DELETE FROM instances WHERE project = ? AND last_seen < ?", (unit.project, unit.now - INSTANCE_TTL_S)
    )


def live_instances(unit: Unit) -> list[dict[str, Any]]:
    rows = unit.tx.all(
        "SELECT instance, started_at, last_seen FROM instances WHERE project = ? AND last_seen >= ?"
        " ORDER BY started_at",
        (unit.project, unit.now - INSTANCE_TTL_S),
    )
    return [dict(r) for r in rows]
