"""Shared benchmark plumbing: start a real Huddle server process, time calls, summarise as JSON.

Benchmarks never assert timings; they print numbers. CI runs them with --quick to prove they work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huddle.testing import log_tail, server_command, start_server, stop_server

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
        # The server's output goes to a file in the run's temp dir, not a pipe nobody reads.
        log = Path(tmp) / "server.log"
        ok = False
        try:
            process, url = start_server(server_command(data_dir, repo, *extra_args), data_dir, log, timeout_s=30)
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None
        try:
            yield Server(url, data_dir, process)
            ok = True
        finally:
            stop_server(process, timeout_s=10)
            if not ok or process.returncode not in (0, -signal.SIGINT):
                # The temp dir goes with this block: show what the server said while it still exists.
                print(f"huddle server log ({log}):\n{log_tail(log)}", file=sys.stderr)


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
