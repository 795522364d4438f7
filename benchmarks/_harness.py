"""Shared benchmark plumbing: start a real Huddle server process, time calls, summarise as JSON.

Benchmarks never assert timings; they print numbers. CI runs them with --quick to prove they work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass
class Server:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def mcp_url(self) -> str:
        return self.url + "/mcp"


@contextlib.contextmanager
def huddle_server(*extra_args: str, prepare: Callable[[Path], None] | None = None) -> Iterator[Server]:
    """`huddle server start --port 0` on a throw-away data dir and repo; stopped on exit.

    `prepare(data_dir)` runs before the server starts (e.g. to pre-fill the database). The repo
    directory is named `repo`, so the project key is `repo`.
    """
    with tempfile.TemporaryDirectory(prefix="huddle-bench-") as tmp:
        data_dir, repo = Path(tmp) / "data", Path(tmp) / "repo"
        repo.mkdir()
        if prepare is not None:
            prepare(data_dir)
        args = [
            sys.executable,
            "-m",
            "huddle.cli.main",
            "server",
            "start",
            "--port",
            "0",
            "--mqtt-port",
            "0",
            "--data-dir",
            str(data_dir),
            "--repo",
            str(repo),
            *extra_args,
        ]
        env = {**os.environ, "HUDDLE_LOG_LEVEL": "WARNING"}
        # A file, not a pipe: nobody reads a pipe during the run, and a server that fills its
        # ~64 KB buffer blocks on its next log line — the benchmark would measure a frozen server.
        log = Path(tmp) / "server-stderr.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        ok = False
        try:
            url = _wait_healthy(process, data_dir / "server.json", log)
            yield Server(url, data_dir, process)
            ok = True
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
            if not ok or process.returncode not in (0, -signal.SIGINT):
                # The temp dir goes with this block: show what the server said while it still exists.
                print(f"huddle server stderr ({log}):\n{_tail(log)}", file=sys.stderr)


def _tail(log: Path, limit: int = 8000) -> str:
    return log.read_bytes()[-limit:].decode(errors="replace") if log.exists() else "(no log)"


def _wait_healthy(process: subprocess.Popen[bytes], runtime: Path, log: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"huddle exited (stderr in {log}): {_tail(log)}")
        if runtime.exists():
            with contextlib.suppress(ValueError, KeyError, httpx.HTTPError):
                url = f"http://127.0.0.1:{json.loads(runtime.read_text())['port']}"
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    return url
        time.sleep(0.05)
    raise SystemExit(f"huddle did not start within 30 s (stderr in {log}): {_tail(log)}")


def summarise(seconds: Sequence[float], wall_s: float | None = None) -> dict[str, Any]:
    """p50/p99/mean in milliseconds, and calls per second over the wall time."""
    ordered = sorted(seconds)
    n = len(ordered)
    out: dict[str, Any] = {
        "calls": n,
        "p50_ms": round(ordered[n // 2] * 1000, 3),
        "p99_ms": round(ordered[min(n - 1, int(n * 0.99))] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }
    total = wall_s if wall_s is not None else sum(ordered)
    out["calls_per_s"] = round(n / total, 1) if total else None
    return out


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform}
