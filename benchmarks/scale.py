"""Team-mode scale: SQLite vs PostgreSQL, one vs three instances, fresh vs a big database.

For each configuration, 50 clients keep one call each in flight for a fixed time, spread round-robin
over the instances (as a load balancer would), through the REST tool endpoint (the same operations
MCP calls; a light client, so the load generator does not eat the servers' CPU). Each client
alternates an announce that depends on another agent's file (scored, recorded, an awareness event
written) with an acquire and a release of a lease of its own. After each round of loaded blocks,
each configuration also answers 20 announces one at a time (`announce_alone`): at saturation the
p50 is mostly queueing, so the cost of one announce is read there.

Configurations:
- sqlite-1: the default, one process;
- postgresql-1 / postgresql-3: one or three processes on one PostgreSQL database;
- *-big: the same on a database pre-filled with 1,000 agents, 10,000 active intents, 10,000 active
  leases and 1,000,000 events (--quick: 100 / 1,000 / 1,000 / 20,000), to show an announce does not
  cost more as the database grows.

The configurations that are compared run side by side (sqlite-1 with sqlite-1-big; the four
PostgreSQL ones together), and the load moves between them in blocks of 2 s (a different one first
each round), so each ratio comes
from the same minutes of this shared machine.

    python benchmarks/scale.py               # 20 loaded seconds per configuration, in 2 s blocks
    python benchmarks/scale.py --seconds 60  # longer, for steadier ratios
    python benchmarks/scale.py --quick       # CI: 1 s per configuration in 0.5 s blocks, small pre-fill

Needs PostgreSQL (HUDDLE_BENCH_POSTGRES, default postgresql://postgres@127.0.0.1:5432/test as the
admin database; the benchmark creates and drops its own databases).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
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
ALONE_PER_BLOCK = 20  # announces one at a time after each round of loaded blocks


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


PREFILLED = ("agents", "intents", "intent_paths", "locks", "lock_counters", "events")


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
        # Statistics for what the pre-fill wrote, as autovacuum would have gathered them over the
        # database's life. Not a bare ANALYZE: that also records the tables left empty (audit_log,
        # event_audience…) as empty, and a cached generic plan made from it (a sequential scan of
        # the audit log for its head) then stays while those tables grow during the run, until
        # autovacuum analyses them again: a cost of the pre-fill, not of a big database.
        conn.execute(f"ANALYZE {', '.join(PREFILLED)}")
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


@dataclasses.dataclass
class Configuration:
    """One configuration's servers, its clients' HTTP pool, and the calls timed so far."""

    name: str
    urls: list[str]
    # A pool per block: between its blocks a configuration's connections sit idle longer than the
    # server's keep-alive (5 s), and a request sent on one the server is closing fails.
    http: httpx.AsyncClient = dataclasses.field(init=False)
    announce: list[float] = dataclasses.field(default_factory=list)
    lease: list[float] = dataclasses.field(default_factory=list)
    alone: list[float] = dataclasses.field(default_factory=list)  # announces with nothing else in flight
    errors: int = 0
    loaded_s: float = 0.0  # the time its blocks ran: calls/s counts only the moments it was loaded
    steps: list[int] = dataclasses.field(default_factory=lambda: [0] * CLIENTS)

    async def tool(self, client: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
        base = self.urls[client % len(self.urls)]  # round-robin, as a load balancer would spread them
        response = await self.http.post(f"{base}/api/v1/tools/{name}", json=args)
        if response.status_code != 200:
            raise RuntimeError(f"{name}: {response.status_code} {response.text[:200]}")
        return dict(response.json()["result"])

    @contextlib.asynccontextmanager
    async def connections(self) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        async with httpx.AsyncClient(limits=limits, timeout=60) as self.http:
            yield

    async def join(self) -> None:
        """The load agents register, each with an intent of its own that the next one depends on."""
        for i in range(CLIENTS):
            await self.tool(i, "register_agent", {"name": f"load-{i}", "agent_id": f"load-{i}"})
            await self.tool(
                i, "announce_work", {"agent_id": f"load-{i}", "subject": "own", "target_files": [f"src/load{i}.py"]}
            )

    async def block(self, seconds: float, *, timed: bool) -> None:
        """50 clients keep one call each in flight for `seconds`; their times are kept when `timed`."""
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def client(i: int) -> None:
            me, other = f"load-{i}", f"src/load{(i + 1) % CLIENTS}.py"
            while time.perf_counter() < deadline:
                self.steps[i] += 1
                n = self.steps[i]
                try:
                    t = time.perf_counter()
                    await self.tool(
                        i,
                        "announce_work",
                        {
                            "agent_id": me,
                            "subject": f"step {n}",
                            "target_files": [f"src/own{i}/{n}.py"],
                            "depends_on_files": [other],
                        },
                    )
                    announced = time.perf_counter() - t
                    t = time.perf_counter()
                    got = await self.tool(
                        i, "acquire_lock", {"agent_id": me, "path": f"src/own{i}/lease.py", "ttl_s": 60}
                    )
                    acquired = time.perf_counter() - t
                    if not got.get("granted"):
                        raise RuntimeError(f"lease refused: {got}")
                    t = time.perf_counter()
                    await self.tool(i, "release_lock", {"agent_id": me, "path": f"src/own{i}/lease.py"})
                    released = time.perf_counter() - t
                    if timed:
                        self.announce.append(announced)
                        self.lease += (acquired, released)
                except Exception as exc:  # counted, and the first few shown: a benchmark reports, it does not stop
                    self.errors += 1
                    if self.errors <= 3:
                        print(f"{self.name}: error: {exc}", file=sys.stderr)

        async with anyio.create_task_group() as group:
            for i in range(CLIENTS):
                group.start_soon(client, i)
        if timed:
            self.loaded_s += time.perf_counter() - started

    async def one_at_a_time(self, calls: int) -> None:
        """`calls` announces in a row with nothing else in flight: what one costs, without queueing.

        Under 50 clients the p50 is mostly time spent waiting behind other calls (on PostgreSQL, for
        the project's write lock), so it moves with how the instances happen to interleave; one call
        at a time shows whether the announce itself costs more on a big database.
        """
        for k in range(calls):
            i = k % CLIENTS  # each call from the next load agent, so the instances take turns
            self.steps[i] += 1
            t = time.perf_counter()
            await self.tool(
                i,
                "announce_work",
                {
                    "agent_id": f"load-{i}",
                    "subject": f"step {self.steps[i]}",
                    "target_files": [f"src/own{i}/{self.steps[i]}.py"],
                    "depends_on_files": [f"src/load{(i + 1) % CLIENTS}.py"],
                },
            )
            self.alone.append(time.perf_counter() - t)

    def result(self) -> dict[str, Any]:
        return {
            "announce_alone": summarise(self.alone),
            "announce": summarise(self.announce, self.loaded_s),
            "acquire_release": summarise(self.lease, self.loaded_s),
            "calls_per_s": round((len(self.announce) + len(self.lease)) / self.loaded_s, 1),
            "errors": self.errors,
        }


def rounds(seconds: float, block_s: float) -> int:
    """Whole blocks of load per configuration: at least `seconds` of it, at least one block."""
    return max(1, math.ceil(seconds / block_s))


async def alternate(group: dict[str, list[str]], seconds: float, block_s: float) -> dict[str, Any]:
    """Loads the group's configurations in turn, `block_s` at a time, until each ran `seconds`.

    Their servers all run at once but only one configuration is loaded at a time, so a fresh and a
    big database (or one and three instances) are compared over the same minutes of this shared
    machine rather than in two runs minutes apart, whose background load differs.
    """
    configurations = [Configuration(name, urls) for name, urls in group.items()]
    for configuration in configurations:
        async with configuration.connections():
            await configuration.join()
            await configuration.block(block_s, timed=False)  # warm-up: caches, first plans
    for round_ in range(rounds(seconds, block_s)):
        # A different configuration goes first each round, so none always follows the same
        # neighbour's load (and whatever background work that load leaves on the machine).
        turn = configurations[round_ % len(configurations) :] + configurations[: round_ % len(configurations)]
        for configuration in turn:
            async with configuration.connections():
                await configuration.block(block_s, timed=True)
        for configuration in turn:
            async with configuration.connections():
                await configuration.one_at_a_time(ALONE_PER_BLOCK)
    return {configuration.name: configuration.result() for configuration in configurations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run for CI (no timing claims)")
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="seconds of load per configuration, rounded up to whole blocks (2 s; --quick 0.5 s); default 20",
    )
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 20.0)
    if not 0 < seconds < math.inf:  # NaN fails both comparisons
        parser.error("--seconds must be a positive number of seconds")
    block_s = 0.5 if args.quick else 2.0
    big = (100, 1_000, 1_000, 20_000) if args.quick else (1_000, 10_000, 10_000, 1_000_000)
    report: dict[str, Any] = {
        "benchmark": "scale",
        "machine": machine(),
        "quick": args.quick,
        "clients_in_flight": CLIENTS,
        "seconds_per_configuration": rounds(seconds, block_s) * block_s,  # whole blocks, as loaded
        "block_seconds": block_s,
        "big_database": dict(zip(("agents", "active_intents", "active_leases", "events"), big, strict=True)),
        "results": {},
    }
    results = report["results"]
    with contextlib.ExitStack() as stack:
        sqlite = {
            "sqlite-1": stack.enter_context(instances(1, None, None)),
            "sqlite-1-big": stack.enter_context(instances(1, None, lambda d: prefill_sqlite(d, *big))),
        }
        results.update(anyio.run(alternate, sqlite, seconds, block_s))
    with contextlib.ExitStack() as stack:
        postgresql: dict[str, list[str]] = {}
        for count in (1, 3):
            fresh_url = stack.enter_context(postgres_database())
            postgresql[f"postgresql-{count}"] = stack.enter_context(instances(count, fresh_url, None))
            big_url = stack.enter_context(postgres_database())
            prefill_postgres(big_url, *big)
            postgresql[f"postgresql-{count}-big"] = stack.enter_context(instances(count, big_url, None))
        results.update(anyio.run(alternate, postgresql, seconds, block_s))

    def ratio(a: str, b: str, key: str) -> float:
        return float(round(results[a]["announce"][key] / results[b]["announce"][key], 2))

    def ratio_alone(a: str, b: str) -> float:
        return float(round(results[a]["announce_alone"]["p50_ms"] / results[b]["announce_alone"]["p50_ms"], 2))

    compared = ("sqlite-1", "postgresql-1", "postgresql-3")
    report["announce_p50_big_vs_fresh"] = {name: ratio(f"{name}-big", name, "p50_ms") for name in compared}
    report["announce_mean_big_vs_fresh"] = {name: ratio(f"{name}-big", name, "mean_ms") for name in compared}
    report["announce_alone_p50_big_vs_fresh"] = {name: ratio_alone(f"{name}-big", name) for name in compared}
    report["calls_per_s_3_vs_1_postgresql"] = round(
        results["postgresql-3"]["calls_per_s"] / results["postgresql-1"]["calls_per_s"], 2
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
