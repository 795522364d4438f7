"""The audit log (SPEC F-93): every state change, chained with SHA-256, and the check of that chain.

Why at `Unit.emit`: every state change in Huddle already emits exactly one event in the
transaction that makes it (token actions emit `auth.*` events too), so appending the audit row
there records each change once, commits or rolls back with it, and cannot be forgotten by a
service added later. A job that fails rolls back to its savepoint together with its audit rows.

A row holds who (the event's actor, and the authenticated principal behind the request: agent,
token id and scopes; empty in open mode and for background jobs), what (the event kind and its
cursor, and a SHA-256 of the event's stored data rather than the data: the event log keeps the
content, the audit log proves it) and when. Its `hash` is SHA-256 over a canonical encoding of
every field plus the previous row's hash; the first row of a project chains from GENESIS. So an
edited row no longer matches its hash, a deleted row leaves a gap in `seq` and a dangling
`prev_hash`, and a moved row chains from a row that now comes after it.

Concurrency: `seq` is the project's previous row + 1, read in the writing transaction. SQLite has
one writer; on PostgreSQL every writer of a project holds its advisory lock to COMMIT
(storage/postgres.py), so the read is race-free across instances and seq is dense in commit order.
The head is never cached across transactions: another instance may have appended since. Within
one job (one `Unit`) it is, since nothing else can append inside it: an announce that emits two
events reads the head once.

What the chain cannot see on its own: rows cut from the end (the newest ones). The verifier
therefore also checks the chain against the event log (every event since the first audited one
has its row, and each row's event still says what the row recorded), and `huddle audit show`
prints the head hash for anyone who wants to keep it somewhere else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from huddle import compact_json
from huddle.domain.principal import current_principal

if TYPE_CHECKING:  # base.py calls append() from Unit.emit
    from huddle.storage.base import Store, Tx, Unit

GENESIS = "0" * 64
# Part of every hashed record, so a future change of the encoding can never verify as this one.
ENCODING = "huddle-audit/1"
COLUMNS = (
    "project",
    "seq",
    "ts",
    "action",
    "actor",
    "principal",
    "token_id",
    "scopes",
    "cursor",
    "data_sha256",
    "prev_hash",
    "hash",
)
_INSERT = f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
_HEAD = "SELECT seq, hash FROM audit_log WHERE project = ? ORDER BY seq DESC LIMIT 1"
# The walk reads the chain in pages: bounded memory, and no half-read server-side stream to cancel
# when it stops at the first bad row.
PAGE = 5000

Head = tuple[int, str]  # (seq, hash) of a project's newest row; (0, GENESIS) before the first


def data_digest(data_text: str) -> str:
    """SHA-256 of the event's data exactly as stored (events.data): export/import carries that text
    verbatim, so the digest can be checked against the event log on any backend, any time later."""
    return hashlib.sha256(data_text.encode()).hexdigest()


def chain_hash(
    project: str,
    seq: int,
    ts: float,
    action: str,
    actor: str | None,
    principal: str,
    token_id: str,
    scopes: str,
    cursor: int,
    data_sha256: str,
    prev_hash: str,
) -> str:
    """SHA-256 over one canonical encoding of a row: a JSON array in fixed order, ASCII only.

    JSON quoting keeps fields apart (no "ab"+"c" == "a"+"bc"); `ts` is passed through float() so
    an int clock reading and the REAL the database hands back encode the same (repr of a double
    round-trips exactly through SQLite REAL, PostgreSQL DOUBLE PRECISION and the export's JSON).
    """
    record = [ENCODING, project, seq, float(ts), action, actor, principal, token_id, scopes, cursor]
    record += [data_sha256, prev_hash]
    return hashlib.sha256(compact_json.stored(record).encode()).hexdigest()


def append(
    tx: Tx, project: str, head: Head | None, *, ts: float, action: str, actor: str | None, cursor: int, data_text: str
) -> Head:
    """Appends the audit row of one event in the caller's transaction; returns the new head.

    `head` is what this job already knows (None: read it, one primary-key lookup).
    """
    if head is None:
        row = tx.one(_HEAD, (project,))
        head = (int(row["seq"]), str(row["hash"])) if row else (0, GENESIS)
    who = current_principal.get()
    principal, token_id, scopes = (who.agent_id, who.token_id, ",".join(sorted(who.scopes))) if who else ("", "", "")
    seq, prev_hash = head[0] + 1, head[1]
    if seq == 1:  # a project's first audited event: everything after the one before it is audited
        tx.execute(
            "INSERT INTO audit_origin (project, audited_after) VALUES (?, ?) ON CONFLICT (project) DO NOTHING",
            (project, cursor - 1),
        )
    digest = data_digest(data_text)
    row_hash = chain_hash(project, seq, ts, action, actor, principal, token_id, scopes, cursor, digest, prev_hash)
    tx.execute(
        _INSERT, (project, seq, ts, action, actor, principal, token_id, scopes, cursor, digest, prev_hash, row_hash)
    )
    return seq, row_hash


# -- reading and verifying ---------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRow:
    project: str
    seq: int
    ts: float
    action: str
    actor: str | None
    principal: str
    token_id: str
    scopes: str
    cursor: int
    data_sha256: str
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, values: Sequence[Any]) -> AuditRow:
        p, seq, ts, action, actor, principal, token_id, scopes, cursor, digest, prev_hash, hash_ = values[:12]
        return cls(
            str(p),
            int(seq),
            float(ts),
            str(action),
            None if actor is None else str(actor),
            str(principal),
            str(token_id),
            str(scopes),
            int(cursor),
            str(digest),
            str(prev_hash),
            str(hash_),
        )

    def expected_hash(self) -> str:
        return chain_hash(
            self.project,
            self.seq,
            self.ts,
            self.action,
            self.actor,
            self.principal,
            self.token_id,
            self.scopes,
            self.cursor,
            self.data_sha256,
            self.prev_hash,
        )


# Runs one query (qmark SQL) and returns every row as a tuple, in select order.
Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


@dataclass(frozen=True)
class Finding:
    """The first thing wrong with a project's audit log."""

    # deleted | edited | reordered | rewritten | event_missing | event_edited | unaudited_event
    problem: str
    seq: int  # the first bad row (for a missing row: the seq it should have had)
    message: str


@dataclass(frozen=True)
class Report:
    project: str
    rows: int  # rows read (up to and including the first bad one)
    head: Head
    finding: Finding | None

    @property
    def intact(self) -> bool:
        return self.finding is None


_SELECT_PAGE = (
    # Aliased: a row as a mapping (PostgreSQL's dict rows) keeps one value per name.
    f"SELECT {', '.join('a.' + c for c in COLUMNS)},"
    " e.cursor AS event_cursor, e.kind AS event_kind, e.actor AS event_actor, e.data AS event_data"
    " FROM audit_log a LEFT JOIN events e ON e.project = a.project AND e.cursor = a.cursor"
    " WHERE a.project = ? AND a.seq > ? ORDER BY a.seq LIMIT ?"
)


def projects(query: Query) -> list[str]:
    """Projects with audit rows, an audit origin or events, by name."""
    rows = query(
        "SELECT project FROM audit_log UNION SELECT project FROM audit_origin UNION SELECT project FROM events"
        " ORDER BY project",
        (),
    )
    return [str(r[0]) for r in rows]


def _missing_chain(query: Query, project: str) -> Finding | None:
    """A project with no audit rows at all: fine if none of its events came after its origin."""
    origin = query("SELECT audited_after FROM audit_origin WHERE project = ?", (project,))
    after = int(origin[0][0]) if origin else 0
    event = query(
        "SELECT cursor, kind FROM events WHERE project = ? AND cursor > ? ORDER BY cursor LIMIT 1", (project, after)
    )
    if not event:
        return None
    cursor, kind = int(event[0][0]), event[0][1]
    what = "its audit rows were deleted" if origin else "its audit log and its origin were deleted"
    return Finding(
        "deleted",
        1,
        f"event {cursor} ({kind}) came after the audit log began but there is no audit row at all: {what}",
    )


def _span(first: int, last: int) -> str:
    return f"row {first} is" if first == last else f"rows {first}–{last} are"


def _broken_link(query: Query, row: AuditRow, hash_ok: bool) -> Finding:
    """Why `row` does not follow its predecessor, told apart by the row its prev_hash names (a query
    on the failure path only)."""
    named = query("SELECT seq FROM audit_log WHERE project = ? AND hash = ?", (row.project, row.prev_hash))
    origin = int(named[0][0]) if named else None
    if origin is not None and origin > row.seq:
        return Finding(
            "reordered",
            row.seq,
            f"row {row.seq} is out of order: it was chained after the row now at seq {origin}, which comes"
            " after it (rows were reordered)",
        )
    if not hash_ok:
        return Finding(
            "edited", row.seq, f"row {row.seq} was edited: its hash does not match its content (or it was renumbered)"
        )
    if origin is None:
        return Finding(
            "rewritten",
            row.seq,
            f"row {row.seq} does not chain from row {row.seq - 1}: its prev_hash names no row, so row"
            f" {row.seq - 1} was rewritten with a fresh hash, or rows before it were deleted and renumbered",
        )
    return Finding(
        "rewritten",
        row.seq,
        f"row {row.seq} chains from row {origin}, not from row {row.seq - 1}: rows after {origin} were"
        " inserted or replaced",
    )


def _check_event(row: AuditRow, present: Any, kind: Any, actor: Any, data: Any) -> Finding | None:
    if present is None:
        return Finding(
            "event_missing",
            row.seq,
            f"row {row.seq} records event {row.cursor} ({row.action}), which is gone from the event log (deleted)",
        )
    if kind != row.action or actor != row.actor or data_digest(str(data)) != row.data_sha256:
        return Finding(
            "event_edited",
            row.seq,
            f"row {row.seq} and event {row.cursor}, which it records, disagree (kind, actor or data): the event"
            " was edited in the event log, or the row was",
        )
    return None


def _unaudited(query: Query, project: str, first: AuditRow, last: AuditRow, rows: int) -> Finding | None:
    """An event since the first audited one without its row: the tail of the audit log was cut, or
    somebody wrote the event log around Huddle. Counting first keeps the intact case to range scans."""
    after = query(
        "SELECT cursor, kind FROM events WHERE project = ? AND cursor > ? ORDER BY cursor LIMIT 1",
        (project, last.cursor),
    )
    if after:
        cursor, kind = int(after[0][0]), after[0][1]
        return Finding(
            "deleted",
            last.seq + 1,
            f"the audit log ends at row {last.seq} but event {cursor} ({kind}) came after it: the newest"
            " audit rows were deleted (or the event was written around Huddle)",
        )
    counted = query(
        "SELECT COUNT(*) FROM events WHERE project = ? AND cursor >= ? AND cursor <= ?",
        (project, first.cursor, last.cursor),
    )
    if int(counted[0][0]) == rows:
        return None
    stray = query(
        "SELECT MIN(e.cursor) FROM events e WHERE e.project = ? AND e.cursor >= ? AND e.cursor <= ? AND NOT EXISTS"
        " (SELECT 1 FROM audit_log a WHERE a.project = e.project AND a.cursor = e.cursor)",
        (project, first.cursor, last.cursor),
    )
    if not stray or stray[0][0] is None:  # cannot happen: more events than rows, each row's event present
        return Finding("unaudited_event", last.seq, f"{counted[0][0]} events but {rows} audit rows since the first")
    cursor = int(stray[0][0])
    before = query(
        "SELECT MAX(seq) FROM audit_log WHERE project = ? AND cursor < ?",
        (project, cursor),
    )
    return Finding(
        "unaudited_event",
        int(before[0][0]) + 1,
        f"event {cursor} has no audit row: it was written into the event log around Huddle",
    )


def verify_project(query: Query, project: str, *, page: int = PAGE) -> Report:
    """Walks a project's chain from seq 1; stops at the first bad row and says why."""
    expected_seq, expected_prev, last_cursor = 1, GENESIS, 0
    first: AuditRow | None = None
    last: AuditRow | None = None
    rows = 0
    while True:
        batch = query(_SELECT_PAGE, (project, expected_seq - 1 if last is None else last.seq, page))
        for values in batch:
            row = AuditRow.of(values)
            rows += 1
            finding: Finding | None = None
            if row.seq != expected_seq:
                finding = Finding(
                    "deleted",
                    expected_seq,
                    f"{_span(expected_seq, row.seq - 1)} missing (deleted): the next row present is row {row.seq}",
                )
            else:
                hash_ok = row.expected_hash() == row.hash
                if not hash_ok or row.prev_hash != expected_prev:
                    finding = _broken_link(query, row, hash_ok)
                elif row.cursor <= last_cursor:
                    finding = Finding(
                        "reordered",
                        row.seq,
                        f"row {row.seq} records event {row.cursor}, older than row {row.seq - 1}'s event"
                        f" {last_cursor}: rows were reordered and re-hashed",
                    )
                else:
                    finding = _check_event(row, *values[12:16])
            if finding is not None:
                return Report(project, rows, (last.seq, last.hash) if last else (0, GENESIS), finding)
            first = first or row
            last = row
            expected_seq, expected_prev, last_cursor = row.seq + 1, row.hash, row.cursor
        if len(batch) < page:
            break
    if first is None or last is None:
        return Report(project, 0, (0, GENESIS), _missing_chain(query, project))
    return Report(project, rows, (last.seq, last.hash), _unaudited(query, project, first, last, rows))


def verify(query: Query, only: Iterable[str] = ()) -> list[Report]:
    """Verifies the projects `only` (default: every project with audit rows)."""
    return [verify_project(query, p) for p in (sorted(set(only)) or projects(query))]


def listing(query: Query, project: str, n: int, start: int | None = None) -> list[AuditRow]:
    """`n` rows of the project, oldest first: from seq `start` on, or else the newest."""
    columns = ", ".join(COLUMNS)
    if start is not None:
        sql = f"SELECT {columns} FROM audit_log WHERE project = ? AND seq >= ? ORDER BY seq LIMIT ?"
        return [AuditRow.of(r) for r in query(sql, (project, start, n))]
    sql = f"SELECT {columns} FROM audit_log WHERE project = ? ORDER BY seq DESC LIMIT ?"
    return [AuditRow.of(r) for r in reversed(query(sql, (project, n)))]


def head(query: Query, project: str) -> Head:
    rows = query(_HEAD, (project,))
    return (int(rows[0][0]), str(rows[0][1])) if rows else (0, GENESIS)


def unit_query(unit: Unit) -> Query:
    """A Query on a store transaction (its rows come as mappings; the verifier reads tuples).

    dict(row): a sqlite3.Row iterates over its values, a PostgreSQL dict row over its keys."""
    return lambda sql, params: [tuple(dict(r).values()) for r in unit.tx.all(sql, params)]


async def verify_store(store: Store, only: Iterable[str] = ()) -> list[Report]:
    """Verifies from one read snapshot of a running store (every project, or `only`)."""
    wanted = list(only)
    return await store.read(lambda unit: verify(unit_query(unit), wanted))
