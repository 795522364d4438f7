"""kill -9 at a random moment under load, restart, and check that no acknowledged write was lost.

Each round: a real `huddle server start` process on the same data dir and a free port; eight
concurrent REST clients register, announce, lease, message, add and claim tasks and share context;
at a random moment (0.1–1.5 s after every client is writing) the server gets SIGKILL with requests
in flight. Then, with no server running, `PRAGMA integrity_check` must answer `ok`; the server is
started again and every write acknowledged in this round and the previous one must be readable
through the REST surface. At the end, every acknowledged lease, message, task, claim, context
entry and agent of all rounds is checked once more (intents only per round: `coordinator_status`
shows the newest 500).

    python benchmarks/proof/kill9.py              # 100 rounds
    python benchmarks/proof/kill9.py --quick      # 5 rounds (CI)
    python benchmarks/proof/kill9.py --rounds 20

Prints JSON: rounds, acknowledged writes, lost (must be 0), integrity failures (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _workload import Ledger, ServerProcess, integrity, missing, start_load


async def crash_rounds(rounds: int, clients: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="huddle-kill9-") as tmp:
        data_dir, repo = Path(tmp) / "data", Path(tmp) / "repo"
        repo.mkdir()
        server = ServerProcess(data_dir, repo)
        total, previous = Ledger(), Ledger()
        lost: list[str] = []
        bad_integrity: list[str] = []
        kill_after: list[float] = []
        started = time.monotonic()
        try:
            url = server.start()
            for r in range(rounds):
                delay = rng.uniform(0.1, 1.5)
                ledger, finish = await start_load(url, f"r{r}", clients, rng.random())
                await asyncio.sleep(delay)  # the random moment of the crash, with requests in flight
                server.kill9()
                await finish()
                kill_after.append(delay)
                check = integrity(data_dir / "huddle.db")
                if check != "ok":
                    bad_integrity.append(f"round {r}: {check}")
                url = server.start()
                round_lost = await missing(url, _union(previous, ledger))
                lost += [f"round {r}: {what}" for what in round_lost]
                total.merge(ledger)
                previous = ledger
            everything = _union(total)
            everything.intents = {}
            lost += [f"final: {what}" for what in await missing(url, everything)]
        finally:
            server.stop()
    return {
        "rounds": rounds,
        "clients": clients,
        "acknowledged_writes": total.count(),
        "lost": len(lost),
        "lost_examples": lost[:10],
        "integrity_failures": len(bad_integrity),
        "integrity_examples": bad_integrity[:5],
        "kill_after_s": {"min": round(min(kill_after), 3), "max": round(max(kill_after), 3)},
        "wall_s": round(time.monotonic() - started, 1),
    }


def _union(*ledgers: Ledger) -> Ledger:
    out = Ledger()
    for ledger in ledgers:
        out.merge(ledger)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 rounds, for CI")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rounds = args.rounds or (5 if args.quick else 100)
    report = asyncio.run(crash_rounds(rounds, args.clients, args.seed))
    print(json.dumps({"benchmark": "kill9", "quick": args.quick, **report}, indent=2))
    sys.exit(1 if report["lost"] or report["integrity_failures"] else 0)


if __name__ == "__main__":
    main()
