"""The crash and resource proofs of benchmarks/proof run in quick mode, and their checkers can fail.

Full mode (100 kill -9 rounds, 100 power cuts, full-scale resource bounds, 20 + 10 team-mode rounds)
is run on demand:
`python benchmarks/proof/<name>.py`; the README gives the figures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROOF = Path(__file__).resolve().parent.parent / "benchmarks" / "proof"
sys.path.insert(0, str(PROOF))

from _team import Race, Tail  # noqa: E402
from _workload import Ledger, missing  # noqa: E402

from postgres_helpers import require_postgres  # noqa: E402


def run_proof(name: str, timeout: float = 300) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(PROOF / f"{name}.py"), "--quick"], capture_output=True, text=True, timeout=timeout
    )
    assert result.stdout, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["benchmark"] == name and report["quick"] is True
    report["exit_code"] = result.returncode
    return report


def test_kill_9_under_load_loses_no_acknowledged_write_and_keeps_the_database_intact():
    report = run_proof("kill9")
    assert report["rounds"] == 5 and report["acknowledged_writes"] > 0
    assert report["lost"] == 0, report["lost_examples"]
    assert report["integrity_failures"] == 0, report["integrity_examples"]
    assert report["exit_code"] == 0


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent: this machine's kernel offers no FUSE"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (Debian package fuse3; .ci/run installs it)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy cannot load libfuse: {exc}"
    return None


def test_power_loss_under_load_loses_no_acknowledged_write_while_unsynced_data_is_dropped():
    reason = _fuse_missing()
    if reason:
        if os.environ.get("CI") and os.path.exists("/dev/fuse"):
            pytest.fail(reason)
        pytest.skip(reason)
    report = run_proof("power_loss")
    # The control: the filesystem kept the synced rows and forgot the unsynced ones.
    assert report["control"]["rows_after_cut"] == report["control"]["synced_rows"]
    assert report["rounds"] == 3 and report["acknowledged_writes"] > 0
    assert report["lost"] == 0, report["lost_examples"]
    assert report["integrity_failures"] == 0, report["integrity_examples"]


def test_sse_streams_abandoned_sessions_slow_clients_and_replay_leave_no_memory_or_descriptors_behind():
    report = run_proof("resources")
    phases = {p["phase"]: p for p in report["phases"]}
    assert set(phases) == {"sse_streams", "abandoned_sessions", "slow_clients", "sse_replay"}
    assert report["bounds_settings"], "the server lacks header/body timeouts or the MCP session idle setting"
    for name, p in phases.items():
        assert p["probes_failed"] == 0, f"{name}: a new client was not served during the load"
        assert p["ok"], json.dumps(p)
    assert all(w["closed_by_server"] == w["clients"] for w in phases["slow_clients"]["waves"])
    assert all(w["closed_by_server"] == w["sessions"] for w in phases["abandoned_sessions"]["waves"])
    assert all(w["replayed_each"] >= w["logged_events"] for w in phases["sse_replay"]["waves"])


async def test_the_loss_checker_reports_acknowledged_writes_the_server_does_not_have(huddle_server):
    invented = Ledger(
        agents={"ghost"},
        intents={"I-999": "ghost"},
        locks={("ghost", "src/x.py")},
        messages={"ghost-inbox": {"M-999"}},
        tasks={"ghost-t1": "ghost"},
        context={"ghost": {"C-999"}},
    )
    lost = await missing(huddle_server.url, invented)
    assert sorted(lost) == sorted(
        [
            "agent ghost",
            "intent I-999",
            "lock ghost:src/x.py",
            "message M-999",
            "task ghost-t1",
            "context C-999",
        ]
    )


def test_three_instances_on_one_database_race_queue_tail_publish_once_and_survive_kill_9_of_the_leader():
    require_postgres()
    report = run_proof("cluster_team")
    steady, crashes = report["steady"], report["crashes"]
    assert steady["races"] == {kind: {"rounds": 1, "exactly_one_winner": 1} for kind in ("lock", "task", "thread")}
    assert steady["queued_grants"] == {"rounds": 1, "granted_across_instances": 1}
    assert steady["tails"]["exactly_once_in_order"] == 1 and steady["tails"]["events"] > 0
    assert report["mqtt"]["publications"] > 0 and report["mqtt"]["ok"], report["mqtt"]
    assert crashes["acknowledged_writes"] > 0 and crashes["lost"] == 0, crashes["lost_examples"]
    assert crashes["leader_moved"] == 1 and crashes["leases_swept"] == 1
    assert report["ok"] and report["exit_code"] == 0


def test_the_race_checker_accepts_one_winner_and_refuses_two_a_wrong_name_or_a_disagreeing_read_back():
    def race(winners: list[str], named: set[str], holder: str | None) -> Race:
        return Race("lock", 3, winners=winners, named=named, holder=holder)

    assert race(["a"], {"a"}, "a").ok
    assert not race(["a", "b"], {"a"}, "a").ok
    assert not race([], set(), None).ok
    assert not race(["a"], {"b"}, "a").ok  # a loser was told someone else won
    assert not race(["a"], {"a"}, "b").ok  # the read-back names another holder
    assert not Race("lock", 3, winners=["a"], named={"a"}, holder="a", refused=["HTTP 500"]).ok


def test_the_tail_checker_refuses_a_gap_a_duplicate_a_disorder_and_a_missing_message():
    def message(cursor: int, message_id: str) -> dict[str, object]:
        return {"cursor": cursor, "event": "message.sent", "message_id": message_id}

    def tail(log: list[int], updates: list[int]) -> Tail:
        return Tail(
            start=10,
            end=13,
            acknowledged=["M-11", "M-12", "M-13"],
            log=[message(c, f"M-{c}") for c in log],
            updates=[message(c, f"M-{c}") for c in updates],
        )

    assert tail([11, 12, 13], [11, 12, 13]).ok
    assert not tail([11, 13], [11, 12, 13]).ok  # a gap in the log
    assert not tail([11, 12, 12, 13], [11, 12, 13]).ok  # seen twice
    assert not tail([11, 13, 12], [11, 12, 13]).ok  # out of cursor order
    assert not tail([11, 12, 13], [11, 13]).ok  # get_updates missed an acknowledged message
    assert not tail([11, 12, 13], [12, 11, 13]).ok
