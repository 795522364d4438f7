"""Shared plumbing of the crash proofs: a restartable server process and a ledger of acknowledged writes.

A write counts as acknowledged only when the server answered `{"ok": true}` for it; an in-flight
request cut by the crash may or may not have landed, and is never counted. After a restart every
acknowledged write must be readable through the REST surface, and `PRAGMA integrity_check` on the
database file (taken while no server runs) must answer `ok`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from huddle.testing import server_command, start_server, stop_server

logging.getLogger("httpx").setLevel(logging.WARNING)

# The crash proofs test durability, not liveness: a full run outlasts the 300 s after which a silent
# agent goes offline and its claimed tasks go back on the board (by design), which would read as a
# lost claim. Agents and intents therefore live for a day here.
DURABILITY_ONLY = ("--agent-ttl-s", "86400", "--intent-ttl-s", "86400")


class ServerProcess:
    """`huddle server start` on a fixed data dir, on a free port, that can be killed and started again."""

    def __init__(self, data_dir: Path, repo: Path, *extra: str):
        self.data_dir, self.repo, self.extra = data_dir, repo, extra
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    def start(self, timeout_s: float = 60) -> str:
        command = server_command(self.data_dir, self.repo, *self.extra)
        self.process, self.url = start_server(command, self.data_dir, self.log_path, timeout_s=timeout_s)
        return self.url

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        stop_server(self.process)


def integrity(db: Path) -> str:
    """`PRAGMA integrity_check` on the database file while no server has it open (runs WAL recovery)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(r[0]) for r in rows)


@dataclass
class Ledger:
    """Every acknowledged write, by kind, with what must be readable afterwards."""

    agents: set[str] = field(default_factory=set)
    intents: dict[str, str] = field(default_factory=dict)  # intent_id -> agent_id
    locks: set[tuple[str, str]] = field(default_factory=set)  # (agent_id, path)
    messages: dict[str, set[str]] = field(default_factory=dict)  # recipient -> message ids
    tasks: dict[str, str | None] = field(default_factory=dict)  # task_id -> claimed_by (None: unclaimed)
    context: dict[str, set[str]] = field(default_factory=dict)  # agent_id -> context ids

    def count(self) -> int:
        return (
            len(self.agents)
            + len(self.intents)
            + len(self.locks)
            + sum(len(v) for v in self.messages.values())
            + len(self.tasks)
            + sum(1 for v in self.tasks.values() if v)
            + sum(len(v) for v in self.context.values())
        )

    def merge(self, other: Ledger) -> None:
        self.agents |= other.agents
        self.intents |= other.intents
        self.locks |= other.locks
        self.tasks |= other.tasks
        for k, v in other.messages.items():
            self.messages.setdefault(k, set()).update(v)
        for k, v in other.context.items():
            self.context.setdefault(k, set()).update(v)


async def call(client: httpx.AsyncClient, tool: str, **args: Any) -> dict[str, Any] | None:
    """One REST tool call; the result when acknowledged, None when refused or cut off."""
    try:
        response = await client.post(f"/api/v1/tools/{tool}", json=args)
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    if response.status_code == 200 and body.get("ok"):
        result: dict[str, Any] = body["result"]
        return result
    return None


async def agent_load(url: str, tag: str, ledger: Ledger, stop: asyncio.Event, rng: random.Random) -> None:
    """One client: register, announce, then lease, message, add+claim tasks, share context until stopped."""
    me, inbox = f"{tag}-agent", f"{tag}-inbox"
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for agent in (me, inbox):
            if await call(client, "register_agent", name=agent, agent_id=agent) is None:
                return
            ledger.agents.add(agent)
        n = 0
        while not stop.is_set():
            n += 1
            op = rng.choice(("announce", "lock", "message", "task", "context"))
            if op == "announce":
                r = await call(client, "announce_work", agent_id=me, subject=f"s{n}", target_files=[f"{tag}/i{n}.py"])
                if r:
                    ledger.intents[r["intent_id"]] = me
            elif op == "lock":
                r = await call(client, "acquire_lock", agent_id=me, path=f"{tag}/l{n}.py", ttl_s=86400)
                if r and r.get("granted"):
                    ledger.locks.add((me, f"{tag}/l{n}.py"))
            elif op == "message":
                r = await call(client, "send_message", from_agent=me, to_agent=inbox, content=f"m{n}")
                if r:
                    ledger.messages.setdefault(inbox, set()).add(r["message_id"])
            elif op == "task":
                task_id = f"{tag}-t{n}"
                if await call(client, "add_task", task_id=task_id, description=f"d{n}") is None:
                    continue
                ledger.tasks[task_id] = None
                r = await call(client, "claim_task", agent_id=me, task_id=task_id)
                if r and r.get("claimed"):
                    ledger.tasks[task_id] = me
            else:
                r = await call(client, "share_context", agent_id=me, type="note", content=f"c{n}")
                if r:
                    ledger.context.setdefault(me, set()).add(r["id"])


async def start_load(url: str, prefix: str, clients: int, seed: float) -> tuple[Ledger, Callable[[], Awaitable[None]]]:
    """`clients` concurrent agents start writing; once all are registered, returns the live ledger and `finish`.

    The caller crashes the server while requests are in flight, then awaits `finish()`: it stops
    the clients and waits until each has seen its request fail. Only answers that arrived count.
    """
    ledger, stop = Ledger(), asyncio.Event()
    rng = random.Random(seed)
    tasks = [
        asyncio.create_task(agent_load(url, f"{prefix}c{i}", ledger, stop, random.Random(rng.random())))
        for i in range(clients)
    ]

    async def finish() -> None:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    # The crash moment is drawn from when every client is writing, not from connection setup.
    deadline = time.monotonic() + 30
    while len(ledger.agents) < 2 * clients and time.monotonic() < deadline and not all(t.done() for t in tasks):
        await asyncio.sleep(0.01)
    return ledger, finish


async def missing(url: str, ledger: Ledger) -> list[str]:
    """Every acknowledged write of `ledger` that the server at `url` does not show, described."""
    lost: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        # A read the server refuses (e.g. an unknown agent) shows nothing: its writes count as lost.
        agents = await call(client, "list_agents") or {"agents": []}
        seen_agents = {a["agent_id"] for a in agents["agents"]}
        lost += [f"agent {a}" for a in ledger.agents - seen_agents]
        # Per agent: coordinator_status lists only the newest 200 active intents of the whole board,
        # and list_intents the newest 500 of one agent (far more than one agent makes in a round).
        for agent in set(ledger.intents.values()):
            listed = await call(client, "list_intents", agent_id=agent) or {"intents": []}
            seen_intents = {i["intent_id"] for i in listed["intents"]}
            lost += [f"intent {i}" for i, a in ledger.intents.items() if a == agent and i not in seen_intents]
        for agent in {a for a, _ in ledger.locks}:
            held = await call(client, "list_locks", agent_id=agent) or {"locks": []}
            paths = {lock["path"] for lock in held["locks"]}
            lost += [f"lock {a}:{p}" for a, p in ledger.locks if a == agent and p not in paths]
        for inbox, ids in ledger.messages.items():
            box = await call(client, "list_messages", agent_id=inbox, limit=1000) or {"messages": []}
            lost += [f"message {m}" for m in ids - {m["message_id"] for m in box["messages"]}]
        for agent, ids in ledger.context.items():
            found = await call(client, "query_context", agent_id=agent, limit=500) or {"entries": []}
            lost += [f"context {c}" for c in ids - {e["id"] for e in found["entries"]}]
        for task_id, claimer in ledger.tasks.items():
            # Re-adding an identical task is a no-op that returns the stored task: created must be false.
            again = await call(client, "add_task", task_id=task_id, description=f"d{task_id.rsplit('-t', 1)[1]}")
            if again is None or again["created"]:
                lost.append(f"task {task_id}")
            elif claimer and again["task"].get("claimed_by") != claimer:
                lost.append(f"claim of {task_id} by {claimer}")
    return lost


def union(*ledgers: Ledger) -> Ledger:
    out = Ledger()
    for ledger in ledgers:
        out.merge(ledger)
    return out


async def crash_rounds(
    server: ServerProcess, rounds: int, clients: int, seed: int, crash: Callable[[], None]
) -> dict[str, Any]:
    """Rounds of load, `crash()` at a random moment, integrity check, restart, read-back; the report.

    `crash()` must leave the server dead and its data dir readable again (remounted, for a power cut).
    """
    rng = random.Random(seed)
    total, previous = Ledger(), Ledger()
    lost: list[str] = []
    bad_integrity: list[str] = []
    crash_after: list[float] = []
    started = time.monotonic()
    url = server.start()
    for r in range(rounds):
        delay = rng.uniform(0.1, 1.5)
        ledger, finish = await start_load(url, f"r{r}", clients, rng.random())
        await asyncio.sleep(delay)  # the random moment of the crash, with requests in flight
        crash()
        await finish()
        crash_after.append(delay)
        check = integrity(server.data_dir / "huddle.db")
        if check != "ok":
            bad_integrity.append(f"round {r}: {check}")
        url = server.start()
        lost += [f"round {r}: {what}" for what in await missing(url, union(previous, ledger))]
        total.merge(ledger)
        previous = ledger
    everything = union(total)
    everything.intents = {}  # list_intents shows an agent's newest 500: intents are checked per round
    lost += [f"final: {what}" for what in await missing(url, everything)]
    return {
        "rounds": rounds,
        "clients": clients,
        "acknowledged_writes": total.count(),
        "lost": len(lost),
        "lost_examples": lost[:10],
        "integrity_failures": len(bad_integrity),
        "integrity_examples": bad_integrity[:5],
        "crash_after_s": {"min": round(min(crash_after), 3), "max": round(max(crash_after), 3)},
        "wall_s": round(time.monotonic() - started, 1),
    }


def crash_main(
    name: str,
    doc: str | None,
    quick_rounds: int,
    seed: int,
    run: Callable[[int, int, int], Coroutine[Any, Any, dict[str, Any]]],
) -> None:
    """The command line of a crash proof: --quick/--rounds/--clients/--seed, JSON out, exit 1 on a loss."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{quick_rounds} rounds, for CI")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=seed)
    args = parser.parse_args()
    rounds = args.rounds or (quick_rounds if args.quick else 100)
    report = asyncio.run(run(rounds, args.clients, args.seed))
    print(json.dumps({"benchmark": name, "quick": args.quick, **report}, indent=2))
    failed = report["lost"] or report["integrity_failures"] or not report.get("control_ok", True)
    sys.exit(1 if failed else 0)
