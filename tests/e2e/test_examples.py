"""The examples in examples/ run as the README says, against a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_two_agents_example_reaches_a_resolved_consultation(huddle_server) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "two_agents.py"), huddle_server.mcp_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "→ consult, score 100 (layer 0a)" in result.stdout
    assert "thread resolved" in result.stdout
    assert "alice announces src/models/user.py → proceed" in result.stdout
    replay = result.stdout.split("replays:")[1]
    assert replay.index("thread.opened") < replay.index("thread.proposal") < replay.index("thread.approval")
