"""`huddle audit verify` and `huddle audit show`: the audit log's hash chain, checked offline.

    huddle audit verify [--data-dir D | --db-url URL] [--project P]   # exit 0 intact, 1 tampered
    huddle audit show [-n 20] [--data-dir D | --db-url URL] [--project P]

Both open the database as `huddle export` does (cli/database.py) — read-only, from one snapshot, so
they run beside live servers — and walk the chain of storage/audit.py. verify prints one line per
project; a broken chain names its first bad row and why on stderr and exits 1, so a cron job or a
CI step can alert on it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from huddle.cli.database import _where, opened, target_of
from huddle.errors import HuddleError

MAX_INT = 2**63 - 1  # what SQLite and PostgreSQL store as an integer
AUDIT_VERSION = 11  # the migration that created audit_log (schema/011_audit.sql)


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if not 1 <= value <= MAX_INT:
        raise argparse.ArgumentTypeError(f"{raw!r} must be between 1 and {MAX_INT} (a 64-bit row number)")
    return value


def add_audit_parsers(commands: Any) -> None:
    audit = commands.add_parser(
        "audit",
        help="verify or show the tamper-evident audit log (SHA-256 hash chain)",
        description="Every state change is also appended to an audit log whose rows are chained with"
        " SHA-256 per project (docs/security.md#audit-log). verify walks the chain and the event log;"
        " show prints the newest rows and the head hash.",
    )
    audit.set_defaults(print_help=audit.print_help)
    actions = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="check the hash chain: exit 0 if intact, 1 naming the first bad row",
        description="Walk each project's audit chain from its first row: recompute every hash, check seq"
        " and prev_hash links, and check each row against the event it records. Exit 0 when intact; exit"
        " 1 naming the first bad row (seq) and what happened to it (edited, deleted, reordered...).",
    )
    _where(verify, required=False)
    verify.add_argument("--project", action="append", help="verify only this project (repeatable; default: all)")
    show = actions.add_parser(
        "show",
        help="print the newest audit rows and the head hash",
        description="Print the newest rows of each project's audit log (or those from --from SEQ on), oldest"
        " first, and the head (newest row's seq and hash): write the head down somewhere else to notice later"
        " if rows were cut off the end.",
    )
    _where(show, required=False)
    show.add_argument("--project", action="append", help="show only this project (repeatable; default: all)")
    show.add_argument("-n", type=_positive_int, default=20, help="rows per project (default 20)")
    show.add_argument(
        "--from",
        dest="start",
        type=_positive_int,
        metavar="SEQ",
        help="the rows from this seq on (default: the newest)",
    )


def _query(db: Any) -> Any:
    return lambda sql, params: list(db.rows(sql, params))


def _check_schema(db: Any, flag: str) -> None:
    applied = db.applied_versions()
    if not applied:
        raise HuddleError(f"{db.label} holds no Huddle schema; pass the {flag.split()[0]} your server uses")
    if AUDIT_VERSION not in applied:
        raise HuddleError(
            f"{db.label} has schema version {max(applied)}, from before the audit log; run `huddle migrate {flag}`"
            " (or start its server with this Huddle) and the log starts with the next change"
        )


def _projects(query: Any, wanted: list[str] | None, label: str) -> list[str]:
    from huddle.storage import audit

    present = audit.projects(query)
    if not wanted:
        return present
    known = set(present) | {str(r[0]) for r in query("SELECT DISTINCT project FROM events", ())}
    missing = sorted(set(wanted) - known)
    if missing:
        raise HuddleError(
            f"{label} has no project {', '.join(missing)}; the projects audited there are"
            f" {', '.join(present) or '(none)'}"
        )
    return sorted(set(wanted))


def run_audit(args: argparse.Namespace) -> int:
    if args.audit_command == "verify":
        return _verify(args)
    if args.audit_command == "show":
        return _show(args)
    args.print_help()
    return 2


@contextlib.contextmanager
def _snapshot(args: argparse.Namespace) -> Iterator[tuple[Any, Any, Any]]:
    """(target, database, query) of one read-only snapshot of the database the arguments name."""
    target = target_of(args)
    with opened(target, create=False, readonly=True) as db:
        _check_schema(db, target.flag)
        db.begin_snapshot()
        try:
            yield target, db, _query(db)
        finally:
            db.rollback()


def _verify(args: argparse.Namespace) -> int:
    from huddle.storage import audit

    with _snapshot(args) as (target, db, query):
        reports = audit.verify(query, _projects(query, args.project, db.label))
    print(f"audit log of {db.label}")
    for r in reports:
        if r.finding is None:
            head = f"head row {r.head[0]}, sha256 {r.head[1]}" if r.rows else "nothing audited yet"
            print(f"project {r.project}: {r.rows} rows, chain intact ({head})")
        else:
            f = r.finding
            print(f"project {r.project}: chain broken at row {f.seq} ({f.problem}): {f.message}", file=sys.stderr)
    bad = [r for r in reports if r.finding is not None]
    if bad:
        first = bad[0].finding
        assert first is not None
        intact = {1: "", 2: "row 1 verifies; "}.get(first.seq, f"rows 1–{first.seq - 1} verify; ")
        print(
            f"huddle: tampering found in {len(bad)} of {len(reports)} project(s); in {bad[0].project}, {intact}inspect"
            f" from row {first.seq} with `huddle audit show --from {first.seq} {target.flag} --project"
            f" {bad[0].project}` and compare with a backup",
            file=sys.stderr,
        )
        return 1
    total = sum(r.rows for r in reports)
    print(f"{total} rows, chain intact" + ("" if reports else " (no audit rows yet)"))
    return 0


def _who(row: dict[str, Any]) -> str:
    if not row["principal"]:
        return "-"  # open mode, or a background job
    token = f" token {row['token_id']}" if row["token_id"] else ""
    return f"{row['principal']} [{row['scopes']}]{token}"


def _when(row: dict[str, Any]) -> str:
    return datetime.fromtimestamp(row["ts"], UTC).strftime("%Y-%m-%d %H:%M:%S")


def _show(args: argparse.Namespace) -> int:
    from huddle.cli.remote import table
    from huddle.storage import audit

    with _snapshot(args) as (_, db, query):
        wanted = _projects(query, args.project, db.label)
        shown = {p: audit.listing(query, p, args.n, args.start) for p in wanted}
        heads = {p: audit.head(query, p) for p in wanted}
    if not shown:
        print(f"no audit rows in {db.label} yet")
    for project, rows in shown.items():
        print(f"project {project}:")
        if not rows:
            print("  (no audit rows yet)")
            continue
        columns: list[tuple[str, Any]] = [
            ("seq", "seq"),
            ("time (UTC)", _when),
            ("action", "action"),
            ("actor", "actor"),
            ("principal", _who),
            ("event", "cursor"),
            ("hash", lambda r: r["hash"][:12]),
        ]
        print(table([asdict(r) for r in rows], columns))
        print(f"head: row {heads[project][0]} sha256 {heads[project][1]}")
    return 0
