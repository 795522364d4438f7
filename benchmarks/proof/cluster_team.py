"""Team mode proof: three `huddle server start` processes on one PostgreSQL database act as one.

The three run on a scratch database of the machine's PostgreSQL (`HUDDLE_TEST_POSTGRES`, default
postgresql://postgres@127.0.0.1:5432/test; created and dropped here), each with its own data dir
and port, and publish with `--mqtt-url` to a Mosquitto this script starts on a free port.

1. Steady rounds, each: a 50-way lock race, task-claim race and thread-claim race spread over the
   instances (exactly one winner, the losers told who, the read-back from another instance agrees);
   a lock waiter queued on one instance, granted when the holder releases on another (with a higher
   fencing token); a cursor tail — `list_events after=N` on one instance and the recipient's
   `get_updates` on another — while writers on every instance send messages: every event exactly
   once and in cursor order, every acknowledged message seen once. Over all steady rounds a
   subscriber on the broker must receive each publication of each event exactly once.
2. Crash rounds, each: write load from clients on every instance, kill -9 of the leader once writes
   flow; every acknowledged write must be readable on each survivor, a survivor must take the lead
   (`/readyz` checks.sweeper.leader) and run the background sweep (a 1 s intent expires, a 1 s lease
   is freed); then the victim starts again on its data dir, rejoins as a follower and must show
   every acknowledged write too.

    python benchmarks/proof/cluster_team.py             # 20 steady rounds, 10 crash rounds
    python benchmarks/proof/cluster_team.py --quick     # 1 and 1 (CI: tests/test_proof.py)
    python benchmarks/proof/cluster_team.py --rounds 5 --crash-rounds 3 --racers 100

Prints JSON (takeover and sweep times after a kill included); exits 1 when any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _team import (
    Race,
    Tail,
    clients,
    close,
    expected_publications,
    kill_under_load,
    latest_cursor,
    log_between,
    mqtt_tally,
    queued_grant,
    race_lock,
    race_task,
    race_thread,
    register,
    scratch_database,
    tail_while_writing,
    tool,
)
from _workload import missing
from cluster import Broker, Server

INSTANCES = 3


def spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"p50": round(statistics.median(values), 2), "max": round(max(values), 2)}


def start_all(servers: list[Server]) -> None:
    with ThreadPoolExecutor(len(servers)) as pool:
        for started in [pool.submit(s.start) for s in servers]:
            started.result()


def stop_all(servers: list[Server]) -> None:
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(lambda s: s.stop(), servers))


async def steady(urls: list[str], rounds: int, racers: int, writers: int, messages: int) -> dict[str, Any]:
    http = clients(urls)
    try:
        names = [f"racer-{i}" for i in range(racers)]
        await register(http, [*names, "pair-a", "pair-b", "holder", "waiter"])
        races: list[Race] = []
        grants: list[dict[str, Any]] = []
        tails: list[Tail] = []
        for r in range(rounds):
            races.append(await race_lock(http, names, f"src/r{r}/contended.py"))
            races.append(await race_task(http, names, f"r{r}-task"))
            races.append(await race_thread(http, names, ("pair-a", "pair-b"), f"src/r{r}/thread.py"))
            # The holder's instance and the waiter's move round by round.
            holder_at, waiter_at = http[(r + 2) % len(http)], http[(r + 1) % len(http)]
            grants.append(await queued_grant(holder_at, waiter_at, "holder", "waiter", f"src/r{r}/queue.py"))
            tails.append(await tail_while_writing(http, f"tail{r}", writers, messages))
    finally:
        await close(http)
    granted = [
        g
        for g in grants
        if g["waiter"].get("granted") and g["waiter"].get("queued") and g["waiter"]["fencing_token"] > g["holder_token"]
    ]
    return {
        "rounds": rounds,
        "racers": racers,
        "races": {
            kind: {
                "rounds": sum(1 for r in races if r.kind == kind),
                "exactly_one_winner": sum(1 for r in races if r.kind == kind and r.ok),
            }
            for kind in ("lock", "task", "thread")
        },
        "race_failures": [r.report() for r in races if not r.ok][:5],
        "queued_grants": {"rounds": len(grants), "granted_across_instances": len(granted)},
        "tails": {
            "rounds": len(tails),
            "events": sum(t.report()["events"] for t in tails),
            "acknowledged_messages": sum(t.report()["acknowledged_messages"] for t in tails),
            "exactly_once_in_order": sum(1 for t in tails if t.ok),
            "failures": [t.report() for t in tails if not t.ok][:3],
        },
        "ok": all(r.ok for r in races) and len(granted) == len(grants) and all(t.ok for t in tails),
    }


async def crashes(servers: list[Server], rounds: int, clients_per_instance: int, seed: int) -> dict[str, Any]:
    reports: list[dict[str, Any]] = []
    for r in range(rounds):
        crash = await kill_under_load(
            [s.url for s in servers], lambda i: servers[i].kill(), f"k{r}", clients_per_instance, seed + r
        )
        await asyncio.to_thread(servers[crash.victim].start)  # rejoins as a follower
        rejoined = await missing(servers[crash.victim].url, crash.ledger)
        crash.lost += [f"instance {crash.victim + 1} after its restart: {what}" for what in rejoined]
        reports.append(crash.report())
    lost = [example for rep in reports for example in rep["lost_examples"]]
    takeovers = [rep["takeover_s"] for rep in reports if rep["takeover_s"] is not None]
    sweeps = [rep["swept_s"] for rep in reports if rep["swept_s"] is not None]
    return {
        "rounds": rounds,
        "clients": clients_per_instance * len(servers),
        "acknowledged_writes": sum(rep["acknowledged_writes"] for rep in reports),
        "lost": sum(rep["lost"] for rep in reports),
        "lost_examples": lost[:10],
        "leader_moved": sum(1 for rep in reports if rep["new_leader"] not in (None, rep["victim"])),
        "leases_swept": sum(1 for rep in reports if rep["lease_swept"]),
        "takeover_s": spread(takeovers),
        "swept_s": spread(sweeps),
        "ok": all(
            rep["lost"] == 0 and rep["new_leader"] not in (None, rep["victim"]) and rep["lease_swept"]
            for rep in reports
        ),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="huddle-team-") as tmp, scratch_database("huddle_team_proof") as db_url:
        base = Path(tmp)
        repo = base / "repo"
        repo.mkdir()
        broker = Broker(base)
        if broker.binary is None:
            raise SystemExit("the mosquitto binary is not installed (Debian package mosquitto)")
        broker.start()
        root = f"huddle-proof/{uuid.uuid4().hex[:10]}"
        extra = ("--db-url", db_url, "--mqtt-url", broker.url, "--topic-root", root)
        servers = [Server(base / f"instance{i + 1}" / "data", repo, *extra) for i in range(INSTANCES)]
        try:
            start_all(servers)
            urls = [s.url for s in servers]
            async with mqtt_tally(broker.port, root) as mqtt:
                http = clients(urls)
                try:
                    first = await latest_cursor(http[0])
                    report = {"steady": await steady(urls, args.rounds, args.racers, args.writers, args.messages)}
                    last = await latest_cursor(http[0])
                    expected = expected_publications(await log_between(http[0], first, last), root)
                    deadline = time.monotonic() + 60
                    while not mqtt.after(first, last) >= expected and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)  # the last publications are on their way
                    publishers = [(await tool(c, "coordinator_status"))["mqtt"]["published"] for c in http]
                finally:
                    await close(http)
            received = mqtt.after(first, last)
            report["mqtt"] = {
                "publications": sum(expected.values()),
                "received": sum(received.values()),
                "duplicates": sum((received - expected).values()),
                "missing": sum((expected - received).values()),
                "publishing_instances": sum(1 for p in publishers if p.get("publishing")),
            }
            report["mqtt"]["ok"] = (
                report["mqtt"]["duplicates"] == 0
                and report["mqtt"]["missing"] == 0
                and report["mqtt"]["publishing_instances"] == 1
            )
            report["crashes"] = await crashes(servers, args.crash_rounds, args.clients, args.seed)
        finally:
            stop_all(servers)
            broker.kill()
    report["wall_s"] = round(time.monotonic() - started, 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 steady round and 1 crash round, for CI")
    parser.add_argument("--rounds", type=int, default=None, help="steady rounds (default 20)")
    parser.add_argument("--crash-rounds", type=int, default=None, help="kill -9 rounds (default 10)")
    parser.add_argument("--racers", type=int, default=50, help="agents in each race")
    parser.add_argument("--writers", type=int, default=3, help="message writers per instance in each tail")
    parser.add_argument("--messages", type=int, default=20, help="messages per writer in each tail")
    parser.add_argument("--clients", type=int, default=3, help="load clients per instance in each crash round")
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 20)
    args.crash_rounds = args.crash_rounds or (1 if args.quick else 10)
    report = asyncio.run(run(args))
    ok = report["steady"]["ok"] and report["mqtt"]["ok"] and report["crashes"]["ok"]
    print(json.dumps({"benchmark": "cluster_team", "quick": args.quick, "instances": INSTANCES, "ok": ok, **report}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
