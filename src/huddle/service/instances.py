"""Which Huddle processes are alive: a heartbeat row per instance (issue 9).

Every instance writes its heartbeat every HEARTBEAT_S; the leader's sweep forgets instances silent
for INSTANCE_TTL_S, and with them their lock-queue entries (service/locks.py). A process that owns
its database alone (SQLite) forgets every other instance when it starts: they were earlier runs.

On PostgreSQL there is a sharper answer than a heartbeat: every connection of an instance carries
its id in `application_name` (storage/postgres.py), and PostgreSQL drops a killed process's
connections as soon as its sockets close. Before a lock is handed to a queued request, the queue
entries of instances with no connection left are dropped (`drop_waiters_of_gone_instances`), so a
lease is never granted to a caller whose process is gone.
"""

from __future__ import annotations

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


def connected_instances(unit: Unit) -> set[str] | None:
    """Instances with a connection to the database right now (PostgreSQL), or None (SQLite: one process)."""
    if unit.tx.dialect != "postgresql":
        return None
    rows = unit.tx.all(
        "SELECT DISTINCT split_part(application_name, ':', 2) AS instance FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name LIKE 'huddle%:%'"
    )
    return {str(r["instance"]) for r in rows if r["instance"]}


def drop_waiters_of_gone_instances(unit: Unit) -> int:
    """Deletes queue entries whose instance has no connection left (PostgreSQL only; 0 on SQLite)."""
    connected = connected_instances(unit)
    if connected is None:
        return 0
    marks = ", ".join("?" for _ in connected) or "NULL"
    return unit.tx.execute(
        f"DELETE FROM lock_waiters WHERE project = ? AND instance NOT IN ({marks})", (unit.project, *connected)
    )
