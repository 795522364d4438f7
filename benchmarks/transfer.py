"""`huddle export` / `huddle import` throughput: SQLite → PostgreSQL → SQLite, on a long history.

Fills a fresh SQLite database with N events (each with its audience row), N/10 ended intents and
N/100 shared-context entries, then times each leg through the same functions the commands run:
export SQLite, import into a fresh PostgreSQL database, export it, import into a fresh SQLite
file. Prints rows per second per leg and the file size. Without a reachable PostgreSQL
(`HUDDLE_TEST_POSTGRES`, default the machine's 127.0.0.1:5432 database `test`) only the SQLite legs run.

    python benchmarks/transfer.py            # 1,000,000 events
    python benchmarks/transfer.py --quick    # CI: 5,000 events
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from _harness import machine
from huddle.storage.admin import Database, PostgresDatabase, SqliteDatabase
from huddle.storage.sqlite import migrate
from huddle.storage.transfer import export, import_

ADMIN_URL = os.environ.get("HUDDLE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
PROJECT = "bench"


def fill(path: Path, events: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    migrate(conn)
    now = time.time() - 86400
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (project, ts, kind, actor, thread_id, audience, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            (PROJECT, now + i, "action.summary", f"a{i % 100}", None, f'["a{i % 100}"]', '{"summary": "x"}')
            for i in range(events)
        ),
    )
    conn.execute("INSERT INTO event_audience (project, agent_id, cursor) SELECT project, actor, cursor FROM events")
    conn.executemany(
        "INSERT INTO intents (project, agent_id, subject, kind, status, created_at, expires_at, ended_at,"
        " target_files, depends_on_files, target_modules, target_symbols, verdict, impacts)"
        " VALUES (?, ?, 'old work', 'edit', 'completed', ?, ?, ?, ?, '[]', '[]', '[]', 'proceed', '[]')",
        ((PROJECT, f"a{i % 100}", now, now + 60, now + 60, f'["src/{i}.py"]') for i in range(events // 10)),
    )
    conn.executemany(
        "INSERT INTO shared_context (project, agent_id, type, content, tags, created_at)"
        " VALUES (?, ?, 'note', ?, '[]', ?)",
        ((PROJECT, f"a{i % 100}", f"note number {i} about locks", now) for i in range(max(1, events // 100))),
    )
    conn.execute("COMMIT")
    conn.close()


def leg(name: str, db: Database, file: Path, *, write: bool) -> dict[str, Any]:
    started = time.perf_counter()
    with db:
        if write:
            db.migrate()
            with file.open(encoding="utf-8") as f:
                summary = import_(db, f, str(file), force=False)
        else:
            with file.open("w", encoding="utf-8") as f:
                summary = export(db, f)
    seconds = time.perf_counter() - started
    rows = sum(summary["tables"].values())
    return {"leg": name, "rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run for CI (no timing claims)")
    parser.add_argument("--events", type=int, help="events in the history (default 1,000,000; --quick 5,000)")
    args = parser.parse_args()
    events = args.events or (5_000 if args.quick else 1_000_000)
    report: dict[str, Any] = {"benchmark": "transfer", "machine": machine(), "quick": args.quick, "events": events}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fill(root / "source.db", events)
        legs = [leg("export sqlite", SqliteDatabase(root / "source.db", readonly=True), root / "a.jsonl", write=False)]
        report["file_bytes"] = (root / "a.jsonl").stat().st_size
        try:
            with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
                name = f"huddle_bench_{uuid.uuid4().hex[:10]}"
                admin.execute(f"CREATE DATABASE {name}")
        except psycopg.Error as exc:
            report["postgresql"] = f"unreachable ({str(exc).strip()[:120]}); PostgreSQL legs skipped"
            legs.append(leg("import sqlite", SqliteDatabase(root / "copy.db"), root / "a.jsonl", write=True))
        else:
            url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
            try:
                legs.append(leg("import postgresql", PostgresDatabase(url), root / "a.jsonl", write=True))
                legs.append(leg("export postgresql", PostgresDatabase(url), root / "b.jsonl", write=False))
                legs.append(leg("import sqlite", SqliteDatabase(root / "copy.db"), root / "b.jsonl", write=True))
            finally:
                with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        report["legs"] = legs
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
