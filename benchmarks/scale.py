"""Team-mode scale: SQLite vs PostgreSQL, one vs three instances, fresh vs a big database.

For each configuration, 50 clients keep one call each in flight for a fixed time, spread round-robin
over the instances (as a load balancer would), through the REST tool endpoint (the same operations
MCP calls; a light client, so the load generator does not eat the servers' CPU). Each client
alternates an announce that depends on another agent's file (scored, recorded, an awareness event
written) with an acquire and a release of a lease of its own.

Configurations:
- sqlite-1: the default, one process;
- postgresql-1 / postgresql-3: one or three processes on one PostgreSQL database;
- *-big: the same on a database pre-filled with 1,000 agents, 10,000 active intents, 10,000 active
  leases and 1,000,000 events (--quick: 100 / 1,000 / 1,000 / 20,000), to show an announce does not
  cost more as the database grows.

    python benchmarks/scale.py            # 20 s per configuration
    python benchmarks/scale.py --quick    # CI: 2 s per configuration, small pre-fill

Needs PostgreSQL (HUDDLE_BENCH_POSTGRES, default postgresql://postgres@127.0.0.1:5432/test as the
admin database; the benchmark creates and drops its own databases).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import psycopg

from _harness import machine, summarise
from huddle.storage import postgres
from huddle.storage.base import Tx
from huddle.storage.sqlite import SqliteTx
from huddle.storage.sqlite import migrate as migrate_sqlite
from huddle.testing import log_tail, server_command, start_server, stop_server

ADMIN_URL = os.environ.get("HUDDLE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
PROJECT = "repo"  # the repository directory is named `repo`
CLIENTS = 50


# -- a big database ------------------------------------------------------------------------------


def big_rows(agents: int, intents: int, leases: int) -> dict[str, list[tuple[Any, ...]]]:
    now = time.time()
    # last_seen a day ahead: the crowd stays online (and scored against) for the whole run.
    return {
        "agents": [
            (PROJECT, f"crowd-{i}", f"crowd {i}", "online", now, now, now + 86400, f'["mod{i % 20}"]')
            for i in range(agents)
        ],
        "intents": [
            (PROJECT, f"crowd-{i % agents}", f"work {i}", now, now + 86400, f'["src/crowd/{i}.py"]')
            for i in range(intents)
        ],
        "intent_paths": [(PROJECT, f"src/crowd/{i}.py", i + 1, f"crowd-{i % agents}") for i in range(intents)],
        "locks": [
            (PROJECT, f"crowd-{i % agents}", f"src/leased/{i}.py", f"src/leased/{i}.py", i + 1, now, now, now + 86400)
            for i in range(leases)
        ],
    }


INSERTS = {
    "agents": "INSERT INTO agents (project, agent_id, name, status, registered_at, session_start, last_seen, modules)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "intents": "INSERT INTO intents (project, agent_id, subject, kind, status, created_at, expires_at, target_files,"
    " depends_on_files, target_modules, target_symbols, verdict, impacts)"
    " VALUES (?, ?, ?, 'edit', 'active', ?, ?, ?, '[]', '[]', '[]', 'proceed', '[]')",
    "intent_paths": "INSERT INTO intent_paths (project, path, role, intent_id, agent_id) VALUES (?, ?, 'target', ?, ?)",
    "locks": "INSERT INTO locks (project, agent_id, path, kind, anchor, mode, token, ttl_s, acquired_at, renewed_at,"
    " expires_at) VALUES (?, ?, ?, 'file', ?, 'exclusive', ?, 86400, ?, ?, ?)",
}


def fill(tx: Tx, agents: int, intents: int, leases: int) -> None:
    """The crowd, its intents and its leases, through the same Tx both backends give the services."""
    for table, rows in big_rows(agents, intents, leases).items():
        tx.executemany(INSERTS[table], rows)
    tx.execute("INSERT INTO lock_counters (project, last_token) VALUES (?, ?)", (PROJECT, leases))


def prefill_sqlite(data_dir: Path, agents: int, intents: int, leases: int, events: int) -> None:
    data_dir.mkdir(parents=True)
    conn = sqlite3.connect(data_dir / "huddle.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    migrate_sqlite(conn)
    conn.execute("BEGIN")
    fill(SqliteTx(conn), agents, intents, leases)
    conn.execute(  # the dialects count rows differently: a recursive CTE here, generate_series below
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO events (project, ts, kind, actor, audience, data)"
        " SELECT ?, 0, 'action.summary', 'crowd-' || (i % 1000), '[\"*\"]', '{}' FROM n",
        (events, PROJECT),
    )
    conn.execute("COMMIT")
    conn.close()


def prefill_postgres(url: str, agents: int, intents: int, leases: int, events: int) -> None:
    conn = postgres.connect(url)
    try:
        postgres.migrate(conn)
        with conn.transaction():
            tx = postgres.PgTx(conn)
            fill(tx, agents, intents, leases)
            tx.execute(
                "INSERT INTO events (project, cursor, ts, kind, actor, audience, data)"
                " SELECT ?, i, 0, 'action.summary', 'crowd-' || (i % 1000), '[\"*\"]', '{}'"
                " FROM generate_series(1, ?) AS i",
                (PROJECT, events),
            )
            tx.execute("SELECT setval(pg_get_serial_sequence('intents', 'id'), ?)", (intents,))
            tx.execute("SELECT setval(pg_get_serial_sequence('locks', 'id'), ?)", (leases,))
        conn.execute("ANALYZE")
    finally:
        conn.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    name = f"huddle_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield _url(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _url(name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    return (
        f"postgresql://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{name}"
    )


@contextlib.contextmanager
def instances(count: int, db_url: str | None, prepare: Callable[[Path], None] | None) -> Iterator[list[str]]:
    """`count` real servers on one repo (and one database when db_url is given); yields their URLs."""
    with tempfile.TemporaryDirectory(prefix="huddle-scale-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        if prepare is not None:
            prepare(Path(tmp) / "data0")
        started: list[tuple[Any, Path]] = []
        urls: list[str] = []
        try:
            for i in range(count):
                data_dir = Path(tmp) / f"data{i}"
                extra = ["--mqtt-broker", "off", *(["--db-url", db_url] if db_url else [])]
                log = Path(tmp) / f"server{i}.log"
                try:
                    process, url = start_server(server_command(data_dir, repo, *extra), data_dir, log, timeout_s=60)
                except RuntimeError as exc:
                    raise SystemExit(str(exc)) from None
                started.append((process, log))
                urls.append(url)
            yield urls
        finally:
            for process, log in started:
                stop_server(process, timeout_s=10)
                if process.returncode not in (0, -2):
                    print(f"server log ({log}):\n{log_tail(log)}", file=sys.stderr)


# -- the load ------------------------------------------------------------------------------------


async def run_load(urls: list[str], seconds: float) -> dict[str, Any]:
    announce: list[float] = []
    lease: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:

        async def tool(base: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
            response = await http.post(f"{base}/api/v1/tools/{name}", json=args)
            if response.status_code != 200:
                raise RuntimeError(f"{name}: {response.status_code} {response.text[:200]}")
            return dict(response.json()["result"])

        for i in range(CLIENTS):
            base = urls[i % len(urls)]
            await tool(base, "register_agent", {"name": f"load-{i}", "agent_id": f"load-{i}"})
            await tool(
                base, "announce_work", {"agent_id": f"load-{i}", "subject": "own", "target_files": [f"src/load{i}.py"]}
            )
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def client(i: int) -> None:
            nonlocal errors
            base = urls[i % len(urls)]
            me, other = f"load-{i}", f"src/load{(i + 1) % CLIENTS}.py"
            n = 0
            while time.perf_counter() < deadline:
                n += 1
                try:
                    t = time.perf_counter()
                    await tool(
                        base,
                        "announce_work",
                        {
                            "agent_id": me,
                            "subject": f"step {n}",
                            "target_files": [f"src/own{i}/{n}.py"],
                            "depends_on_files": [other],
                        },
                    )
                    announce.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    got = await tool(
                        base, "acquire_lock", {"agent_id": me, "path": f"src/own{i}/lease.py", "ttl_s": 60}
                    )
                    lease.append(time.perf_counter() - t)
                    if not got.get("granted"):
                        raise RuntimeError(f"lease refused: {got}")
                    t = time.perf_counter()
                    await tool(base, "release_lock", {"agent_id": me, "path": f"src/own{i}/lease.py"})
                    lease.append(time.perf_counter() - t)
                except Exception as exc:  # counted, and the first few shown: a benchmark reports, it does not stop
                    errors += 1
                    if errors <= 3:
                        print(f"error: {exc}", file=sys.stderr)

        async with anyio.create_task_group() as group:
            for i in range(CLIENTS):
                group.start_soon(client, i)
        wall = time.perf_counter() - started
    return {
        "announce": summarise(announce, wall),
        "acquire_release": summarise(lease, wall),
        "calls_per_s": round((len(announce) + len(lease)) / wall, 1),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run for CI (no timing claims)")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 20.0
    big = (100, 1_000, 1_000, 20_000) if args.quick else (1_000, 10_000, 10_000, 1_000_000)
    report: dict[str, Any] = {
        "benchmark": "scale",
        "machine": machine(),
        "quick": args.quick,
        "clients_in_flight": CLIENTS,
        "seconds_per_configuration": seconds,
        "big_database": dict(zip(("agents", "active_intents", "active_leases", "events"), big, strict=True)),
        "results": {},
    }
    results = report["results"]
    with instances(1, None, None) as urls:
        results["sqlite-1"] = anyio.run(run_load, urls, seconds)
    with instances(1, None, lambda d: prefill_sqlite(d, *big)) as urls:
        results["sqlite-1-big"] = anyio.run(run_load, urls, seconds)
    for count in (1, 3):
        with postgres_database() as url, instances(count, url, None) as urls:
            results[f"postgresql-{count}"] = anyio.run(run_load, urls, seconds)
        with postgres_database() as url:
            prefill_postgres(url, *big)
            with instances(count, url, None) as urls:
                results[f"postgresql-{count}-big"] = anyio.run(run_load, urls, seconds)

    def ratio(a: str, b: str, key: str) -> float:
        return float(round(results[a]["announce"][key] / results[b]["announce"][key], 2))

    report["announce_p50_big_vs_fresh"] = {
        name: ratio(f"{name}-big", name, "p50_ms") for name in ("sqlite-1", "postgresql-1", "postgresql-3")
    }
    report["calls_per_s_3_vs_1_postgresql"] = round(
        results["postgresql-3"]["calls_per_s"] / results["postgresql-1"]["calls_per_s"], 2
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
