"""Fencing: holders frozen past their lease's TTL then writing with their old token — 0 accepted.

    python benchmarks/proof/fencing.py            # default: 6 clients, 40 s
    python benchmarks/proof/fencing.py --quick    # CI: 3 clients, 10 s
    python benchmarks/proof/fencing.py --full     # 10 clients, 120 s

Clients (one process each, official MCP client) take an exclusive lease on one of two paths with
a 1 s TTL and write through a *fenced storage* with the fencing token they were granted; some
freeze themselves (SIGSTOP) right after a grant, and the driver wakes them (SIGCONT) after 2 s —
past the TTL — so they write with a token whose lease has ended, while others have taken over.

The storage (an HTTP service in this process, the way a database or object store sits outside
the agents) accepts a write only if (1) the token is not below the highest it has seen for the
path (Kleppmann's rule) and (2) Huddle says the token is still current for the path
(`check_lock{path, fencing_token}` → `fencing.current`) and the lease outlives the write: the
write is applied within `valid_for_s` of the moment the storage asked.

The judge is independent of both: from the server's own event log it knows when each token was
granted and released, and with the TTL when it expired; a write accepted when its token's lease
was not live is a stale write accepted. Prints JSON; exits 1 if any was.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import Server, finish_workers, is_stopped, load_history, running, spawn_worker, wait_ready

TTL_S = 1.0
PAUSE_S = 2.0


class FencedStorage:
    """A key-value store that takes writes only from the current lease holder."""

    def __init__(self, huddle_url: str):
        self.huddle = httpx.Client(base_url=huddle_url, timeout=30)
        self.lock = threading.Lock()
        self.highest: dict[str, int] = {}
        self.writes: list[dict[str, Any]] = []

    def write(self, body: dict[str, Any]) -> dict[str, Any]:
        path, token = str(body["path"]), int(body["token"])
        with self.lock:  # one write at a time, as a single-leader store applies them
            asked = time.time()
            verdict = self._ask(path, token)
            record: dict[str, Any] = {**body, "asked_at": asked, "answered_at": time.time()}
            if token < self.highest.get(path, 0):
                record["rejected"] = "token below the highest seen"
            elif verdict is None:
                record["rejected"] = "huddle unreachable"
            elif not verdict["current"] or verdict.get("mode") != "exclusive":
                record["rejected"] = "token not current"
            elif time.time() - asked >= float(verdict["valid_for_s"]):
                record["rejected"] = "lease would end before the write"
            # Kleppmann's rule alone: would this write pass with no question asked to Huddle?
            record["max_token_rule_alone"] = token >= self.highest.get(path, 0)
            if "rejected" not in record:
                self.highest[path] = token
                record["accepted_at"] = time.time()
            self.writes.append(record)
            return {"accepted": "rejected" not in record, "reason": record.get("rejected")}

    def _ask(self, path: str, token: int) -> dict[str, Any] | None:
        try:
            response = self.huddle.post("/api/v1/tools/check_lock", json={"path": path, "fencing_token": token})
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        if not body.get("ok"):
            return None
        fencing: dict[str, Any] = body["result"]["fencing"]
        return fencing


def serve(storage: FencedStorage) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            answer = json.dumps(storage.write(json.loads(self.rfile.read(length)))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    return http


def lease_lives(db: Path) -> dict[int, tuple[str, float, float]]:
    """token → (path, granted at, ended at) from the server's event log (ended: released or TTL)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    lives: dict[int, list[Any]] = {}
    for ts, kind, data in conn.execute(
        "SELECT ts, kind, data FROM events WHERE kind IN ('lock.acquired', 'lock.released', 'lock.renewed')"
        " ORDER BY cursor"
    ):
        event = json.loads(data)
        token = int(event["fencing_token"])
        if kind == "lock.acquired":
            lives[token] = [event["path"], ts, ts + TTL_S]
        elif kind == "lock.renewed":  # the fence clients never renew; kept so the judge stays true
            lives[token][2] = ts + TTL_S
        else:
            lives[token][2] = min(lives[token][2], ts)
    conn.close()
    return {t: (p, g, e) for t, (p, g, e) in lives.items()}


def judge(writes: list[dict[str, Any]], lives: dict[int, tuple[str, float, float]]) -> dict[str, Any]:
    stale_attempts = stale_accepted = fresh_rejected_early = 0
    alone = 0
    for w in writes:
        life = lives.get(int(w["token"]))
        if life is None:
            continue
        path, granted, ended = life
        at = w.get("accepted_at", w["asked_at"])
        live = path == w["path"] and granted <= at < ended
        if not live:
            stale_attempts += 1
            alone += bool(w["max_token_rule_alone"])
            stale_accepted += "accepted_at" in w
        elif w.get("rejected") == "token not current" and w["answered_at"] < ended:
            # Huddle called a lease over although its TTL had not run out even when the answer came
            # back (the server looked somewhere between asked_at and answered_at).
            fresh_rejected_early += 1
    return {
        "stale_attempts": stale_attempts,
        "stale_accepted": stale_accepted,
        "stale_the_max_token_rule_alone_would_accept": alone,
        "leases_reported_over_before_their_ttl": fresh_rejected_early,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 clients, 10 s (CI)")
    parser.add_argument("--full", action="store_true", help="10 clients, 120 s")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    clients, seconds = (3, 10.0) if args.quick else (10, 120.0) if args.full else (6, 40.0)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="huddle-fence-") as tmp:
        root = Path(tmp)
        (root / "repo").mkdir()
        server = Server(root / "data", root / "repo", "--agent-ttl-s", "3600", "--sweep-interval-s", "0.2")
        with running(server):
            storage = FencedStorage(server.url)
            http = serve(storage)
            workers, outputs = [], []
            for n in range(clients):
                out = root / f"fence{n}.jsonl"
                outputs.append(out)
                config = {
                    "mode": "fence",
                    "url": server.url + "/mcp",
                    "storage_url": f"http://127.0.0.1:{http.server_address[1]}",
                    "agents": [f"f{n}"],
                    "lease_paths": ["fenced/a.dat", "fenced/b.dat"],
                    "ttls": [TTL_S],
                    "think_s": 0.2,
                    "op_timeout_s": 10.0,
                    "seconds": seconds,
                    "seed": args.seed * 100 + n,
                    "pauser": n < clients - 1,  # one client never freezes, so fresh writes happen too
                    "pause_probability": 0.4,
                    "writes_per_grant": 2,
                    "out": str(out),
                }
                workers.append(spawn_worker(config, root / f"fence{n}.json"))
            pauses = wake_frozen(workers, wait_ready(outputs, workers))
            errors = finish_workers(workers, timeout=60)
            http.shutdown()
        writes = storage.writes
        verdict = judge(writes, lease_lives(root / "data" / "huddle.db"))
        ops, _ = load_history(outputs)
    accepted = sum(1 for w in writes if "accepted_at" in w)
    reasons: dict[str, int] = {}
    for w in writes:
        if "rejected" in w:
            reasons[w["rejected"]] = reasons.get(w["rejected"], 0) + 1
    report = {
        "benchmark": "proof-fencing",
        "quick": args.quick,
        "full": args.full,
        "summary": f"{verdict['stale_attempts']} stale write attempts, {verdict['stale_accepted']} accepted",
        "clients": clients,
        "pauses_past_ttl": pauses,
        "grants": sum(1 for o in ops if o.f == "acquire" and o.result.get("granted")),
        "writes": len(writes),
        "accepted": accepted,
        "rejected": reasons,
        **verdict,
        "worker_errors": errors,
        "elapsed_s": round(time.time() - started, 1),
    }
    print(json.dumps(report, indent=2))
    failed = verdict["stale_accepted"] or verdict["leases_reported_over_before_their_ttl"] or errors
    if failed or not pauses or not accepted:
        sys.exit(1)


def wake_frozen(workers: list[Any], deadline: float) -> int:
    """Sends SIGCONT to each client that froze itself, once it has been frozen for PAUSE_S."""
    frozen_since: dict[int, float] = {}
    pauses = 0
    while time.time() < deadline + PAUSE_S and any(w.poll() is None for w in workers):
        now = time.time()
        for worker in workers:
            if worker.poll() is None and is_stopped(worker.pid):
                since = frozen_since.setdefault(worker.pid, now)
                if now - since >= PAUSE_S:
                    worker.send_signal(signal.SIGCONT)
                    frozen_since.pop(worker.pid)
                    pauses += 1
        time.sleep(0.02)  # polling /proc: the driver has nothing to wait on for a stopped child
    return pauses


if __name__ == "__main__":
    main()
