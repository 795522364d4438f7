"""The proof drivers in quick mode: real server, real MCP clients in their own processes, faults.

`benchmarks/proof/histories.py --quick` records histories of leases, task claims and thread
claims under client and server pauses past the TTL and a kill -9 with restart, and checks them
for linearizability; `benchmarks/proof/fencing.py --quick` freezes lease holders past their TTL
and has them write through a fenced storage. Full runs (`--full`) are on demand; README has
their figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROOF = Path(__file__).resolve().parents[2] / "benchmarks" / "proof"
# About 40 s and 20 s on an idle two-core machine; a crowded one has needed several times that.
pytestmark = pytest.mark.timeout(300)


def run(script: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(PROOF / script), "--quick"], capture_output=True, text=True, timeout=280
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_histories_under_pauses_and_a_crash_are_linearizable_and_the_planted_bug_is_caught() -> None:
    report = run("histories.py")
    assert report["summary"] == f"{report['histories']} histories, 0 violations"
    assert report["histories"] == 2 and report["violations"] == 0 and report["early_takeovers"] == 0
    faults = [f["fault"] for run in report["runs"] for f in run["faults"]]
    assert faults == ["pause-client", "pause-server", "kill-server"]
    for run_ in report["runs"]:
        kinds = set(run_["by_kind"])
        assert {"lease.acquire", "lease.release", "lease.renew", "task.claim", "task.update", "thread.claim"} <= kinds
        assert run_["worker_errors"] == []
    assert report["planted"]["caught"] == report["planted"]["racy_histories"] == 5
    assert report["planted"]["correct_accepted"] == 5


def test_holders_paused_past_their_ttl_get_no_stale_write_accepted() -> None:
    report = run("fencing.py")
    assert report["pauses_past_ttl"] >= 1 and report["stale_attempts"] >= 1
    assert report["stale_accepted"] == 0
    assert report["leases_reported_over_before_their_ttl"] == 0
    assert report["accepted"] >= 1
