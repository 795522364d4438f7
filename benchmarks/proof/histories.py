"""Linearizability of leases, task claims and thread claims under faults, against a real server.

    python benchmarks/proof/histories.py            # default: 4 histories, 20 clients
    python benchmarks/proof/histories.py --quick    # CI: 2 short histories, 10 clients
    python benchmarks/proof/histories.py --full     # 10 histories, 50 clients, every fault kind
    python benchmarks/proof/histories.py --recheck DIR --max-explored 50000000   # a kept history, longer
    python benchmarks/proof/histories.py --planted  # the checker against a planted double grant

Each history: a fresh `huddle server start` on a free port; worker processes of official MCP
clients acquire/renew/release leases on a few paths (all three modes, TTLs of 1-3 s), claim and
update tasks, and claim threads, recording every call; meanwhile the driver injects faults:
`pause-client` (SIGSTOP a worker process past the longest TTL, then SIGCONT), `pause-server`
(the same to the server), `kill-server` (kill -9, restart on the same data dir and port) and
`restart-server` (a clean stop and start — which restarts the embedded MQTT broker too) and
`restart-broker` (kill -9 and restart of an external Mosquitto the server publishes to through
`--mqtt-url`; left out when mosquitto is not installed). Then
every key's history is checked against its sequential model (models.py) with the Wing–Gong–Lowe
checker (linearizability.py), and every lease takeover is checked against the TTL of the lease it
replaced. Prints JSON; exits 1 on a violation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import Broker, Server, finish_workers, load_history, running, spawn_worker, wait_ready
from linearizability import INF, Op, SearchBudgetExceeded, Verdict, check_key, partition, witness
from models import ClaimModel, LeaseModel, early_takeovers
from planted import record_history

FAULTS = ("pause-client", "pause-server", "kill-server", "restart-server", "restart-broker")
TTLS = [1.0, 2.0, 3.0]
MAX_EXPLORED = 5_000_000  # search steps per key before it is reported undecided


def model_for(key: str) -> LeaseModel | ClaimModel:
    return LeaseModel() if key.startswith("lease:") else ClaimModel()


# Faults after which the server process that took a request no longer exists.
ENDS_THE_SERVER = ("kill-server", "restart-server")


def bound_by_faults(ops: list[Op], faults: list[dict[str, Any]]) -> list[Op]:
    """Indeterminate calls bounded by the end of the server process they reached.

    A call with no answer may still take effect later — but not after the process that received it
    is gone. A call invoked before a kill -9 or a restart took effect before that process ended, or
    never: its completion is at most the moment the fault was over (the old process surely dead, the
    new one up). Without the bound each such call could be placed anywhere in the rest of the
    history, and a key with a few of them among 1,800 calls ran past the search budget.

    Sound because the MCP sessions are stateful (run_history starts the server with
    `--mcp-stateless off`): a request a client sends late, with the old process's session id, is
    answered 404 by the new server and runs nothing; and the MCP client never re-sends a POST.
    With stateless MCP a late request could run on the new server, and this bound would not hold.
    """
    ends = sorted(f["at"] + f["lasted_s"] for f in faults if f["fault"] in ENDS_THE_SERVER)
    starts = sorted(f["at"] for f in faults if f["fault"] in ENDS_THE_SERVER)
    out = []
    for op in ops:
        if op.type == "info" and op.complete == INF:
            later = [end for start, end in zip(starts, ends, strict=True) if op.invoke < start]
            if later:
                op = dataclasses.replace(op, complete=min(later))
        out.append(op)
    return out


def check_history(
    ops: list[Op], *, only: str | None = None, max_explored: int = MAX_EXPLORED
) -> tuple[list[Verdict], list[dict[str, Any]], list[dict[str, Any]]]:
    """(verdicts, violations with their minimal offending ops, keys the search could not decide);
    `only` checks one key."""
    verdicts: list[Verdict] = []
    violations: list[dict[str, Any]] = []
    undecided: list[dict[str, Any]] = []
    for key, part in sorted(partition(ops).items()):
        if only is not None and key != only:
            continue
        model = model_for(key)
        try:
            verdict = check_key(model, key, part, max_explored=max_explored)
        except SearchBudgetExceeded as exc:  # undecided is reported as such, never as a pass
            undecided.append({"key": key, "ops": len(part), "reason": str(exc)})
            continue
        verdicts.append(verdict)
        if not verdict.ok:
            violations.append(
                {
                    "key": key,
                    "state": repr(verdict.state),
                    "minimal_ops": [o.describe() for o in witness(model, key, part, verdict)],
                }
            )
    return verdicts, violations, undecided


def inject(
    server: Server, broker: Broker | None, workers: list[Any], kind: str, rng: random.Random, log: list[dict[str, Any]]
) -> None:
    pause = max(TTLS) + 1.0
    started = time.time()
    if kind == "pause-client":
        victim = rng.choice(workers)
        victim.send_signal(signal.SIGSTOP)
        time.sleep(pause)  # the fault itself: a frozen client while real time runs on
        victim.send_signal(signal.SIGCONT)
    elif kind == "pause-server":
        server.signal(signal.SIGSTOP)
        time.sleep(pause)
        server.signal(signal.SIGCONT)
    elif kind == "kill-server":
        server.kill()
        server.start()
    elif kind == "restart-server":
        server.stop()
        server.start()
    elif kind == "restart-broker":
        assert broker is not None
        broker.kill()  # kill -9 of the external broker while the server publishes to it
        time.sleep(1.0)  # down for a moment: publishes in that second go nowhere
        broker.start()
    log.append({"fault": kind, "at": round(started, 3), "lasted_s": round(time.time() - started, 2)})


def run_history(number: int, args: argparse.Namespace, faults: list[str], root: Path) -> dict[str, Any]:
    rng = random.Random(args.seed * 7919 + number)
    base = root / f"h{number}"
    (base / "repo").mkdir(parents=True)
    broker = Broker(base) if "restart-broker" in faults else None
    extra = ["--mqtt-url", broker.url] if broker is not None else []
    # Stateful MCP sessions whatever the environment says: bound_by_faults relies on them.
    server = Server(
        base / "data",
        base / "repo",
        "--agent-ttl-s",
        "3600",
        "--sweep-interval-s",
        "0.2",
        "--mcp-stateless",
        "off",
        *extra,
    )
    fault_log: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if broker is not None:
            stack.callback(broker.kill)
            broker.start()
        stack.enter_context(running(server))
        tasks = [f"t{i}" for i in range(args.tasks)]
        server.tool("add_tasks", tasks=[{"task_id": t, "description": f"task {t}"} for t in tasks])
        threads = []
        for who in ("setup-a", "setup-b"):
            server.tool("register_agent", agent_id=who, name=who)
        for i in range(args.threads):
            files = [f"threads/f{i}.py"]
            server.tool("announce_work", agent_id="setup-a", subject=f"work {i}", target_files=files)
            opened = server.tool("announce_work", agent_id="setup-b", subject=f"work {i}", target_files=files)
            threads.append(opened["thread_id"])
        clients = args.processes * args.clients_per_process
        agents = [f"c{i}" for i in range(clients)]
        workers, outputs = [], []
        for p in range(args.processes):
            out = base / f"worker{p}.jsonl"
            outputs.append(out)
            config = {
                "mode": "lin",
                "url": server.url + "/mcp",
                "agents": agents[p * args.clients_per_process : (p + 1) * args.clients_per_process],
                "lease_paths": [f"leases/k{i}.py" for i in range(args.keys)],
                "tasks": tasks,
                "threads": threads,
                "ttls": TTLS,
                "think_s": 0.05,
                "op_timeout_s": max(TTLS) + 5,
                "seconds": args.seconds,
                "seed": args.seed * 100 + number * 10 + p,
                "out": str(out),
            }
            workers.append(spawn_worker(config, base / f"worker{p}.json"))
        deadline = wait_ready(outputs, workers)
        gap = args.seconds / (len(faults) + 1)
        for i, kind in enumerate(faults):
            time.sleep(max(0.0, deadline - args.seconds + gap * (i + 1) - time.time()))  # the fault schedule
            inject(server, broker, workers, kind, rng, fault_log)
        errors = finish_workers(workers, timeout=max(0.0, deadline - time.time()) + 60)
    ops, _ = load_history(outputs)
    ops = bound_by_faults(ops, fault_log)
    verdicts, violations, undecided = check_history(ops)
    checked, early = early_takeovers(ops)
    kept = None
    if violations or early or errors or undecided:  # keep the recorded calls for whoever investigates
        kept = str(Path(tempfile.gettempdir()) / f"huddle-proof-kept-{int(time.time())}-h{number}")
        shutil.copytree(base, kept, ignore=shutil.ignore_patterns("*.db*"))
        (Path(kept) / "faults.json").write_text(json.dumps(fault_log))
    return {
        "kept": kept,
        "history": number,
        "faults": fault_log,
        "clients": clients,
        "ops": len(ops),
        "indeterminate": sum(1 for o in ops if o.type == "info"),
        "by_kind": _by_kind(ops),
        "keys": len(verdicts),
        "search_steps": sum(v.explored for v in verdicts),
        "violations": violations,
        "undecided": undecided,
        "takeovers_checked": checked,
        "early_takeovers": [[a.describe(), b.describe()] for a, b in early],
        "worker_errors": errors,
    }


def _by_kind(ops: list[Op]) -> dict[str, int]:
    out: dict[str, int] = {}
    for op in ops:
        name = f"{op.key.split(':', 1)[0]}.{op.f}"
        out[name] = out.get(name, 0) + 1
    return out


def planted(seeds: int) -> dict[str, Any]:
    """The checker must reject every racy history that double-grants and accept the correct ones."""
    caught, correct_accepted, examples = 0, 0, []
    for seed in range(seeds):
        bad = asyncio.run(record_history(racy=True, seed=seed))
        _, violations, _ = check_history(bad)
        caught += bool(violations)
        if violations and not examples:
            examples = violations[:1]
        good = asyncio.run(record_history(racy=False, seed=seed))
        correct_accepted += not check_history(good)[1]
    return {"racy_histories": seeds, "caught": caught, "correct_accepted": correct_accepted, "example": examples}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of steps, got {text}")
    return value


def recheck(parser: argparse.ArgumentParser, kept: Path, key: str | None, max_explored: int) -> int:
    """Checks a kept history again (all keys, or `key`); prints the report, returns the exit code."""
    workers = sorted(kept.glob("worker*.jsonl")) if kept.is_dir() else []
    if not workers:
        parser.error(f"{kept} holds no worker*.jsonl: name the directory a run printed as `kept`")
    started = time.time()
    ops, _ = load_history(workers)
    keys = sorted(partition(ops))
    if key is not None and key not in keys:
        parser.error(f"no key {key!r} in {kept}; its keys: {', '.join(keys)}")
    faults_file = kept / "faults.json"
    faults_applied = faults_file.exists()
    if faults_applied:
        try:
            faults = json.loads(faults_file.read_text())
            ops = bound_by_faults(ops, faults)
        except (ValueError, TypeError, KeyError) as exc:
            parser.error(f"{faults_file} is not a run's fault log (a list of {{fault, at, lasted_s}}): {exc}")
    else:
        print(f"{faults_file} is missing: unanswered calls are checked without the fault bound", file=sys.stderr)
    verdicts, violations, undecided = check_history(ops, only=key, max_explored=max_explored)
    checked, early = early_takeovers([op for op in ops if key is None or op.key == key])
    report = {
        "benchmark": "proof-histories-recheck",
        "history": str(kept),
        "faults_applied": faults_applied,
        "keys_checked": len(verdicts),
        "search_steps": sum(v.explored for v in verdicts),
        "violations": violations,
        "undecided": undecided,
        "takeovers_checked": checked,
        "early_takeovers": [[a.describe(), b.describe()] for a, b in early],
        "elapsed_s": round(time.time() - started, 1),
    }
    print(json.dumps(report, indent=2))
    return 1 if violations or undecided or early else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 short histories, 10 clients (CI)")
    parser.add_argument("--full", action="store_true", help="10 histories, 50 clients, every fault kind")
    parser.add_argument("--planted", action="store_true", help="only run the planted-bug check")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--histories", type=int, help="run only the first N histories of the chosen mode")
    parser.add_argument("--recheck", type=Path, help="check a kept history again (the directory a run names)")
    parser.add_argument("--key", help="with --recheck: only this key (e.g. lease:leases/k2.py)")
    parser.add_argument("--max-explored", type=positive_int, default=MAX_EXPLORED, help="search steps per key")
    args = parser.parse_args()
    started = time.time()
    if args.recheck is not None:
        sys.exit(recheck(parser, args.recheck, args.key, args.max_explored))
    count = args.histories
    if args.planted:
        print(json.dumps({"benchmark": "proof-planted", **planted(20)}, indent=2))
        return
    if args.quick:
        args.histories, args.processes, args.clients_per_process, args.seconds = 2, 2, 5, 8.0
        plan = [["pause-client", "pause-server"], ["kill-server"]]
    elif args.full:
        args.histories, args.processes, args.clients_per_process, args.seconds = 10, 5, 10, 30.0
        plan = [[FAULTS[i % 5], FAULTS[(i + 1) % 5], FAULTS[(i + 2) % 5]] for i in range(args.histories)]
    else:
        args.histories, args.processes, args.clients_per_process, args.seconds = 5, 4, 5, 20.0
        plan = [[FAULTS[i % 5], FAULTS[(i + 2) % 5]] for i in range(args.histories)]
    if Broker(Path(tempfile.gettempdir())).binary is None:  # no mosquitto here: that fault is left out
        plan = [[f for f in faults if f != "restart-broker"] for faults in plan]
    args.keys, args.tasks, args.threads = 4, 12, 4
    if count is not None:
        args.histories = min(count, len(plan))
    with tempfile.TemporaryDirectory(prefix="huddle-proof-") as tmp:
        histories = [run_history(n, args, plan[n], Path(tmp)) for n in range(args.histories)]
    violations = sum(len(h["violations"]) for h in histories)
    early = sum(len(h["early_takeovers"]) for h in histories)
    report = {
        "benchmark": "proof-histories",
        "quick": args.quick,
        "full": args.full,
        "summary": f"{len(histories)} histories, {violations} violations",
        "histories": len(histories),
        "violations": violations,
        "undecided_keys": sum(len(h["undecided"]) for h in histories),
        "ops": sum(h["ops"] for h in histories),
        "indeterminate": sum(h["indeterminate"] for h in histories),
        "keys_checked": sum(h["keys"] for h in histories),
        "takeovers_checked": sum(h["takeovers_checked"] for h in histories),
        "early_takeovers": early,
        "planted": planted(5),
        "elapsed_s": round(time.time() - started, 1),
        "runs": histories,
    }
    print(json.dumps(report, indent=2))
    broken = [e for h in histories for e in h["worker_errors"]] or [h["history"] for h in histories if not h["ops"]]
    broken += [u for h in histories for u in h["undecided"]]
    if violations or early or broken or report["planted"]["caught"] < 5:
        sys.exit(1)


if __name__ == "__main__":
    main()
