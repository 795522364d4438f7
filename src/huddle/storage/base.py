"""The storage contract every backend fulfils.

Service code writes *transaction functions*: plain synchronous functions that take a `Unit`
(a transaction plus the clock reading and an event recorder) and do all their reads and writes
through it. A backend runs each function as one atomic unit on its own database thread — one
thread hop per request, not one per statement — and publishes the recorded events after commit.
The SQL is kept portable (qmark parameters, `ON CONFLICT`, `RETURNING`) so the same functions
run on SQLite (storage/sqlite.py) and PostgreSQL (storage/postgres.py); the few places a dialect
differs ask `tx.dialect` (an event's cursor below, full-text search in service/shared_context.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from huddle.domain.events import EVERYONE, Event
from huddle.storage import audit

T = TypeVar("T")
Row = Mapping[str, Any]


class Tx(Protocol):
    """The few statements a transaction function may run."""

    dialect: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Runs a statement; returns the number of rows it changed."""
        ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def insert(self, sql: str, params: Sequence[Any], key: str) -> int:
        """Runs an INSERT of one row (written without RETURNING); returns its integer `key` column.

        On SQLite `key` must be the table's INTEGER PRIMARY KEY: the rowid SQLite hands back
        anyway, where a RETURNING clause would cost a second pass (4 µs of a 7 µs INSERT).
        """
        ...

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...


_INSERT_EVENT = {
    # One writer per file: the rowid order is the commit order.
    "sqlite": "INSERT INTO events (project, ts, kind, actor, thread_id, audience, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
    # Writers of a project hold its advisory lock to COMMIT (storage/postgres.py), so the next
    # cursor of the project is its MAX + 1: dense, and in commit order across every instance.
    "postgresql": "WITH p AS (SELECT CAST(? AS TEXT) AS project) "
    "INSERT INTO events (project, cursor, ts, kind, actor, thread_id, audience, data) "
    "SELECT p.project, COALESCE((SELECT MAX(cursor) FROM events WHERE project = p.project), 0) + 1, "
    "?, ?, ?, ?, ?, ? FROM p",
}


class Unit:
    """One transaction as a service sees it: statements, `now`, and events to emit.

    Events are inserted in the same transaction as the change they describe, so the log and the
    state can never disagree; the backend hands `events` to the bus only after commit.
    """

    def __init__(self, tx: Tx, now: float, project: str):
        self.tx = tx
        self.now = now
        self.project = project
        self.events: list[Event] = []
        # The project's audit head as this job left it (storage/audit.py): read once, then carried
        # from one emit to the next. Never longer than the job: another instance may append next.
        self._audit_head: audit.Head | None = None
        # The last large audience this job filed: (addressees, as stored, its group key).
        self._crowd: tuple[tuple[str, ...], str, tuple[str, ...]] | None = None

    def emit(
        self,
        kind: str,
        /,
        *,
        actor: str | None,
        audience: Iterable[str] = (EVERYONE,),
        thread_id: str | None = None,
        **data: Any,
    ) -> Event:
        addressees = dict.fromkeys(audience)  # in order, each once (in C: an audience may be a crowd)
        if "" in addressees or None in addressees:
            addressees = dict.fromkeys(a for a in addressees if a)
        who = tuple(addressees)
        keys: tuple[str, ...]  # what event_audience files the event under
        if EVERYONE in addressees:
            who_text, keys = json.dumps(who), (EVERYONE,)  # read by every agent: one row, whoever else is named
        elif len(who) < GROUP_AUDIENCE_AT:
            who_text, keys = json.dumps(who), who
        elif self._crowd is not None and self._crowd[0] == who:
            who, who_text, keys = self._crowd  # a crowd's second event (an announce and its awareness)
        else:
            who_text, keys = json.dumps(who), (_audience_group(self.tx, self.project, who),)
            self._crowd = (who, who_text, keys)
        payload = json.dumps(data)
        cursor = self.tx.insert(
            _INSERT_EVENT[self.tx.dialect],
            (self.project, self.now, kind, actor, thread_id, who_text, payload),
            "cursor",
        )
        # Every state change emits its event here, so this is where each one is audited (F-93).
        self._audit_head = audit.append(
            self.tx,
            self.project,
            self._audit_head,
            ts=self.now,
            action=kind,
            actor=actor,
            cursor=cursor,
            data_text=payload,
        )
        self.tx.executemany(
            "INSERT INTO event_audience (project, agent_id, cursor) VALUES (?, ?, ?)",
            [(self.project, key, cursor) for key in keys],
        )
        event = Event(cursor, self.now, self.project, kind, actor, who, thread_id, data)
        self.events.append(event)
        return event


# An audience of at least this many addressees is filed once, as a group (schema 012): its members
# are written the first time that set is addressed, and each event to it writes one event_audience
# row. Smaller ones keep a row per addressee: within about 0.1 ms an announce of a group's cost
# (measured with benchmarks/crowd.py's setup: 1.04 vs 0.93 ms for 10, 1.22 vs 0.95 for 20), and each
# group is one more key in every member's reads, so everyday audiences (a thread, a message, a few
# peers) add none.
GROUP_AUDIENCE_AT = 16
# No agent id starts with it (domain/validate.py), so a group key is never read as an agent's own.
GROUP_PREFIX = "#"
# A reader lists its groups' keys in the query up to this many; past it they are joined in SQL
# (correct, but the planners then read more of the table: see addressed_to).
LISTED_GROUPS = 500


def _audience_group(tx: Tx, project: str, who: Sequence[str]) -> str:
    """The group key of an audience, its members written if this set was never addressed before."""
    key = GROUP_PREFIX + hashlib.sha256("\n".join(sorted(who)).encode()).hexdigest()[:32]
    if tx.execute(
        "INSERT INTO audience_groups (project, group_id, members) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (project, key, len(who)),
    ):
        tx.executemany(
            "INSERT INTO audience_members (project, agent_id, group_id) VALUES (?, ?, ?)",
            [(project, agent, key) for agent in who],
        )
    return key


# An agent's slice of the log: its audience rows (alias a) with their events (alias e). Cursors count
# per project on PostgreSQL, so the join takes the project as well as the cursor. Select the rows
# with `addressed_to`.
AUDIENCE_EVENTS = "event_audience a JOIN events e ON e.project = a.project AND e.cursor = a.cursor"


def addressed_to(unit: Unit, agent: str) -> tuple[str, list[Any]]:
    """The condition on AUDIENCE_EVENTS' `a` for the events addressed to `agent`, and its parameters:
    rows filed under its id, under everyone (`*`) or under a group it belongs to.

    Its groups are read first, in the same snapshot, and listed like its id: an IN list is what both
    planners turn into index ranges (PostgreSQL walks the log in cursor order probing them), where a
    subquery made PostgreSQL scan and sort the whole table. An agent in very many groups joins them.
    """
    groups = unit.tx.all(
        "SELECT group_id FROM audience_members WHERE project = ? AND agent_id = ? LIMIT ?",
        (unit.project, agent, LISTED_GROUPS + 1),
    )
    if len(groups) > LISTED_GROUPS:
        return (
            "a.project = ? AND a.agent_id IN (SELECT CAST(? AS TEXT) UNION ALL SELECT CAST(? AS TEXT)"
            " UNION ALL SELECT m.group_id FROM audience_members m WHERE m.project = ? AND m.agent_id = ?)",
            [unit.project, agent, EVERYONE, unit.project, agent],
        )
    keys = [agent, EVERYONE, *(str(g["group_id"]) for g in groups)]
    return f"a.project = ? AND a.agent_id IN ({', '.join('?' * len(keys))})", [unit.project, *keys]


def event_from_row(row: Row) -> Event:
    return Event(
        cursor=int(row["cursor"]),
        ts=float(row["ts"]),
        project=str(row["project"]),
        kind=str(row["kind"]),
        actor=row["actor"],
        audience=tuple(json.loads(row["audience"])),
        thread_id=row["thread_id"],
        data=json.loads(row["data"]),
    )


def distinct_list(dialect: str, column: str) -> str:
    """An aggregate joining the distinct values of `column` with commas (the two dialects spell it apart)."""
    if dialect == "postgresql":
        return f"STRING_AGG(DISTINCT {column}, ',')"
    return f"GROUP_CONCAT(DISTINCT {column})"


def joined_list(dialect: str, column: str) -> str:
    """An aggregate joining the values of `column` with commas, duplicates kept, in no set order."""
    if dialect == "postgresql":
        return f"STRING_AGG({column}, ',')"
    return f"GROUP_CONCAT({column})"


def starts_with(column: str, prefix: str) -> tuple[str, tuple[int, str]]:
    """A condition "`column` begins with `prefix`" and its parameters: exact and case-sensitive on
    both dialects. (LIKE is not: SQLite folds ASCII case, PostgreSQL does not, and `_` matches any
    character on both; the live filters in Python compare exactly.)"""
    return f"substr({column}, 1, ?) = ?", (len(prefix), prefix)


def latest_cursor(unit: Unit) -> int:
    """The cursor of the newest event of the unit's project (0 for an empty log)."""
    row = unit.tx.one("SELECT MAX(cursor) AS c FROM events WHERE project = ?", (unit.project,))
    return int(row["c"] or 0) if row else 0


CommitListener = Callable[[Sequence[Event]], None]


class Store(Protocol):
    """A backend: runs transaction functions and reports committed events in commit order."""

    project: str
    dialect: str
    instance: str
    # True when other Huddle processes may write the same database (PostgreSQL).
    shared: bool

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, fn: Callable[[Unit], T]) -> T:
        """Runs `fn` atomically; on an exception nothing it wrote is kept and the exception is re-raised."""
        ...

    async def read(self, fn: Callable[[Unit], T]) -> T:
        """Runs `fn` on a consistent snapshot; it must not write."""
        ...

    def on_commit(self, listener: CommitListener) -> None:
        """Registers a callback run on the event loop, in commit order, with each commit's events.

        On a shared database that is every instance's commits, each event once, in cursor order.
        """
        ...

    async def lead(self) -> bool:
        """True while this process should run the background jobs (expiry, sweeps, analysis).

        Always true for a store one process owns; on a shared database one instance at a time.
        """
        ...
